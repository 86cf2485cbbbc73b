"""Two real Celery workers on a private queue, as two worker hosts sharing the embedding
backfill; helpers to wait for it and to read what each worker did."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import redis
from django.conf import settings

from catalogue.backfill import Backfill
from catalogue.models import Paper
from tests.conftest import WorkerProcess, private_queue, start_worker, stop_worker

# Two chains, and small chunks so that the chains' tasks pass between the workers.
WORKER_ENV = {"EMBEDDING_CHAINS": "2", "EMBEDDING_TASK_CHUNK": "4"}


@contextmanager
def embedding_workers(tmp_path: Path, count: int = 2):
    """``count`` workers, each in a process group of its own (a test may kill one), on a
    queue of their own; the backfill's Redis keys are removed afterwards."""
    with private_queue() as queue:
        workers: list[WorkerProcess] = []
        try:
            for n in range(count):
                log = tmp_path / f"worker{n}.log"
                workers.append(start_worker(log, queue, own_process_group=True, **WORKER_ENV))
            yield workers
        finally:
            for worker in workers:
                if worker.process.poll() is None:
                    stop_worker(worker)
            client = redis.Redis.from_url(settings.REDIS_URL)
            for key in client.scan_iter(f"*{queue}*"):
                client.delete(key)


def papers(count: int) -> list[Paper]:
    return [
        Paper.objects.create(
            arxiv_id=f"2504.{n:05d}", title=f"Paper {n} on workers", abstract=f"Abstract {n}."
        )
        for n in range(count)
    ]


def wait_for(condition, timeout: float, what: str, workers=()):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            logs = "\n".join(worker.log()[-3000:] for worker in workers)
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")
        time.sleep(0.05)
    return result


def wait_until_ended(backfill: Backfill, workers, timeout: float = 60) -> dict[str, int]:
    """Until every chain of ``backfill`` ended; the papers each worker embedded."""
    wait_for(lambda: backfill.meta().get("ended"), timeout, "the backfill's end", workers)
    return backfill.counts()
