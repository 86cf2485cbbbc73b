"""Redis down or hanging: pages still render, quickly (the caches fail open, catalogue.cache),
and queueing a task fails within seconds with a message (catalogue.broker)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings
from django.core.cache import cache
from django.urls import reverse

from catalogue import cache as fail_open
from catalogue.celery import app
from catalogue.dburl import url_from_settings
from catalogue.models import Paper, Topic
from ingest.models import IngestRun, Source
from tests.conftest import SEED

pytestmark = pytest.mark.django_db

TODAY = dt.date(2025, 11, 27)
PAGES = [
    "/",
    "/?q=attention",
    "/?q=attention&mode=keyword&sort=upvotes",
    "/api/papers",
    "/api/papers?q=attention",
    "/papers/daily/2025-11-27/",
    "/papers/week/2025-W48/",
    "/papers/month/2025-11/",
    "/papers/2411.00001/",
    "/feed/?q=attention",
    "/topics/",
]
# Generous: a page here takes tens of milliseconds; Redis's default timeout was 5 s.
SECONDS_PER_PAGE = 2.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


class SilentServer:
    """Accepts TCP connections and never answers: a hung Redis."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture(autouse=True)
def _fresh_breaker(monkeypatch):
    monkeypatch.setattr(fail_open.breaker, "_closed_at", 0.0)


@pytest.fixture
def papers(settings):
    settings.PAGE_CACHE_SECONDS = 60
    settings.SUMMARY_CACHE_SECONDS = 120
    Paper.objects.create(
        arxiv_id="2411.00001",
        title="Linear attention for everyone",
        abstract="We study attention.",
        published_on=TODAY,
        listed_on=TODAY,
        upvotes=3,
    )


def _redis_at(settings, port: int) -> None:
    """The cache on ``port`` (settings' change resets Django's cache connections)."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{port}/0"}
    }


@pytest.fixture
def redis_down(settings, papers):
    _redis_at(settings, _closed_port())


@pytest.fixture
def redis_hanging(settings, papers):
    server = SilentServer()
    _redis_at(settings, server.port)
    yield server
    server.close()


def _assert_pages_render(client):
    for page in PAGES:
        started = time.monotonic()
        response = client.get(page)
        seconds = time.monotonic() - started
        assert response.status_code == 200, page
        assert seconds < SECONDS_PER_PAGE, (page, seconds)


def test_pages_render_with_redis_down(client, redis_down):
    _assert_pages_render(client)


def test_pages_render_with_redis_hanging(client, redis_hanging):
    _assert_pages_render(client)
    assert redis_hanging.accepted  # the cache did try it


def test_while_redis_hangs_only_one_request_waits_for_it(client, redis_hanging):
    started = time.monotonic()
    for _ in range(5):
        for page in PAGES:
            assert client.get(page).status_code == 200
    # 55 pages, each asking the cache for its page and figures: without the pause after a
    # failure each would wait CACHE_TIMEOUT at least once.
    assert time.monotonic() - started < 55 * 0.5 / 2
    assert len(redis_hanging.accepted) == 1


def test_a_failed_cache_answers_misses_and_stores_nothing(redis_down):
    assert cache.get("k", "default") == "default"
    assert cache.set("k", "v", 10) is None
    assert cache.add("k", "v", 10) is False
    assert cache.get_many(["a", "b"]) == {}
    assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
    assert cache.delete("k") is False


def test_redis_is_tried_again_shortly_after_a_failure(settings, monkeypatch, redis_down):
    monkeypatch.setattr(fail_open, "RETRY_AFTER", 0.2)
    assert cache.get("k") is None  # fails: the breaker opens
    real = settings.CACHES["default"]["LOCATION"]
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": settings.REDIS_URL}}
    assert real != settings.REDIS_URL
    cache.set("k", "v", 10)
    assert cache.get("k") is None  # still paused: Redis not asked
    time.sleep(0.25)
    cache.set("k", "v", 10)
    assert cache.get("k") == "v"
    cache.delete("k")


# --- queueing with the broker down or hanging ---------------------------------------------


def _ingest_with_broker_at(port: int) -> tuple[subprocess.CompletedProcess, float]:
    env = {
        **os.environ,
        "DATABASE_URL": url_from_settings(settings.DATABASES["default"]),
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
    }
    started = time.monotonic()
    ingest = subprocess.run(
        [sys.executable, "manage.py", "ingest", str(SEED), "--no-progress", "--timeout", "60"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return ingest, time.monotonic() - started


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", ["down", "hanging"])
def test_ingest_with_the_broker_unreachable_fails_quickly_saying_so(broker):
    server = SilentServer() if broker == "hanging" else None
    try:
        ingest, seconds = _ingest_with_broker_at(server.port if server else _closed_port())
    finally:
        if server:
            server.close()
    assert ingest.returncode != 0
    assert seconds < 30  # Python and Django's start included; it used to wait for ever
    assert "the task queue (Redis at 127.0.0.1:" in ingest.stderr
    assert "Traceback" not in ingest.stderr
    run = IngestRun.objects.get()
    assert run.status == IngestRun.Status.FAILED and "Not queued" in run.error


@pytest.fixture
def broker_down():
    """This process's Celery app sends to a closed port (its connection pool started afresh)."""
    app.conf.broker_url, previous = f"redis://127.0.0.1:{_closed_port()}/0", app.conf.broker_url
    app._pool = None
    app.amqp._producer_pool = None
    yield
    app.conf.broker_url = previous
    app._pool = None
    app.amqp._producer_pool = None


@pytest.mark.django_db(transaction=True)  # as in production: the run commits, then is sent
def test_run_now_in_the_admin_with_the_broker_down_says_so(admin_client, broker_down):
    source = Source.objects.create(name="rss", kind="arxiv_rss", enabled=False)
    started = time.monotonic()
    response = admin_client.post(
        reverse("admin:ingest_source_changelist"),
        {"action": "run_now", "_selected_action": [source.pk]},
        follow=True,
    )
    assert time.monotonic() - started < 10
    assert response.status_code == 200
    (message,) = [str(m) for m in response.context["messages"]]
    assert "failed: the task queue (Redis at 127.0.0.1:" in message
    assert IngestRun.objects.get().status == IngestRun.Status.FAILED


@pytest.mark.django_db(transaction=True)
def test_saving_a_topic_with_the_broker_down_keeps_it_and_says_tagging_waits(
    admin_client, broker_down
):
    response = admin_client.post(
        reverse("admin:catalogue_topic_add"),
        {"name": "Linear attention", "slug": "linear-attention", "query": '"linear attention"'},
        follow=True,
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert any("were not tagged" in m and "Redis at 127.0.0.1:" in m for m in messages)
    assert not any("in the background" in m for m in messages)  # nothing claims it was queued
    assert Topic.objects.filter(slug="linear-attention").exists()


@pytest.mark.django_db(transaction=True)
def test_refetch_from_arxiv_with_the_broker_down_says_nothing_was_queued(
    admin_client, broker_down, papers
):
    paper = Paper.objects.get(arxiv_id="2411.00001")
    response = admin_client.post(
        reverse("admin:catalogue_paper_changelist"),
        {"action": "refetch", "_selected_action": [paper.pk]},
        follow=True,
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert any(m.startswith("Re-fetch not queued: the task queue") for m in messages)
    assert not any("queued: follow it" in m for m in messages)
