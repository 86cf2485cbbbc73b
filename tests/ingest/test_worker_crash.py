"""A worker SIGKILLed mid-ingest, and a task delivered twice: real worker processes.

The run must resume promptly on another worker (the reaper, not the broker's visibility
timeout of hours), never be executed by two workers at once, lose nothing and end with the
counts of one clean run.
"""

import os
import signal
import time

import pytest

from catalogue.models import Paper, Sighting
from ingest.models import IngestRun
from ingest.runner import create_run
from ingest.tasks import ingest_run
from tests.bench.synthetic import write_snapshot
from tests.conftest import (
    FAST_RETRIES,
    WorkerProcess,
    private_queue,
    start_worker,
    stop_worker,
)

PAPERS = 30_000
# A second delivery needs the run only under way while it arrives (it is turned away at once).
REDELIVERED_PAPERS = 10_000
# Small batches, so that a kill lands between many commits; the broker's visibility timeout
# as in production (hours): only the reaper can resume the run within the test's bounds.
WORKER_ENV = {"INGEST_BATCH_SIZE": "250", "CELERY_VISIBILITY_TIMEOUT": str(4 * 3600)}

pytestmark = pytest.mark.django_db(transaction=True)


def start_worker_group(log_path, queue: str) -> WorkerProcess:
    """A worker in a process group of its own, so that the whole group can be killed."""
    return start_worker(log_path, queue, own_process_group=True, **FAST_RETRIES, **WORKER_ENV)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)
    return result


def under_way(run: IngestRun, seen: int):
    def check():
        run.refresh_from_db()
        return run.status == IngestRun.Status.RUNNING and run.seen >= seen

    return check


def assert_ingested_once(run: IngestRun, papers: int = PAPERS) -> None:
    counts = (run.seen, run.created, run.updated, run.unchanged, run.rejected)
    assert counts == (papers, papers, 0, 0, 0)
    assert Paper.objects.count() == papers  # no paper lost, none doubled
    assert Sighting.objects.count() == papers


def test_worker_killed_mid_run_resumes_promptly_elsewhere_and_counts_come_out_exact(tmp_path):
    path = write_snapshot(tmp_path / "snapshot.jsonl", PAPERS)
    with private_queue() as queue:
        first = start_worker_group(tmp_path / "first.log", queue)
        run = create_run(str(path))
        ingest_run.delay(run.pk)
        wait_for(under_way(run, 2_000), 120, "the run to be under way")

        os.killpg(first.process.pid, signal.SIGKILL)  # the whole worker, at once
        first.process.wait()
        run.refresh_from_db()
        assert run.status == IngestRun.Status.RUNNING and run.seen < PAPERS

        second = start_worker_group(tmp_path / "second.log", queue)
        try:
            restarted = time.monotonic()
            wait_for(lambda: run.refresh_from_db() or run.attempts == 2, 30, "the resume")
            resumed_after = time.monotonic() - restarted
            wait_for(lambda: run.refresh_from_db() or run.is_finished, 240, "the run's end")
        finally:
            stop_worker(second, cold=True)

    print(f"resumed {resumed_after:.1f} s after a worker started again")  # pytest -s shows it
    assert run.status == IngestRun.Status.SUCCEEDED, run.error
    assert run.attempts == 2
    assert_ingested_once(run)


def test_a_second_delivery_while_the_run_executes_does_no_work(tmp_path):
    path = write_snapshot(tmp_path / "snapshot.jsonl", REDELIVERED_PAPERS)
    with private_queue() as queue:
        workers = [start_worker_group(tmp_path / f"worker{n}.log", queue) for n in (1, 2)]
        try:
            run = create_run(str(path))
            ingest_run.delay(run.pk)
            wait_for(under_way(run, 1_000), 120, "the run to be under way")
            ingest_run.delay(run.pk)  # as a redelivery would: the idle worker gets it

            def skipped():
                return any("is executed elsewhere" in worker.log() for worker in workers)

            wait_for(skipped, 60, "the second delivery to be turned away")
            run.refresh_from_db()
            assert run.status == IngestRun.Status.RUNNING  # turned away while it ran
            wait_for(lambda: run.refresh_from_db() or run.is_finished, 240, "the run's end")
        finally:
            for worker in workers:
                stop_worker(worker, cold=True)

    assert run.status == IngestRun.Status.SUCCEEDED, run.error
    assert run.attempts == 1
    assert_ingested_once(run, REDELIVERED_PAPERS)
