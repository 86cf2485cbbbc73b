"""``manage.py runstack``: the whole catalogue in the foreground, for ``make run``.

Starts (or finds) PostgreSQL and Redis, migrates, starts a Celery worker and beat, ingests the
bundled demo listings through the worker, then serves the site through gunicorn (``--dev``: the
autoreloading development server). It supervises its children: one that dies is restarted
after a short, growing pause. Ctrl-C or SIGTERM stops every child it started (their whole
process groups) and the embedded services it started; further signals while it stops are
ignored, so a second SIGTERM cannot abandon anything half-stopped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Count

from catalogue import demo, embedded, provenance
from catalogue.models import Paper, Sighting
from catalogue.tasks import queue_embedding, tag_topic

DEMO_PARALLEL_INGESTS = 4
# A child that died is restarted after 1, 2, 4 … up to 30 s; one that ran this long before it
# died starts again from 1 s.
RESTART_DELAYS = (1, 2, 4, 8, 16, 30)
HEALTHY_SECONDS = 60
# Seconds children get to stop (a worker finishes its task) before their groups are killed.
STOP_SECONDS = 20
# The worker's cold shutdown cancels the tasks its pool has reported started. A task handed to
# a pool process just as the stop began is not among them yet, and the shutdown would wait for
# it to finish: a whole demo ingest, seen past STOP_SECONDS on a busy machine. A worker still
# running after this long gets Celery's second Ctrl-C, which cancels what started since.
WORKER_QUIT_AGAIN_SECONDS = 3
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
DEMO_LEDGER = embedded.DATA_DIR / "demo-loaded.json"
ADMIN_PASSWORD_FILE = embedded.DATA_DIR / "admin-password.txt"


class Stop(Exception):
    """Ctrl-C or SIGTERM: stop everything (raised once; later signals are ignored)."""


class Child:
    """One supervised process: how to start it, the running one, and its restarts."""

    def __init__(self, name: str, args: list[str], env: dict):
        self.name, self.args, self.env = name, args, env
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.failures = 0  # deaths in a row, each without a healthy run before it
        self.restart_at: float | None = None

    def start(self) -> None:
        # Own session and process group: Ctrl-C at the terminal reaches us once, and stopping
        # the group also stops what the child started (the worker's pool processes).
        self.process = subprocess.Popen(
            [sys.executable, *self.args],
            cwd=settings.BASE_DIR,
            env=self.env,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    def died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def exit_description(self) -> str:
        code = self.process.returncode
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"

    def schedule_restart(self) -> float:
        """Kill what is left of its group (an orphaned pool process would run a redelivered
        task a second time) and choose when to start it again; returns the pause."""
        _kill_group(self.process)
        if time.monotonic() - self.started_at > HEALTHY_SECONDS:
            self.failures = 0
        delay = RESTART_DELAYS[min(self.failures, len(RESTART_DELAYS) - 1)]
        self.failures += 1
        self.restart_at = time.monotonic() + delay
        return delay


class Command(BaseCommand):
    help = "Run web server, Celery worker and beat on the embedded services (make run)."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default=os.environ.get("ADDR", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--no-demo", action="store_true", help="skip the demo ingest")
        parser.add_argument(
            "--dev", action="store_true", help="Django's autoreloading server instead of gunicorn"
        )
        parser.add_argument(
            "--web-workers",
            type=int,
            default=int(os.environ.get("WEB_CONCURRENCY", "4")),
            help="gunicorn worker processes (default: $WEB_CONCURRENCY or 4)",
        )

    def handle(self, *args, addr, port, no_demo, dev, web_workers, **options):
        self._stopping = False
        self._starting_child = False  # a stop signal then waits until the child is recorded
        self._stop_pending = False
        self._catch_stop_signals()
        if not _port_is_free(addr, int(port)):
            raise CommandError(
                f"{addr}:{port} is in use (another make run?). Stop it, or choose a port: "
                "make run PORT=8001"
            )
        # Children get the resolved URLs, so they attach to the same services directly.
        env = {**os.environ, "DATABASE_URL": settings.DATABASE_URL, "REDIS_URL": settings.REDIS_URL}
        children: list[Child] = []
        signalled = False
        try:
            call_command("migrate", interactive=False, verbosity=1)
            if not settings.DEBUG:  # hashed, compressed files for whitenoise
                call_command("collectstatic", interactive=False, verbosity=0)
            password = self._ensure_admin()
            for name, arguments in _background_commands():
                self._start(Child(name, arguments, env), children)
            if not no_demo:
                self._while_supervising(children, self._ingest_demo)
            web = _web_command(addr, port, dev, web_workers)
            self._start(Child("web", web, env), children)
            _wait_for_port(addr, int(port))
            self._announce(addr, port, password)
            self._supervise(children)
        except (Stop, KeyboardInterrupt):
            signalled = True
        finally:
            self._stop(children)
        if signalled:
            # Demo ingests still polling for runs that will not end now would hold the exit.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    def _catch_stop_signals(self) -> None:
        """Ctrl-C and SIGTERM both stop everything; once stopping, further ones are ignored.

        SIGINT is set explicitly: a shell starting us in the background leaves it ignored.
        """

        def stop(signum, frame):
            if self._stopping:
                return
            if self._starting_child:
                self._stop_pending = True
                return
            self._stopping = True
            raise Stop

        for signum in STOP_SIGNALS:
            signal.signal(signum, stop)

    def _start(self, child: Child, children: list[Child] | None = None) -> None:
        # A stop signal raised between the fork and recording the child would leave it
        # running: signals wait (not blocked: children would inherit a blocked mask).
        self._starting_child = True
        try:
            child.start()
            if children is not None:
                children.append(child)
        finally:
            self._starting_child = False
        self.stdout.write(f"Started {child.name} (pid {child.process.pid}).")
        if self._stop_pending:
            self._stopping = True
            raise Stop

    def _supervise(self, children: list[Child]) -> None:
        while True:
            self._restart_the_dead(children)
            time.sleep(0.2)

    def _while_supervising(self, children: list[Child], work) -> None:
        """Run ``work`` in a thread while the children are supervised: a worker that dies
        during the demo ingest is restarted, and ingest's reaper resumes its runs (the main
        thread keeps the signals, so a stop still interrupts at once)."""
        failures: list[BaseException] = []

        def run():
            try:
                work()
            except BaseException as error:  # handed to the main thread, raised there
                failures.append(error)
            finally:
                connection.close()  # this thread's own connection

        thread = threading.Thread(target=run, name="demo-ingest", daemon=True)
        thread.start()
        while thread.is_alive():
            self._restart_the_dead(children)
            thread.join(0.2)
        if failures:
            raise failures[0]

    def _restart_the_dead(self, children: list[Child]) -> None:
        """Restart a child that died, after a pause that grows while it keeps dying."""
        for child in children:
            if child.restart_at is None and child.died():
                how = child.exit_description()
                delay = child.schedule_restart()
                self.stderr.write(f"The {child.name} died ({how}); restarting in {delay} s.")
            elif child.restart_at is not None and time.monotonic() >= child.restart_at:
                self._start(child)

    def _ingest_demo(self) -> None:
        """Every bundled sample through the worker (catalogue.demo says which), quietly: one
        line at the end. A sample that fails (some are meant to) is reported and skipped."""
        new_topics = demo.ensure_topics()  # before ingesting: each run tags what it adds
        listings = demo.listings(settings.BASE_DIR)
        database = _database_key()
        if Paper.objects.exists():  # an emptied database forgets the ledger
            listings = demo.not_yet_loaded(listings, DEMO_LEDGER, database)
        started = time.monotonic()
        if listings:
            self.stdout.write(f"Ingesting the demo: {len(listings)} sample listings…")
        # A few at a time: most samples are small, and one ``ingest`` mostly waits (queueing,
        # polling, the worker's start-up of a run); the worker runs two at once.
        # Not ``with``: its exit would wait for every ingest, and a stop must not wait.
        pool = ThreadPoolExecutor(DEMO_PARALLEL_INGESTS)
        try:
            outcomes = list(pool.map(_ingest_quietly, listings))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        # A run that ended (even failed: some samples are meant to) need not run again.
        finished = [path for (path, _), (ended, _) in zip(listings, outcomes, strict=True) if ended]
        demo.remember_loaded(finished, DEMO_LEDGER, database)
        for topic in new_topics:  # papers already there before the topic existed
            tag_topic.delay(topic.pk)
        # Each ingest that changed papers queues their embeddings; this catches papers loaded
        # before (an older checkout, a chain that died). In the background: the site serves
        # meanwhile, and a paper without one shows title-word neighbours.
        queue_embedding()
        failed = [failure for _, failure in outcomes if failure]
        self._report_demo(len(listings), time.monotonic() - started, failed)

    def _report_demo(self, listings: int, seconds: float, failed: list[str]) -> None:
        per_source = Sighting.objects.values_list("source").annotate(
            n=Count("paper", distinct=True)
        )
        sources = " · ".join(
            f"{provenance.source_name(code)} {n:,}" for code, n in per_source.order_by("-n")
        )
        loaded = f"{listings} listings ingested in {seconds:.0f} s" if listings else "loaded before"
        self.stdout.write(
            f"Demo: {Paper.objects.count():,} papers ({loaded}; seen by {sources}); "
            f"topics: {', '.join(t[0] for t in demo.TOPICS)}."
        )
        if failed:
            self.stdout.write(f"  {len(failed)} sample(s) failed, see admin → Ingest runs:")
            for line in failed:
                self.stdout.write(f"    {line}")

    def _ensure_admin(self) -> str | None:
        """A local superuser ``admin`` with a random password kept under .data/."""
        users = get_user_model().objects
        if users.filter(username="admin").exists():
            return ADMIN_PASSWORD_FILE.read_text().strip() if ADMIN_PASSWORD_FILE.exists() else None
        password = secrets.token_urlsafe(12)
        users.create_superuser("admin", "admin@localhost", password)
        ADMIN_PASSWORD_FILE.parent.mkdir(parents=True, exist_ok=True)
        ADMIN_PASSWORD_FILE.write_text(password + "\n")
        ADMIN_PASSWORD_FILE.chmod(0o600)
        return password

    def _announce(self, addr: str, port: str, password: str | None) -> None:
        login = f"admin / {password}" if password else "your existing admin account"
        self.stdout.write(
            self.style.SUCCESS(
                f"\nThe catalogue is up at http://{addr}:{port}/\n"
                f"Admin: http://{addr}:{port}/admin/ (log in as {login}; "
                f"password kept in {ADMIN_PASSWORD_FILE})\n"
                "Press Ctrl-C to stop everything.\n"
            )
        )

    def _stop(self, children: list[Child]) -> None:
        # From here on signals are ignored: a second Ctrl-C or SIGTERM must not abandon
        # children or the database half-stopped.
        self._stopping = True
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        self.stdout.write("\nStopping…")
        running = [child.process for child in children if child.process is not None]
        for child in reversed(children):  # the web first, the worker last
            if child.process is not None:
                _ask_to_stop(child)
        deadline = time.monotonic() + STOP_SECONDS
        worker = next((c for c in children if c.name == "worker" and c.process), None)
        if worker is not None:
            _quit_again_if_still_running(worker.process)
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{process.args[1:4]} did not stop in time; killing it.")
            # Whatever is left of the group (the worker's pool processes) goes with it.
            _kill_group(process)
            process.wait()
        stopped = embedded.stop_all(
            postgres="DATABASE_URL" not in os.environ, redis="REDIS_URL" not in os.environ
        )
        self.stdout.write(
            f"Stopped{' ' + ', '.join(stopped) if stopped else ''}. Data kept in .data/."
        )


def _background_commands() -> list[tuple[str, list[str]]]:
    celery = ["-m", "celery", "-A", "catalogue"]
    return [
        ("worker", [*celery, "worker", "-l", "info", "--concurrency", "2"]),
        ("beat", [*celery, "beat", "-l", "info"]),
    ]


def _web_command(addr: str, port: str, dev: bool, workers: int) -> list[str]:
    if dev:
        return ["manage.py", "runserver", f"{addr}:{port}"]
    return [
        "-m", "gunicorn", "catalogue.wsgi", "--bind", f"{addr}:{port}",
        "--workers", str(workers), "--graceful-timeout", "10",
    ]  # fmt: skip


def _ask_to_stop(child: Child) -> None:
    """SIGTERM to a child's group; the Celery worker gets SIGQUIT, alone: its cold shutdown
    ends its pool's tasks at once and puts them back on the queue (they are acknowledged
    late), where a SIGTERM to its pool processes had each running task reported lost with
    two tracebacks (a stop while the demo embeds its papers)."""
    if child.name == "worker":
        with contextlib.suppress(ProcessLookupError):  # (it died meanwhile)
            os.kill(child.process.pid, signal.SIGQUIT)
    else:
        _signal_group(child.process.pid, signal.SIGTERM)


def _quit_again_if_still_running(worker: subprocess.Popen) -> None:
    """Celery's "Ctrl+C again" to a worker still in its cold shutdown after a few seconds: it
    cancels the tasks started since the first, which go back on the queue (acknowledged
    late). Only once: a third would be its hard shutdown, which abandons its pool."""
    try:
        worker.wait(timeout=WORKER_QUIT_AGAIN_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGQUIT)


def _signal_group(pgid: int, signum: int) -> bool:
    """Signal a child's process group (its pid: each child leads its own session); whether
    any process of it was left to signal."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def _kill_group(process: subprocess.Popen, timeout: float = 5) -> None:
    """SIGKILL a child's process group and wait (briefly) until none of it is left."""
    deadline = time.monotonic() + timeout
    while _signal_group(process.pid, signal.SIGKILL) and time.monotonic() < deadline:
        process.poll()  # reap the leader: a zombie still counts as the group's member
        if not _running_in_group(process.pid):
            return
        time.sleep(0.05)


