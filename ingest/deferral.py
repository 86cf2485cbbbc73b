"""A large run loads the papers without their secondary indexes, then builds them again.

Keeping 13 secondary indexes (five GIN, eight btree) up to date row by row costs a bulk
load more than building them once at its end, and more the larger the table: a 1M-paper
snapshot into an empty catalogue took 182-187 s with them kept, 158-170 s without them, their
build included (docs/benchmarks.md, fifteenth pass). So a run that brings at least
``INGEST_DEFER_INDEXES_FROM`` records, and at least as many as the catalogue holds (a first
load, or one that doubles it), drops them first and builds them when its records are
written, largest first, one at a time, each by PostgreSQL's parallel build.

Unique indexes stay: they keep the natural keys unique while several writers insert. While
the others are away, pages still answer (by scanning: slower) and other runs still write.

No index is ever lost, whatever stops a run: each is dropped in the transaction that records
its definition in ``DeferredIndex`` and built in the one that deletes that record. A run
builds its own at its end, failed or not; a worker killed mid-run leaves them recorded for
its run, which the reaper queues again and which builds them when it ends; and every run
first builds those left by a run that is finished or gone (``restore_abandoned``).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction

from ingest.models import DeferredIndex, IngestRun

log = logging.getLogger(__name__)

PAPERS_TABLE = "catalogue_paper"
# How long dropping waits for the table's readers and writers before the run keeps its
# indexes: DROP INDEX queues every later reader behind it while it waits.
LOCK_TIMEOUT = "5s"

# The papers' indexes that are not unique (the primary and natural keys stay) and are usable.
_SECONDARY_INDEXES = """
    SELECT c.relname, pg_get_indexdef(i.indexrelid), pg_relation_size(i.indexrelid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = %s::regclass AND NOT i.indisunique AND i.indisvalid
    ORDER BY c.relname
"""


def worth_deferring(run: IngestRun) -> bool:
    """Whether ``run`` brings enough records, against the catalogue's size, to load without
    the secondary indexes (its ``expected`` count: a snapshot file's lines, a harvest's
    complete list size)."""
    threshold = settings.INGEST_DEFER_INDEXES_FROM
    if threshold <= 0 or not run.expected or run.expected < threshold:
        return False
    return _papers_up_to(run.expected) < run.expected


def _papers_up_to(limit: int) -> int:
    """The catalogue's papers, counted no further than ``limit`` (statistics can be stale)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {PAPERS_TABLE} LIMIT %s) AS papers", [limit]
        )
        return cursor.fetchone()[0]


def defer(run: IngestRun) -> list[str]:
    """Drop the papers' secondary indexes, each recorded for ``run``; the names dropped.
    None are dropped where a reader or writer holds the table for more than a few seconds:
    the run then loads with them, as any other. The table is locked before its indexes are
    read: of two runs deferring at once, the second finds none left to drop."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])
            cursor.execute(f"LOCK TABLE {PAPERS_TABLE} IN ACCESS EXCLUSIVE MODE")
            cursor.execute(_SECONDARY_INDEXES, [PAPERS_TABLE])
            indexes = cursor.fetchall()
            for name, definition, size in indexes:
                DeferredIndex.objects.create(name=name, definition=definition, size=size, run=run)
                cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
    except OperationalError as error:  # lock_timeout: keep the indexes
        log.warning("ingest run %s keeps the papers' indexes: %s", run.pk, error)
        return []
    names = [name for name, _, _ in indexes]
    if names:
        log.info("ingest run %s loads without %d indexes: %s", run.pk, len(names), ", ".join(names))
    return names


def restore_for(run: IngestRun) -> list[str]:
    """Build again the indexes ``run`` dropped; the names built."""
    return _build(DeferredIndex.objects.filter(run=run))


def restore_abandoned() -> list[str]:
    """Build again indexes whose run is finished or deleted (its worker stopped between its
    last batch and its end, or it was deleted), or which failed to build before: nothing is
    going to build them otherwise. The names built."""
    unfinished = IngestRun.objects.unfinished()
    return _build(DeferredIndex.objects.exclude(run__in=unfinished, error=""))


def restore_quietly(run: IngestRun) -> None:
    """``restore_for`` on the way out of a failing run: its own error is the one raised; if
    this one fails too, the indexes stay recorded and the next run builds them."""
    try:
        restore_for(run)
    except Exception:
        log.exception("ingest run %s could not build its deferred indexes now", run.pk)


def _build(deferred) -> list[str]:
    """Build the ``deferred`` indexes one at a time, largest first, each by PostgreSQL's
    parallel build (``INGEST_INDEX_BUILD_WORKERS`` workers beside the connection's own
    process). One that fails keeps its record, with the error (the admin lists it), for the
    next run to try again; the others are built.

    "Largest" is their size when dropped: a first load's were all empty, so they go by name.
    One at a time because the build is CPU-bound and PostgreSQL spreads one index over the
    cores better than several builders do: at 1M on two cores, the 13 indexes in 39.1-39.9 s
    and 74-75 core-s one at a time with one worker each, against 45.0-47.3 s and 86-91 core-s
    three at a time with PostgreSQL's default two workers each, as before (the search GIN's
    final merge is the leader's alone; docs/benchmarks.md, thirty-seventh pass)."""
    names = list(deferred.order_by("-size", "name").values_list("name", flat=True))
    built = [name for name in names if _build_one(name)]
    if names:
        log.info("built %d of %d deferred indexes: %s", len(built), len(names), ", ".join(built))
    return built


def _build_one(name: str) -> bool:
    """Build the deferred index ``name`` and forget it, in one transaction; False when
    another connection is building it, it is built already, or it failed (its error kept)."""
    try:
        with transaction.atomic():
            index = DeferredIndex.objects.select_for_update(skip_locked=True).filter(name=name)
            index = index.first()
            if index is None:
                return False
            statement = index.definition.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('max_parallel_maintenance_workers', %s, true)",
                    [str(settings.INGEST_INDEX_BUILD_WORKERS)],
                )
                cursor.execute(statement)
            index.delete()
            return True
    except DatabaseError as error:
        log.error("deferred index %s could not be built: %s", name, error)
        DeferredIndex.objects.filter(name=name).update(error=str(error)[:2000])
        return False
