"""How ``runstack`` stops its Celery worker, against a stand-in process that answers SIGQUIT as
a worker does: its cold shutdown cancels the tasks its pool reported started, and one handed
to the pool as the stop began runs on until Celery's second Ctrl-C (SIGQUIT again) cancels it.

The real worker is stopped by tests/test_runstack.py; this is the part of it that a real worker
shows only when the stop meets a task's hand-over (2 of 20 tries on a loaded machine).
"""

from __future__ import annotations

import io
import signal
import textwrap
import time

from catalogue import embedded
from catalogue.management.commands import runstack

# Logs each SIGQUIT; exits at the one numbered ``quits_to_stop``.
STAND_IN = textwrap.dedent(
    """
    import signal, sys, time
    log, quits_to_stop = open(sys.argv[1], "a", buffering=1), int(sys.argv[2])
    quits = 0
    def on_quit(signum, frame):
        global quits
        quits += 1
        log.write(f"SIGQUIT {quits}\\n")
        if quits == quits_to_stop:
            sys.exit(0)
    signal.signal(signal.SIGQUIT, on_quit)
    log.write("ready\\n")
    while True:
        time.sleep(0.05)
    """
)


def _stop_a_worker(tmp_path, monkeypatch, quits_to_stop: int) -> tuple[list[str], float, str]:
    """Start a stand-in worker, stop it as runstack does; its log, the stop's seconds, and
    what the stop wrote to stderr."""
    log = tmp_path / "worker.log"
    worker = runstack.Child("worker", ["-c", STAND_IN, str(log), str(quits_to_stop)], {})
    worker.start()
    deadline = time.monotonic() + 30
    while "ready" not in (log.read_text() if log.exists() else ""):
        assert worker.process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    monkeypatch.setattr(embedded, "stop_all", lambda **services: [])  # the tests' own servers
    errors = io.StringIO()
    command = runstack.Command(stdout=io.StringIO(), stderr=errors)
    kept = {signum: signal.getsignal(signum) for signum in runstack.STOP_SIGNALS}
    try:
        started = time.monotonic()
        command._stop([worker])
        seconds = time.monotonic() - started
    finally:
        for signum, handler in kept.items():  # _stop ignores them from then on
            signal.signal(signum, handler)
        runstack._kill_group(worker.process)
    return log.read_text().split(), seconds, errors.getvalue()


def test_a_worker_still_stopping_after_a_few_seconds_is_sent_a_second_quit(tmp_path, monkeypatch):
    lines, seconds, errors = _stop_a_worker(tmp_path, monkeypatch, quits_to_stop=2)
    assert lines == ["ready", "SIGQUIT", "1", "SIGQUIT", "2"]
    assert runstack.WORKER_QUIT_AGAIN_SECONDS <= seconds < runstack.STOP_SECONDS / 2
    assert errors == ""  # stopped, not killed at the deadline


def test_a_worker_that_stops_at_the_first_quit_gets_no_second(tmp_path, monkeypatch):
    lines, seconds, errors = _stop_a_worker(tmp_path, monkeypatch, quits_to_stop=1)
    assert lines == ["ready", "SIGQUIT", "1"]  # a third would be Celery's hard shutdown
    assert seconds < runstack.WORKER_QUIT_AGAIN_SECONDS
    assert errors == ""
