"""Sources and runs in the admin: checked parameters, schedules, Run now, progress, retries."""

import datetime as dt
import http.server
import threading

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from catalogue.models import Paper
from ingest import tasks as ingest_tasks
from ingest.models import IngestRun, RejectedRecord, Source
from tests.admin_support import action_data, wait_for
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.django_db

RSS = DATA_DIR / "formats/arxiv_rss/rss_quant-ph_2025-04-28.xml"
SOURCES = reverse("admin:ingest_source_changelist")
RUNS = reverse("admin:ingest_ingestrun_changelist")
NEW_SOURCE = {
    "name": "hf-today",
    "kind": "hf_daily",
    "url": "",
    "params": '{"date": "today"}',
    "crontab": "30 7 * * *",
    "enabled": "on",
}


@pytest.fixture
def queued(monkeypatch):
    """Run ids handed to the worker, recorded instead of sent."""
    sent = []
    monkeypatch.setattr(ingest_tasks.ingest_run, "delay", sent.append)
    return sent


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_adding_a_source_checks_its_params_like_a_run_would(admin_client):
    response = admin_client.post(
        reverse("admin:ingest_source_add"), {**NEW_SOURCE, "params": '{"dat": "today"}'}
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["params"]
    assert errors == ["unknown hf_daily param 'dat' (accepted: date, limit)"]
    assert not Source.objects.exists()


@pytest.mark.parametrize("url", ["ftp://example.org/listing", "javascript:alert(1)"])
def test_a_source_url_is_a_web_address(admin_client, url):
    response = admin_client.post(reverse("admin:ingest_source_add"), {**NEW_SOURCE, "url": url})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["url"]
    assert errors == ["Enter a web address starting with http:// or https://."]
    assert not Source.objects.exists()


def test_a_bad_crontab_field_is_a_form_error(admin_client):
    response = admin_client.post(
        reverse("admin:ingest_source_add"), {**NEW_SOURCE, "crontab": "61 7 * * *"}
    )
    assert response.context["adminform"].form.errors["crontab"] == ["'61' is not a valid minute."]


def test_a_valid_source_is_saved_with_its_beat_schedule_and_history(admin_client, admin_user):
    response = admin_client.post(reverse("admin:ingest_source_add"), NEW_SOURCE)
    assert response.status_code == 302
    source = Source.objects.get()
    task = PeriodicTask.objects.get(pk=source.periodic_task_id)
    assert (task.crontab.minute, task.crontab.hour, task.enabled) == ("30", "7", True)
    assert LogEntry.objects.get(object_id=str(source.pk)).action_flag == ADDITION


def test_disable_pauses_the_schedule_and_enable_resumes_it(admin_client):
    source = Source.objects.create(name="rss", kind="arxiv_rss")
    response = admin_client.post(SOURCES, action_data("disable", [source]), follow=True)
    assert "1 source(s) disabled." in messages_of(response)
    assert PeriodicTask.objects.get(pk=source.periodic_task_id).enabled is False
    admin_client.post(SOURCES, action_data("enable", [source]))
    assert PeriodicTask.objects.get(pk=source.periodic_task_id).enabled is True
    assert LogEntry.objects.filter(object_id=str(source.pk)).count() == 2


def test_source_list_shows_each_last_run_in_a_fixed_number_of_queries(admin_client):
    now = timezone.now()
    for number in range(12):
        source = Source.objects.create(name=f"source-{number}", kind="arxiv_rss")
        for age in (3, 1):  # the newer run is the one shown
            IngestRun.objects.create(
                source=source,
                status="failed" if age == 3 else "succeeded",
                seen=age,
                created=age,
                queued_at=now - dt.timedelta(hours=age),
            )
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(SOURCES)
    assert len(response.context["cl"].result_list) == 12
    # session, user, kind filter, count, sources, their newest runs (one query for all)
    assert len(queries) <= 8
    page = response.content.decode()
    assert page.count("succeeded · ") == 12 and "failed" not in page.split("</thead>")[1]
    assert "seen 1, created 1" in page


def test_run_now_creates_a_run_and_queues_it(
    admin_client, queued, django_capture_on_commit_callbacks
):
    source = Source.objects.create(name="rss", kind="arxiv_rss", enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(SOURCES, action_data("run_now", [source]), follow=True)
    run = IngestRun.objects.get()
    assert (run.source, run.status, run.format) == (source, "queued", "arxiv_rss")
    assert queued == [run.pk]
    assert f"run {run.pk}" in messages_of(response)[0]
    assert LogEntry.objects.get(object_id=str(run.pk)).action_flag == ADDITION


# --- a real run on the worker --------------------------------------------------------------


@pytest.fixture
def feed_server():
    body = RSS.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/rss/quant-ph"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.django_db(transaction=True)
def test_run_now_runs_the_source_on_the_worker_and_the_list_shows_it(
    admin_client, celery_worker, feed_server
):
    source = Source.objects.create(name="quant-ph", kind="arxiv_rss", url=feed_server)
    admin_client.post(SOURCES, action_data("run_now", [source]))

    run = wait_for(
        lambda: IngestRun.objects.filter(source=source, finished_at__isnull=False).first(),
        30,
        "the run to finish",
    )
    assert run.status == IngestRun.Status.SUCCEEDED, run.error
    assert Paper.objects.count() == run.created == 81
    page = admin_client.get(SOURCES).content.decode()
    assert f"run {run.pk}</a> succeeded" in page
    assert "seen 81, created 81" in page


# --- runs ----------------------------------------------------------------------------------


def test_a_running_run_shows_a_progress_bar_and_its_duration_so_far(admin_client):
    started = timezone.now() - dt.timedelta(minutes=2)
    IngestRun.objects.create(
        location="x", status="running", seen=40, rejected=2, expected=100, started_at=started
    )
    page = admin_client.get(RUNS).content.decode()
    assert '<progress value="42" max="100">' in page
    assert "2m 0" in page and "so far" in page


def test_run_page_lists_rejected_records_with_reasons(admin_client):
    run = IngestRun.objects.create(location="x", status="partial", rejected=2)
    RejectedRecord.objects.create(run=run, position="line 3", reason="missing title", raw="…")
    RejectedRecord.objects.create(run=run, position="line 9", reason="bad date", raw="Smarch 1")
    page = admin_client.get(reverse("admin:ingest_ingestrun_change", args=[run.pk]))
    text = page.content.decode()
    assert "missing title" in text and "bad date" in text and "line 9" in text
    all_url = reverse("admin:ingest_rejectedrecord_changelist") + f"?run__id__exact={run.pk}"
    assert all_url in text
    assert len(admin_client.get(all_url).context["cl"].result_list) == 2


def test_runs_are_read_only(admin_client):
    run = IngestRun.objects.create(location="x", status="succeeded")
    change = reverse("admin:ingest_ingestrun_change", args=[run.pk])
    assert admin_client.get(change).context["has_change_permission"] is False
    assert admin_client.post(change, {"status": "failed"}).status_code == 403
    assert admin_client.get(reverse("admin:ingest_ingestrun_add")).status_code == 403


def test_retry_queues_a_new_run_with_the_same_inputs_for_failed_runs_only(
    admin_client, queued, django_capture_on_commit_callbacks
):
    source = Source.objects.create(name="rss", kind="arxiv_rss")
    failed = IngestRun.objects.create(
        source=source,
        format="arxiv_rss",
        location="https://example.org/rss",
        options={"format": "arxiv_rss", "listed_on": "2025-04-28"},
        status="failed",
        error="HTTP 503",
    )
    done = IngestRun.objects.create(location="x", status="succeeded")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(RUNS, action_data("retry", [failed, done]), follow=True)
    retry = IngestRun.objects.exclude(pk__in=[failed.pk, done.pk]).get()
    assert (retry.source, retry.location, retry.options, retry.status) == (
        source,
        failed.location,
        failed.options,
        "queued",
    )
    assert queued == [retry.pk]
    notes = messages_of(response)
    assert f"run {retry.pk}" in notes[0] and "Skipped 1 run(s) that did not fail." in notes[1]
    assert IngestRun.objects.get(pk=failed.pk).status == "failed"  # kept, for the record
