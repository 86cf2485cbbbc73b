"""What every database connection sets when it opens (``connection_created``), in the one
round trip it pays for them: the HNSW scan settings (``catalogue.semantic``) and how many
parallel workers one statement may plan (``DATABASE_PARALLEL_WORKERS``).

Why no parallel workers by default: a page's statements take milliseconds and many pages
are served at once, so a parallel plan's workers take cores other requests need, and each
worker costs a process start. The planner also chose worse plans to parallelise: a search by
meaning over fourteen months of a 100,000-paper catalogue read every entry of the trending
index in three processes (19-24 ms) instead of the months' entries of the date index in one
(8 ms). At a million papers, every page class in turn, 360 new queries in-process, two
alternated pairs: the slowest 5 % of pages 74.0 ms in both against 77.9 and 83.4 (the API
97-103 against 112-149, two words 99-110 against 107-113); the median page within the noise.
Statements that write never plan workers (``INSERT … SELECT`` included), so an ingest's loads
and the word months' builds plan as before; index builds have their own setting
(``max_parallel_maintenance_workers``).

Behind a pooler in transaction mode (PgBouncer) session settings do not stick: set them on the
database instead (``ALTER DATABASE … SET hnsw.iterative_scan = relaxed_order``, and the others).
"""

from __future__ import annotations

from django.conf import settings

from catalogue import semantic


def session_settings() -> str:
    """The statements a new connection runs, as one string (one round trip)."""
    statements = [semantic.SESSION_SETTINGS]
    workers = settings.DATABASE_PARALLEL_WORKERS
    if workers >= 0:  # (negative: the server's own setting)
        statements.append(f"SET max_parallel_workers_per_gather = {int(workers)}")
    return "; ".join(statements)


def configure_connection(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver: ``session_settings`` for PostgreSQL sessions."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(session_settings())