def _running_in_group(pgid: int) -> bool:
    """Whether a process of the group still runs. Orphans that died stay zombies until
    their new parent reaps them, and a container's init may never do so."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: trust the signal's answer
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:  # state, ppid, pgrp
            return True
    return False


def _database_key() -> str:
    """Which database the demo ledger speaks of (several may share one data directory)."""
    db = settings.DATABASES["default"]
    return f"{db.get('HOST') or ''}:{db.get('PORT') or ''}/{db['NAME']}"


def _ingest_quietly(listing: tuple[Path, dt.date | None]) -> tuple[bool, str | None]:
    """``manage.py ingest`` of one sample through the worker: whether its run ended (it may
    have failed), and why it failed, if it did."""
    path, listed_on = listing
    try:
        call_command(
            "ingest", str(path), listed_on=listed_on, timeout=300, no_progress=True,
            stdout=io.StringIO(), stderr=io.StringIO(),
        )  # fmt: skip
    except CommandError as exc:
        message = str(exc).splitlines()[0]
        # "Run 7 failed (…)" ended; "run 7 still queued after 300s" and the like did not.
        return message.startswith("Run "), f"{path.name} ({message})"
    finally:
        connection.close()  # this thread's own connection
    return True, None


def _port_is_free(addr: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((addr, port))
        except OSError:
            return False
    return True


def _wait_for_port(addr: str, port: int, timeout: float = 30) -> None:
    """Announce the URL only once the web server answers on it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((addr, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
