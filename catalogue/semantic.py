"""Nearest neighbours by meaning: the HNSW index of paper embeddings, queried with filters.

An HNSW scan hands back its ``hnsw.ef_search`` nearest rows (40 by default) and stops: with a
filter (dates, upvotes, topics, hidden papers) applied to those rows, a page can come back
nearly empty. pgvector 0.8's iterative scans go on walking the graph until the query's LIMIT
is met (``relaxed_order``: rows may come slightly out of order, so callers re-sort by
distance), bounded by ``hnsw.max_scan_tuples``.

The settings are made once per connection, when it opens (``catalogue.dbsession``), so a
search pays no round trip for them.
"""

from __future__ import annotations

# The most index entries an iterative scan hands back before it gives up.
MAX_SCAN_TUPLES = 20_000
# The years whose embeddings have an HNSW index of their own (``embedding_hnsw_<year>``,
# migration 0026): a date range's nearest papers are found year by year (``hybrid.by_year``).
INDEXED_YEARS = range(1991, 2036)
# Every connection scans HNSW iteratively (set once when it opens, not per query: a search
# page pays no extra round trip). Order within a scan is relaxed, so callers sort by distance.
SESSION_SETTINGS = (
    "SET hnsw.iterative_scan = relaxed_order; SET hnsw.ef_search = 100; "
    f"SET hnsw.max_scan_tuples = {MAX_SCAN_TUPLES}"
)
