"""Shared fixtures: a real Celery worker process bound to the test database."""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import django_ratelimit.core
import pytest
from django.conf import settings
from django.test import override_settings

from catalogue import alongside
from catalogue.dburl import url_from_settings
from tests.jinja_support import record_jinja2_renders

DATA_DIR = Path(__file__).parent / "data"
SEED = DATA_DIR / "seed" / "hf-papers-search-listing.txt"


# How pytest-xdist may hand tests to its processes: one at a time in collection order, which
# is pytest-django's (tests in a transaction, then tests that flush the database, then the
# rest), so each process runs its flushing tests after the tests that read rows the data
# migrations made (the curator group, the beat schedules). Whole files or classes at a time
# would run a file's flushing test before another file's reading ones.
XDIST_ORDERED_MODES = ("no", "load")


def pytest_configure(config):
    dist = config.getoption("dist", "no")
    if dist not in XDIST_ORDERED_MODES:
        raise pytest.UsageError(
            f"--dist {dist} runs tests out of pytest-django's order: a test that flushes the "
            "database could run before one that reads the data migrations' rows. Use "
            "--dist load (make test does)."
        )


class WorkerProcess:
    def __init__(self, process: subprocess.Popen, queue: str, log_path: Path, name: str):
        self.process = process
        self.queue = queue
        self.log_path = log_path
        self.name = name

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_until_ready(worker: WorkerProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while "ready." not in worker.log():
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Celery worker did not start:\n{worker.log()}")
        time.sleep(0.1)


def start_worker(
    log_path: Path, queue: str, own_process_group: bool = False, **extra_env: str
) -> WorkerProcess:
    """Start a ``celery worker`` process on ``queue`` that reads the test database; with
    ``own_process_group``, in a session of its own, so that its whole group can be killed."""
    env = {
        **os.environ,
        "DATABASE_URL": url_from_settings(settings.DATABASES["default"]),
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "CELERY_QUEUE": queue,
        **extra_env,
    }
    name = f"{queue}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    command = [
        sys.executable, "-m", "celery", "-A", "catalogue", "worker", "-Q", queue, "-n", name,
        "--concurrency", "1", "-l", "info",
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_process_group,
        )
    worker = WorkerProcess(process, queue, log_path, name)
    _wait_until_ready(worker)
    return worker


def stop_worker(worker: WorkerProcess, *, cold: bool = False) -> None:
    """A warm shutdown (SIGTERM): the task in hand is finished first, for up to 20 s. ``cold``
    (SIGQUIT): at once, for a test done with the worker whose follow-ups (an ingest's
    embedding tasks: minutes for thousands of papers) it does not wait for."""
    worker.process.send_signal(signal.SIGQUIT if cold else signal.SIGTERM)
    try:
        worker.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        worker.process.wait()


def wait_until_idle(worker: WorkerProcess, timeout: float = 180) -> None:
    """Until ``worker`` runs, holds and is sent no task (the queue's keys, one per priority,
    are empty). Minutes, not seconds: on a busy machine an ingest's follow-up embedding of a
    few hundred papers took over a minute (16 papers in 12-29 s)."""
    import redis

    from catalogue.celery import app

    inspect = app.control.inspect(destination=[worker.name], timeout=5, limit=1)
    client = redis.Redis.from_url(settings.REDIS_URL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = sum(client.llen(key) for key in client.scan_iter(f"{worker.queue}*"))
        busy = [*(inspect.active() or {}).values(), *(inspect.reserved() or {}).values()]
        if not waiting and not any(busy):
            return
        time.sleep(0.1)
    raise RuntimeError(f"Celery worker still busy after {timeout} s:\n{worker.log()}")


@contextmanager
def private_queue():
    """Tasks sent by this test process go to a queue no other worker listens on."""
    from catalogue.celery import app

    queue = f"test-{uuid.uuid4().hex[:10]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    try:
        yield queue
    finally:
        app.conf.task_default_queue = previous


# Fast retries for fault tests: 0.05 s backoff steps, 2 s read timeout, 3 attempts, and 0.05 s
# between requests to the tests' servers (a persistent 500's 15 requests took 14 s at 1 s).
FAST_RETRIES = {
    "INGEST_RETRY_BACKOFF": "0.05",
    "INGEST_FETCH_TIMEOUT": "2",
    "INGEST_FETCH_ATTEMPTS": "3",
    "INGEST_MIN_INTERVAL": "0.05",
}


# The tests serve recorded payloads from HTTP servers on 127.0.0.1, which fetches refuse
# unless this is on.
LOCAL_SERVERS = {"INGEST_ALLOW_PRIVATE_HOSTS": "1"}


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, tmp_path_factory):
    """A real ``celery worker`` process on a private queue, reading the test database.

    Tests using it must be ``django_db(transaction=True)``: the worker only sees committed data.
    Its retries are fast (``FAST_RETRIES``) so fault tests finish in seconds, and it may fetch
    from the tests' local servers (``LOCAL_SERVERS``).
    """
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    with private_queue() as queue:
        worker = start_worker(log_path, queue, **FAST_RETRIES, **LOCAL_SERVERS)
        _SHARED_QUEUES.add(queue)
        try:
            yield worker
        finally:
            _SHARED_QUEUES.discard(queue)
            stop_worker(worker)


