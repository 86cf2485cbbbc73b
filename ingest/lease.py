"""Who executes a run: one PostgreSQL session advisory lock per run, its *lease*.

A worker executes a run only while it holds the run's lease, taken with
``pg_try_advisory_lock`` on a connection of its own that stays open for the run's lifetime.
Why an advisory lock and not a Redis lease with a heartbeat: PostgreSQL releases a session lock
the moment the session ends, and a worker killed by any means (SIGKILL, out of memory, a lost
machine's TCP keepalive) ends its sessions with it. Nothing needs renewing, no TTL has to be
tuned against the slowest batch, and "is anybody executing run 42?" is one look at ``pg_locks``
(``IngestRunQuerySet.orphaned``), which the reaper asks every 30 seconds.

The lock alone does not fence a process that lost its session but still runs (a network
partition): every batch's commit also checks the run's ``attempts`` (see ``ingest.runner``), so
only the latest holder's writes count.

Session locks need a session: behind PgBouncer in transaction mode, point workers at
PostgreSQL directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

# The first key of the two-key advisory lock, the "ingest run" namespace (no other code of the
# catalogue takes advisory locks); the second key is the run's id.
NAMESPACE = 0x1A6E57

# Is the lease of the run in the outer query held? pg_locks spans the cluster: the database
# matters (other databases have runs with the same ids). objsubid 2 marks the two-key form.
LEASE_HELD_SQL = """
    EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 2
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND classid::bigint = %s AND objid::bigint = "ingest_ingestrun"."id"
    )
"""


@contextmanager
def run_lease(run_id: int) -> Iterator[bool]:
    """Try to take run ``run_id``'s lease; yields whether it was taken, holds it until exit.

    A connection of its own: Django's may be closed and reopened meanwhile (after an error),
    and writers run on theirs; closing this one ends the session, which releases the lock.
    """
    session = connection.copy()
    try:
        with session.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [NAMESPACE, run_id])
            (taken,) = cursor.fetchone()
        yield taken
    finally:
        session.close()
