"""Nearest neighbours by meaning: the HNSW index of paper embeddings, queried with filters.

An HNSW scan hands back its ``hnsw.ef_search`` nearest rows (40 by default) and stops: with a
filter (dates, upvotes, topics, hidden papers) applied to those rows, a page can come back
nearly empty. pgvector 0.8's iterative scans go on walking the graph until the query's LIMIT
is met (``relaxed_order``: rows may come slightly out of order, so callers re-sort by
distance), bounded by ``hnsw.max_scan_tuples``.
"""

from __future__ import annotations

from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def iterative_scan(ef_search: int = 100, max_scan_tuples: int = 20_000):
    """Statements inside use iterative HNSW scans (settings local to one transaction)."""
    # One statement, not three SETs: a round trip each on every page that uses it.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.ef_search', %s, true), "
            "set_config('hnsw.max_scan_tuples', %s, true)",
            [str(ef_search), str(max_scan_tuples)],
        )
        yield


# Every connection scans HNSW iteratively (set once when it opens, not per query: a search
# page pays no extra round trip). Order within a scan is relaxed, so callers sort by distance.
SESSION_SETTINGS = (
    "SET hnsw.iterative_scan = relaxed_order; SET hnsw.ef_search = 100; "
    "SET hnsw.max_scan_tuples = 20000"
)


def configure_connection(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver: the HNSW settings above for PostgreSQL sessions."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(SESSION_SETTINGS)
