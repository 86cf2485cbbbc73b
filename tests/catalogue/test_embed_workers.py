"""The embedding backfill on two real workers, as on two worker hosts: the work is spread,
every paper embedded exactly once, and a chain whose worker is killed is finished later."""

from __future__ import annotations

import os
import signal

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction

from catalogue import tasks
from catalogue.backfill import Backfill
from catalogue.celery import app
from catalogue.embedding import pending_papers, pending_slices
from catalogue.models import Paper, PaperEmbedding
from tests.embedding_workers import embedding_workers, papers, wait_for, wait_until_ended

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_workers_share_the_backfill_and_embed_every_paper_once(tmp_path):
    papers(40)
    with embedding_workers(tmp_path) as workers:
        assert tasks.queue_embedding()
        backfill = Backfill.running(workers[0].queue)
        counts = wait_until_ended(backfill, workers)
        chains = backfill.meta()["chains"]

    assert chains == 2
    assert set(counts) == {worker.name for worker in workers}  # both embedded some
    assert all(n > 0 for n in counts.values())
    # Each paper counted once per embedding: a paper embedded twice would make it 41.
    assert sum(counts.values()) == PaperEmbedding.objects.count() == Paper.objects.count() == 40
    assert not pending_papers().exists()


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # a fresh look in this transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


def running_the_open_slice(workers):
    """The worker whose task is the chain of the slice open above (``upto`` None)."""
    for worker in workers:
        active = app.control.inspect(destination=[worker.name], timeout=5).active() or {}
        for task in active.get(worker.name, []):
            if task["name"].endswith("embed_papers") and task["args"][1] is None:
                return worker
    return None


def test_a_chain_killed_midway_leaves_the_rest_done_and_the_next_backfill_finishes_it(tmp_path):
    made = papers(40)
    [(_, bound), _] = pending_slices(2)[0]  # the slices the workers will plan
    upper = [p.pk for p in made if p.pk > bound]
    with embedding_workers(tmp_path) as workers:
        queue = workers[0].queue
        with transaction.atomic():
            # The upper slice's papers are locked: its chain waits to save its first batch.
            list(Paper.objects.filter(pk__in=upper).select_for_update())
            assert tasks.queue_embedding()
            first = Backfill.running(queue)
            wait_for(waiting_on_a_lock, 30, "the upper slice's chain to wait", workers)
            killed = wait_for(lambda: running_the_open_slice(workers), 10, "its worker")
            os.killpg(killed.process.pid, signal.SIGKILL)  # the whole worker host, at once
            killed.process.wait()
        survivor = next(worker for worker in workers if worker is not killed)

        wait_for(lambda: list(first.live_slices()) == ["open"], 30, "the lower slice's end")
        assert pending_papers().count() == len(upper)  # the lower slice is all done
        assert not tasks.queue_embedding()  # the backfill is alive as long as it may be
        # STALL_SECONDS pass without a chunk of the dead chain: its backfill's key expires.
        redis.Redis.from_url(settings.REDIS_URL).delete(Backfill.current_key(queue))

        assert tasks.queue_embedding()
        second = Backfill.running(queue)
        counts = wait_until_ended(second, [survivor])
        embedded_by_first = sum(first.counts().values())

    assert set(counts) == {survivor.name} and sum(counts.values()) == len(upper)
    assert embedded_by_first == len(made) - len(upper)  # none of the killed chain's batch
    assert PaperEmbedding.objects.count() == len(made) and not pending_papers().exists()
