"""One listing's chunks executed by two real worker processes at once, one of them killed.

What the cluster does across hosts (make test-cluster), here with two workers on this host:
both take chunks and execute them at the same time; a worker SIGKILLed mid-chunk leaves its
chunk to the reaper, the other worker resumes it, and the run's totals come out exact.
"""

import os
import signal
import time

import pytest

from catalogue.models import Paper, Sighting
from ingest.models import IngestRun
from ingest.runner import create_run, execute_run
from ingest.tasks import _queue_chunk, ingest_run, requeue_orphaned_runs
from tests.bench.synthetic import write_snapshot
from tests.conftest import FAST_RETRIES, private_queue, start_worker, stop_worker
from tests.ingest.test_worker_crash import wait_for

PAPERS = 16_000
CHUNKS = 8
# Small batches: a chunk takes a second or more, so the kill lands inside one.
WORKER_ENV = {"INGEST_BATCH_SIZE": "50", "CELERY_VISIBILITY_TIMEOUT": str(4 * 3600)}

pytestmark = pytest.mark.django_db(transaction=True)


def group_of(chunk: IngestRun) -> int | None:
    """The process group (one per worker here) of the process that executes ``chunk``."""
    try:
        return os.getpgid(int(chunk.worker.rsplit(" pid ", 1)[1]))
    except (IndexError, ValueError, ProcessLookupError):
        return None


def running_chunks_by_worker(run: IngestRun) -> dict[int, IngestRun]:
    running = run.chunks.filter(status=IngestRun.Status.RUNNING)
    return {group_of(chunk): chunk for chunk in running}


def finished(run_id: int) -> IngestRun | None:
    return IngestRun.objects.filter(pk=run_id, finished_at__isnull=False).first()


def test_two_workers_execute_one_runs_chunks_at_once_and_survive_losing_one(tmp_path):
    path = write_snapshot(tmp_path / "snapshot.jsonl", PAPERS)
    with private_queue() as queue:
        workers = [
            start_worker(tmp_path / f"w{n}.log", queue, True, **FAST_RETRIES, **WORKER_ENV)
            for n in (1, 2)
        ]
        first, second = (worker.process.pid for worker in workers)
        try:
            run = create_run(str(path), chunks=CHUNKS)
            ingest_run.delay(run.pk)

            def both_busy_after_a_chunk_finished():
                busy = running_chunks_by_worker(run)
                finished = run.chunks.filter(status=IngestRun.Status.SUCCEEDED).exists()
                return finished and {first, second} <= busy.keys() and busy

            def first_stopped_mid_chunk():
                """Both busy, then the first worker stopped while its chunk is still running
                (seen running and then killed, a chunk of a second could end in between)."""
                busy = wait_for(both_busy_after_a_chunk_finished, 120, "both workers in a chunk")
                os.killpg(first, signal.SIGSTOP)
                time.sleep(0.3)  # what it had sent before the stop is done
                busy[first].refresh_from_db()
                if busy[first].status == IngestRun.Status.RUNNING:
                    return busy
                os.killpg(first, signal.SIGCONT)
                return None

            busy = wait_for(first_stopped_mid_chunk, 120, "the first worker stopped mid-chunk")
            killed_chunk = busy[first]
            # The run says which worker executes it by the worker's node name (-n).
            assert killed_chunk.worker.startswith(f"{workers[0].name} pid ")
            assert busy[second].worker.startswith(f"{workers[1].name} pid ")
            os.killpg(first, signal.SIGKILL)  # the whole worker, mid-chunk
            workers[0].process.wait()

            # Beat's reaper, every 30 s in production, sent here once the lease is gone.
            wait_for(IngestRun.objects.orphaned().exists, 30, "the killed chunk orphaned")
            requeue_orphaned_runs.delay()
            run = wait_for(lambda: finished(run.pk), 180, "the run to finish")
            killed_chunk.refresh_from_db()
            resumed_by = group_of(killed_chunk)
        finally:
            for worker in workers[1:]:
                stop_worker(worker, cold=True)

    assert run.status == IngestRun.Status.SUCCEEDED, run.error
    assert (run.seen, run.created, run.updated, run.unchanged, run.rejected) == (
        PAPERS, PAPERS, 0, 0, 0
    )  # fmt: skip
    assert Paper.objects.count() == PAPERS  # none lost, none doubled
    assert Sighting.objects.count() == PAPERS
    assert killed_chunk.status == IngestRun.Status.SUCCEEDED and killed_chunk.attempts == 2
    assert resumed_by == second
    assert killed_chunk.worker.startswith(f"{workers[1].name} pid ")
    assert workers[1].name in run.workers_line()
    assert run.chunk_count == CHUNKS


def test_the_reaper_and_a_resumed_run_do_not_wait_behind_queued_chunks(tmp_path):
    """Beat's reaper expires after 25 s: were it queued behind a backfill's chunks, runs
    orphaned by a lost host would wait for the whole queue instead of 30 s at most."""
    split = create_run(str(write_snapshot(tmp_path / "big.jsonl", 4_000)), chunks=6)
    orphan = create_run(str(write_snapshot(tmp_path / "small.jsonl", 50, start=10_000)))
    # Its worker died mid-run: running, nobody holds its lease.
    IngestRun.objects.filter(pk=orphan.pk).update(status=IngestRun.Status.RUNNING, attempts=1)
    with private_queue() as queue:
        execute_run(split, enqueue=_queue_chunk)  # planned here; chunks wait for a worker
        requeue_orphaned_runs.delay()  # beat's, sent after the chunks
        worker = start_worker(tmp_path / "w.log", queue, **FAST_RETRIES, **WORKER_ENV)
        try:
            wait_for(lambda: finished(split.pk), 120, "the split run to finish")
        finally:
            stop_worker(worker, cold=True)
    orphan.refresh_from_db()
    assert orphan.status == IngestRun.Status.SUCCEEDED and orphan.attempts == 2
    first_chunk = min(split.chunks.values_list("started_at", flat=True))
    assert orphan.finished_at < first_chunk  # the reaper and the resumed run went first
