"""``manage.py runstack``: the whole catalogue in the foreground, for ``make run``.

Starts (or finds) PostgreSQL and Redis, migrates, starts a Celery worker and beat, ingests the
bundled demo listings through the worker, then serves the site. Ctrl-C stops everything it
started, including the embedded services.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import secrets
import signal
import socket
import subprocess
import sys
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
DEMO_LEDGER = embedded.DATA_DIR / "demo-loaded.json"
ADMIN_PASSWORD_FILE = embedded.DATA_DIR / "admin-password.txt"


class Command(BaseCommand):
    help = "Run web server, Celery worker and beat on the embedded services (make run)."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default=os.environ.get("ADDR", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--no-demo", action="store_true", help="skip the demo ingest")

    def handle(self, *args, addr, port, no_demo, **options):
        self._stop_on_signals()
        if not _port_is_free(addr, int(port)):
            raise CommandError(
                f"{addr}:{port} is in use (another make run?). Stop it, or choose a port: "
                "make run PORT=8001"
            )
        # Children get the resolved URLs, so they attach to the same services directly.
        env = {**os.environ, "DATABASE_URL": settings.DATABASE_URL, "REDIS_URL": settings.REDIS_URL}
        call_command("migrate", interactive=False, verbosity=1)
        password = self._ensure_admin()
        children = []
        try:
            children.append(
                self._spawn(
                    "worker",
                    [
                        "-m",
                        "celery",
                        "-A",
                        "catalogue",
                        "worker",
                        "-l",
                        "info",
                        "--concurrency",
                        "2",
                    ],
                    env,
                )
            )
            children.append(
                self._spawn("beat", ["-m", "celery", "-A", "catalogue", "beat", "-l", "info"], env)
            )
            if not no_demo:
                self._ingest_demo()
            children.append(self._spawn("web", ["manage.py", "runserver", f"{addr}:{port}"], env))
            _wait_for_port(addr, int(port))
            self._announce(addr, port, password)
            self._wait(children)
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(children)  # fmt: skip

    @staticmethod
    def _stop_on_signals() -> None:
        """Ctrl-C and SIGTERM both stop everything cleanly.

        SIGINT is reset explicitly: a shell starting us in the background leaves it ignored.
        """
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)

    def _spawn(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        self.stdout.write(f"Starting {name}…")
        # Own process group: Ctrl-C reaches us once, and we stop children in order.
        return subprocess.Popen(
            [sys.executable, *args], cwd=settings.BASE_DIR, env=env, start_new_session=True
        )

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
        with ThreadPoolExecutor(DEMO_PARALLEL_INGESTS) as pool:
            outcomes = list(pool.map(_ingest_quietly, listings))
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

    def _wait(self, children: list[subprocess.Popen]) -> None:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        dead = [c for c in children if c.poll() is not None]
        self.stderr.write(f"A process exited ({dead[0].args[1:4]}, code {dead[0].returncode}).")

    def _stop(self, children: list[subprocess.Popen]) -> None:
        # A second Ctrl-C must not abandon children or the database half-stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.stdout.write("\nStopping…")
        for child in reversed(children):
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        stopped = embedded.stop_all(
            postgres="DATABASE_URL" not in os.environ, redis="REDIS_URL" not in os.environ
        )
        self.stdout.write(
            f"Stopped{' ' + ', '.join(stopped) if stopped else ''}. Data kept in .data/."
        )


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
