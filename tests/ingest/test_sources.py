"""Configured sources: scheduled by beat, fetched page by page, polite between runs."""

import datetime as dt
import http.server
import json
import threading
import time
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from catalogue.models import Paper
from ingest.models import IngestRun, Source
from ingest.runner import create_run, execute_run
from ingest.tasks import ingest_source
from tests.conftest import DATA_DIR

DAILY = DATA_DIR / "formats/hf_daily_papers/daily/2025-03-03.json"
RSS = DATA_DIR / "formats/arxiv_rss/rss_quant-ph_2025-04-28.xml"


class FakeListingServer:
    """HF's daily API (sliced by p/limit like the real one) and an RSS feed with an ETag."""

    def __init__(self):
        self.requests: list[str] = []
        items = json.loads(DAILY.read_bytes())
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                url = urlsplit(self.path)
                if url.path == "/api/daily_papers":
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    page, limit = int(query["p"]), int(query["limit"])
                    body = json.dumps(items[page * limit : (page + 1) * limit]).encode()
                    return self.reply(200, body, {})
                if self.headers.get("If-None-Match") == '"rss-1"':
                    return self.reply(304, b"", {"ETag": '"rss-1"'})
                return self.reply(200, RSS.read_bytes(), {"ETag": '"rss-1"'})

            def reply(self, status, body, headers):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.items = items
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def listing_server():
    server = FakeListingServer()
    yield server
    server.close()


def run_source(name: str) -> str:
    out = StringIO()
    call_command("ingest", "--source", name, "--no-progress", stdout=out, timeout=60)
    return out.getvalue()


@pytest.mark.django_db
def test_saving_a_source_schedules_it_with_beat_and_disabling_pauses_it():
    source = Source.objects.create(
        name="hf-today", kind="hf_daily", params={"date": "today"}, crontab="30 7 * * *"
    )
    task = PeriodicTask.objects.get(pk=source.periodic_task_id)
    assert task.task == "ingest.tasks.ingest_source"
    assert json.loads(task.args) == [source.pk]
    assert (task.crontab.minute, task.crontab.hour, task.enabled) == ("30", "7", True)

    source.enabled = False
    source.save()
    task.refresh_from_db()
    assert task.enabled is False

    source.delete()
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_source_run_pages_through_the_listing_on_the_worker(celery_worker, listing_server):
    Source.objects.create(
        name="hf-day",
        kind="hf_daily",
        url=f"{listing_server.base}/api/daily_papers",
        params={"date": "2025-03-03", "limit": 10},
    )
    output = run_source("hf-day")
    items = len(listing_server.items)
    assert f"succeeded (hf_daily): seen {items}, created {items}" in output
    pages = [r for r in listing_server.requests if r.startswith("/api/daily_papers")]
    assert len(pages) == items // 10 + 1
    assert set(Paper.objects.values_list("listed_on", flat=True)) == {dt.date(2025, 3, 3)}


@pytest.mark.django_db(transaction=True)
def test_unchanged_feed_is_not_downloaded_again(celery_worker, listing_server):
    Source.objects.create(name="quant-ph", kind="arxiv_rss", url=f"{listing_server.base}/rss")
    assert "created 81" in run_source("quant-ph")
    second = run_source("quant-ph")
    assert "succeeded (arxiv_rss): seen 0, created 0" in second
    assert len(listing_server.requests) == 2  # the second was a conditional GET answered 304


@pytest.mark.django_db(transaction=True)
def test_beat_entry_point_starts_a_run_of_an_enabled_source(celery_worker, listing_server):
    source = Source.objects.create(
        name="quant-ph", kind="arxiv_rss", url=f"{listing_server.base}/rss"
    )
    ingest_source.delay(source.pk)  # as beat sends it
    deadline = time.monotonic() + 30
    while not IngestRun.objects.filter(source=source, status="succeeded").exists():
        assert time.monotonic() < deadline, "the scheduled run did not finish"
        time.sleep(0.1)
    assert Paper.objects.count() == 81


@pytest.mark.django_db
def test_bad_source_parameters_fail_the_run_with_a_clear_message():
    source = Source.objects.create(name="broken", kind="hf_daily", params={"dat": "today"})
    run = execute_run(create_run(source=source))
    assert run.status == IngestRun.Status.FAILED
    assert "dat" in run.error
