"""One listing's chunks executed by two real worker processes at once, one of them killed.

What the cluster does across hosts (make test-cluster), here with two workers on this host:
both take chunks and execute them at the same time; a worker SIGKILLed mid-chunk leaves its
chunk to the reaper, the other worker resumes it, and the run's totals come out exact.
"""

import os
import signal

import pytest

from catalogue.models import Paper, Sighting
from ingest.models import IngestRun
from ingest.runner import create_run
from ingest.tasks import ingest_run, requeue_orphaned_runs
from tests.bench.synthetic import write_snapshot
from tests.conftest import FAST_RETRIES, private_queue, start_worker, stop_worker
from tests.ingest.test_worker_crash import wait_for

PAPERS = 16_000
CHUNKS = 8
# Small batches: a chunk takes seconds, so the kill lands inside one.
WORKER_ENV = {"INGEST_BATCH_SIZE": "250", "CELERY_VISIBILITY_TIMEOUT": str(4 * 3600)}

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

            busy = wait_for(both_busy_after_a_chunk_finished, 120, "both workers in a chunk")
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
                stop_worker(worker)

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
