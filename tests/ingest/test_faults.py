"""Faults, each with its test: bad records, truncated files, flaky servers.

Killed workers: test_worker_crash.py; records the database refuses and failed tasks:
test_runs.py."""

import contextlib
import http.server
import threading
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from catalogue.models import Paper, Sighting
from ingest.models import IngestRun
from ingest.runner import create_run, execute_run
from ingest.tasks import MAX_RETRIES
from tests.bench.synthetic import snapshot_lines
from tests.conftest import DATA_DIR, FAST_RETRIES

HF_DAILY = DATA_DIR / "formats/hf_daily_papers/daily/2025-03-03.json"


# --- records and files ---------------------------------------------------------------------


@pytest.mark.django_db
def test_malformed_record_is_rejected_with_its_reason_and_the_rest_lands(tmp_path):
    lines = list(snapshot_lines(10))
    lines.insert(5, '{"id": "3999.00001", "title": "broken"')  # not valid JSON
    path = tmp_path / "snapshot.jsonl"
    path.write_text("\n".join(lines) + "\n")

    run = execute_run(create_run(str(path)))

    assert (run.status, run.created, run.rejected) == (IngestRun.Status.PARTIAL, 10, 1)
    rejection = run.rejections.get()
    assert rejection.position == "line 6"
    assert "JSON" in rejection.reason
    assert rejection.raw.startswith('{"id": "3999.00001"')


@pytest.mark.django_db
def test_truncated_file_fails_with_position_keeps_batches_and_rerun_completes(tmp_path, settings):
    settings.INGEST_BATCH_SIZE = 50
    whole = "\n".join(snapshot_lines(230)) + "\n"
    truncated = whole[: whole.rindex('"abstract"')]  # the last line is cut mid-record
    path = tmp_path / "snapshot.jsonl"
    path.write_text(truncated)

    failed = execute_run(create_run(str(path)))
    assert failed.status == IngestRun.Status.FAILED
    assert "line 230" in failed.error
    assert Paper.objects.count() == 229  # every record before the cut landed

    path.write_text(whole)
    rerun = execute_run(create_run(str(path)))
    assert (rerun.status, rerun.created, rerun.unchanged) == (IngestRun.Status.SUCCEEDED, 1, 229)
    assert Paper.objects.count() == 230
    assert Sighting.objects.count() == 230


@pytest.mark.django_db
def test_file_that_is_no_known_format_fails_the_run_clearly(tmp_path):
    path = tmp_path / "mystery.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not a listing")
    run = execute_run(create_run(str(path)))
    assert run.status == IngestRun.Status.FAILED
    assert "cannot tell the format" in run.error


# --- HTTP faults, through the worker -------------------------------------------------------


class ScriptedServer:
    """A local HTTP server answering each request with the next scripted response."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                status, headers, body, delay = outer.next_response()
                time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # The client may have timed out first, as the timeout test intends.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/api/daily_papers?date=2025-03-03"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def next_response(self):
        # The last scripted response repeats forever.
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(*script):
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


OK = (200, {"Content-Type": "application/json"}, HF_DAILY.read_bytes(), 0)


def ingest_url(url: str) -> str:
    out = StringIO()
    call_command("ingest", url, "--no-progress", stdout=out, timeout=120)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_429_with_retry_after_then_200_succeeds(celery_worker, serve):
    server = serve((429, {"Retry-After": "1"}, b"slow down", 0), OK)
    output = ingest_url(server.url)
    assert "succeeded (hf_daily)" in output
    assert server.requests == 2
    assert Paper.objects.count() > 0


@pytest.mark.django_db(transaction=True)
def test_timeouts_are_retried(celery_worker, serve):
    too_slow = (200, {}, b"[]", float(FAST_RETRIES["INGEST_FETCH_TIMEOUT"]) + 1)
    server = serve(too_slow, OK)
    output = ingest_url(server.url)
    assert "succeeded (hf_daily)" in output
    assert server.requests == 2


@pytest.mark.django_db(transaction=True)
def test_persistent_500_is_retried_then_recorded_as_a_failure(celery_worker, serve):
    server = serve((500, {}, b"oops", 0))
    with pytest.raises(CommandError, match="HTTP 500"):
        ingest_url(server.url)
    run = IngestRun.objects.get()
    assert run.status == IngestRun.Status.FAILED
    assert run.attempts == MAX_RETRIES + 1  # every task attempt tried…
    attempts_per_task = int(FAST_RETRIES["INGEST_FETCH_ATTEMPTS"])
    assert server.requests == run.attempts * attempts_per_task  # …each with its own retries


@pytest.mark.django_db(transaction=True)
def test_404_fails_at_once_without_retries(celery_worker, serve):
    server = serve((404, {}, b"no such day", 0))
    with pytest.raises(CommandError, match="HTTP 404"):
        ingest_url(server.url)
    assert server.requests == 1
    assert IngestRun.objects.get().attempts == 1
