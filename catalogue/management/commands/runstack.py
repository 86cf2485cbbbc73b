"""``manage.py runstack``: the whole catalogue in the foreground, for ``make run``.

Starts (or finds) PostgreSQL and Redis, migrates, starts a Celery worker and beat, ingests the
bundled demo listings through the worker, then serves the site. Ctrl-C stops everything it
started, including the embedded services.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from catalogue import embedded

# (path, the day it was captured): what a new checkout shows. Paths are relative to the project.
DEMO_LISTINGS = [
    ("tests/data/seed/hf-papers-search-listing.txt", dt.date(2025, 12, 24)),
]
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
        for path, listed_on in DEMO_LISTINGS:
            call_command("ingest", str(settings.BASE_DIR / path), listed_on=listed_on, timeout=300)

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
