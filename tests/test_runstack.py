"""``manage.py runstack`` (make run) as a real process: gunicorn, supervision, a clean stop.

Each test starts its own stack on the test database, a private queue and a free port, so it
starts no embedded service and shares nothing with a running ``make run``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from catalogue.dburl import url_from_settings
from catalogue.models import Paper
from ingest.models import IngestRun
from tests.conftest import SEED

pytestmark = pytest.mark.django_db(transaction=True)

# Bounds on a busy 2-core machine (the stack itself starts in ~10 s).
START_SECONDS = 120
RESTART_SECONDS = 15
STOP_SECONDS = 60
DEMO_SECONDS = 300  # the demo's ~4,600 papers: 35 s on an idle machine


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """A ``runstack`` child (``--no-demo`` unless ``demo``) and what it printed."""

    def __init__(self, tmp_path: Path, demo: bool = False, *options: str):
        self.port = _free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": url_from_settings(settings.DATABASES["default"]),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_QUEUE": f"test-{uuid.uuid4().hex[:10]}",
            "CATALOGUE_DATA_DIR": str(tmp_path),  # the admin's password file
            "WEB_CONCURRENCY": "2",
            "PYTHONUNBUFFERED": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runstack", "--port", str(self.port)]
            + ([] if demo else ["--no-demo"])
            + list(options),
            cwd=settings.BASE_DIR,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output())
            if found:
                return found
            assert self.process.poll() is None, self.output()
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.output()}")

    def find_child(self, *words: str) -> int | None:
        """The pid of the stack's child whose command line holds ``words`` (e.g. "worker")."""
        for pid, (parent, state) in _processes().items():
            ours = parent == self.process.pid and state != "Z"
            if ours and set(words) <= set(_command_line(pid)):
                return pid
        return None

    def child(self, *words: str) -> int:
        pid = self.find_child(*words)
        assert pid is not None, f"no child running {words}:\n{self.output()}"
        return pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ingest(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "ingest", str(SEED), "--listed-on", "2025-12-24",
             "--no-progress", "--timeout", "90"],
            cwd=settings.BASE_DIR, env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip


def _processes() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, state)} of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def _command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return []


def _descendants(pid: int) -> set[int]:
    table = _processes()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, (parent, _) in table.items() if parent in frontier}
        found |= frontier
    return found


def _alive(pids) -> set[int]:
    table = _processes()
    return {pid for pid in pids if pid in table and table[pid][1] != "Z"}


def _eventually(read, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (value := read()):
        assert time.monotonic() < deadline, "nothing within {timeout} s"
        time.sleep(0.2)
    return value


def _stop(stack: Stack) -> None:
    everything = _descendants(stack.process.pid)
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGTERM)
        try:
            stack.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            stack.process.kill()
    for pid in _alive(everything):  # never leave a test's processes behind
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def stack(tmp_path):
    stack = Stack(tmp_path)
    try:
        stack.wait_for("The catalogue is up", START_SECONDS)
        yield stack
    finally:
        _stop(stack)


def test_a_worker_killed_during_the_demo_ingest_is_restarted_and_the_demo_completes(tmp_path):
    stack = Stack(tmp_path, demo=True)
    try:
        stack.wait_for("Ingesting the demo", START_SECONDS)
        running = IngestRun.objects.filter(status=IngestRun.Status.RUNNING)
        _eventually(running.exists, START_SECONDS)
        os.kill(stack.child("celery", "worker"), signal.SIGKILL)
        stack.wait_for(r"The worker died \(killed by SIGKILL\)", RESTART_SECONDS)
        # The restarted worker resumes the killed one's runs; the demo ends and the site serves.
        stack.wait_for("The catalogue is up", DEMO_SECONDS)
        report = stack.wait_for(r"Demo: ([\d,]+) papers", 1)
        assert int(report[1].replace(",", "")) == Paper.objects.count() > 4000
        # Only the sample that fails on purpose (an arXiv API error answer) failed. Waited
        # for: the line follows the report's, and the output is read by a thread.
        failed = stack.wait_for(r"(\d+) sample\(s\) failed", 10)
        assert failed[1] == "1", stack.output()
        assert not IngestRun.objects.exclude(status__in=IngestRun.FINISHED).exists()
    finally:
        _stop(stack)


def test_the_site_is_served_by_gunicorn_with_its_static_files(stack):
    page = httpx.get(stack.url("/"), timeout=30)
    assert page.status_code == 200
    assert page.headers["server"] == "gunicorn"
    assert httpx.get(stack.url("/static/catalogue.css"), timeout=30).status_code == 200


def test_make_dev_serves_with_the_autoreloading_development_server(tmp_path):
    stack = Stack(tmp_path, False, "--dev")
    try:
        stack.wait_for("The catalogue is up", START_SECONDS)
        page = httpx.get(stack.url("/"), timeout=30)
        assert page.status_code == 200
        assert page.headers["server"].startswith("WSGIServer")  # Django's runserver
        assert stack.find_child("-m", "gunicorn") is None
    finally:
        _stop(stack)


def test_a_killed_worker_is_restarted_and_an_ingest_still_completes(stack):
    worker = stack.child("celery", "worker")
    pool = _eventually(lambda: _descendants(worker))  # its prefork pool, once it forked
    os.kill(worker, signal.SIGKILL)
    stack.wait_for(r"The worker died \(killed by SIGKILL\)", RESTART_SECONDS)
    restarted = _eventually(lambda: stack.find_child("celery", "worker"), RESTART_SECONDS)
    assert restarted != worker
    assert not _alive(pool)  # orphaned pool processes were killed with their group
    ingest = stack.ingest()
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert Paper.objects.count() == 49
    assert stack.process.poll() is None  # the stack survived its worker's death


def test_a_second_sigterm_while_stopping_still_stops_every_child(stack):
    worker = stack.child("celery", "worker")
    _eventually(lambda: _descendants(worker))  # the worker's pool: stopped with it
    children = _descendants(stack.process.pid)
    named = [stack.child("celery", "beat"), stack.child("-m", "gunicorn"), worker]
    assert set(named) < children  # and gunicorn's workers, the worker's pool
    stack.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=STOP_SECONDS) == 0
    assert not _alive(children), stack.output()
    assert "Stopped" in stack.output()


def test_a_stop_during_the_demo_ingest_stops_every_child_at_once(tmp_path):
    stack = Stack(tmp_path, demo=True)
    try:
        stack.wait_for("Ingesting the demo", START_SECONDS)
        _eventually(IngestRun.objects.filter(status=IngestRun.Status.RUNNING).exists)
        children = _descendants(stack.process.pid)
        assert stack.child("celery", "worker") in children
        stopped_at = time.monotonic()
        stack.process.send_signal(signal.SIGINT)  # Ctrl-C
        assert stack.process.wait(timeout=STOP_SECONDS) == 0
        assert time.monotonic() - stopped_at < STOP_SECONDS  # no wait for the demo's runs
        assert not _alive(children)
        _eventually(lambda: "Stopped" in stack.output(), 10)  # its last words, read by a thread
        # The worker's running tasks go back to the queue (a cold shutdown), not reported
        # lost with tracebacks (its pool processes were sent SIGTERM).
        assert "Cold shutdown" in stack.output()
        assert "WorkerLostError" not in stack.output()
    finally:
        _stop(stack)