# The session's worker's queue while it runs.
_SHARED_QUEUES: set[str] = set()


@pytest.fixture(autouse=True)
def _worker_idle_after_test(request):
    """A test's last task may outlive it on the session's worker (an ingest's follow-up
    embedding task): its writes and the database flush that ends the test deadlock. The flush
    waits for the worker to be idle (this teardown runs before pytest-django's).

    A test without the worker, and without workers of its own, sends its tasks to a queue
    nobody reads, emptied after it: a transactional test's committed ingest enqueues
    follow-ups (tags, trending, embeddings), and once an earlier test has started the
    session's worker they would otherwise reach it and race this test's flush (seen: a
    deadlock at teardown)."""
    if "celery_worker" in request.fixturenames:
        yield
        wait_until_idle(request.getfixturevalue("celery_worker"))
        return
    from catalogue.celery import app

    # The configured queue is shared too: a dev server's worker on the same Redis reads it.
    if app.conf.task_default_queue not in {*_SHARED_QUEUES, settings.CELERY_TASK_DEFAULT_QUEUE}:
        yield  # the queue of the test's own workers
        return
    with private_queue() as unread, _publishing_counted(unread) as published:
        yield
    if published:  # (no Redis otherwise: the cluster test's driver has none)
        _forget_queue(unread)


@contextmanager
def _publishing_counted(queue: str):
    """A list that gets one entry per task published to ``queue`` meanwhile."""
    from celery.signals import after_task_publish

    published = []

    def count(sender=None, routing_key=None, **kwargs):
        if routing_key == queue:
            published.append(sender)

    after_task_publish.connect(count, weak=False)
    try:
        yield published
    finally:
        after_task_publish.disconnect(count)


def _forget_queue(queue: str) -> None:
    """Delete ``queue``'s Redis lists (one per priority) and an embedding backfill begun on it."""
    import redis

    from catalogue.backfill import Backfill

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = [*client.scan_iter(f"{queue}*"), *client.scan_iter(f"{Backfill.current_key(queue)}*")]
    if keys:
        client.delete(*keys)


@pytest.fixture
def seed_bytes() -> bytes:
    return SEED.read_bytes()


@pytest.fixture(autouse=True, scope="session")
def _jinja2_renders_recorded():
    """``response.context`` and ``response.templates`` for the Jinja2 reader pages too."""
    record_jinja2_renders()


@pytest.fixture(autouse=True, scope="session")
def _cache_of_its_own():
    """The session's cache keys under a prefix of their own (the Celery workers it starts use
    it too): what a dev server on the same Redis or an earlier run left is not seen (a query's
    shared vector outlives a run by a day) and the dev server's cache is left alone."""
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = f"catalogue-test-{uuid.uuid4().hex[:12]}"
    with override_settings(CACHES=caches):
        yield


@pytest.fixture(autouse=True)
def _alongside_connections_closed():
    """A hybrid search's threads (catalogue.alongside) keep their connections, as a server's
    would; a test leaves none open behind it (the test database is dropped at the end)."""
    yield
    alongside.close()


@pytest.fixture(autouse=True)
def _summaries_not_cached(settings):
    """List pages cache their counts and whole anonymous pages for minutes (catalogue.summary,
    catalogue.pagecache); tests that change papers between two requests must see the change.
    tests/catalogue/test_summary.py and test_pagecache.py turn them on."""
    settings.SUMMARY_CACHE_SECONDS = 0
    settings.PAGE_CACHE_SECONDS = 0
    settings.SAMPLE_CACHE_SECONDS = 0


@pytest.fixture(autouse=True)
def _rate_limits_start_afresh(settings, monkeypatch):
    """Log-in and password-reset attempts are counted in Redis for minutes (catalogue.accounts):
    each test counts under its own prefix, so earlier tests and runs do not lock it out.

    django-ratelimit's windows are fixed on the clock (each key's ends at its own second of
    every 15 minutes or hour): a test whose attempts straddle that second saw its count start
    again and no 429 (CI of 2026-12-06). Its clock stands still in each test, so every attempt
    of a test falls in one window; a test that moves it sets the returned clock's ``now``."""
    settings.RATELIMIT_CACHE_PREFIX = f"rl:{uuid.uuid4().hex}:"
    clock = SimpleNamespace(now=time.time())
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: clock.now))
    return clock


@pytest.fixture
def rate_limit_clock(_rate_limits_start_afresh):
    """The clock django-ratelimit reads in this test (seconds since the epoch in ``now``)."""
    return _rate_limits_start_afresh


@pytest.fixture(autouse=True)
def _fetches_throttled_apart(settings):
    """Fetches take turns per host through Redis (ingest.http.RedisHostThrottle): each test
    under its own prefix, so test sessions sharing a Redis do not queue behind each other.
    The tests' own servers, on 127.0.0.1, are asked 0.05 s apart, not a second (a split run's
    chunks fetched ranges of one file for 7 s): ``FAST_RETRIES`` says the same to workers."""
    settings.INGEST_THROTTLE_PREFIX = f"throttle:{uuid.uuid4().hex}:"
    settings.INGEST_MIN_INTERVAL = float(FAST_RETRIES["INGEST_MIN_INTERVAL"])
