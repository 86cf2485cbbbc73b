"""A listing split into chunk runs (``--chunks``): exact totals, whoever executes the chunks.

In-process (``--inline``: the chunks one after the other) for the planning, the byte ranges of
files and URLs and the date windows of an OAI-PMH harvest; with real worker processes in
test_split_runs_on_workers.py.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from catalogue.models import Paper
from ingest import chunks, runner
from ingest.models import IngestRun, Source
from ingest.runner import create_run, execute_run
from tests.bench.synthetic import snapshot_lines
from tests.local_http import LocalServer

DATA = Path(__file__).resolve().parents[1] / "data" / "formats"
OAI_PAGE = DATA / "arxiv_oai_pmh" / "arXiv_hepcrawl_arxiv-physics-hep-th.xml"
HF_DAILY = DATA / "hf_daily_papers" / "daily" / "2025-03-03.json"
PAPERS = 1_200
BAD_LINES = {100: b"not json\n", 700: b"[1, 2]\n", 1_150: b"{}\n"}

pytestmark = pytest.mark.django_db


def snapshot(path: Path) -> Path:
    """PAPERS papers with three rejectable lines among them."""
    with open(path, "wb") as out:
        for number, line in enumerate(snapshot_lines(PAPERS)):
            out.write(BAD_LINES.get(number, b""))
            out.write(line.encode() + b"\n")
    return path


def ingest(*args: str) -> IngestRun:
    call_command("ingest", *args, "--inline", "--no-progress")
    return IngestRun.objects.filter(parent=None).latest("pk")


def counts(run: IngestRun) -> tuple[int, ...]:
    return (run.seen, run.created, run.updated, run.unchanged, run.rejected)


def test_a_split_file_ingests_each_record_once_with_the_totals_of_one_run(tmp_path):
    path = snapshot(tmp_path / "snapshot.jsonl")
    run = ingest(str(path), "--chunks", "7")

    assert run.status == IngestRun.Status.PARTIAL and run.chunk_count == 7
    assert counts(run) == (PAPERS, PAPERS, 0, 0, len(BAD_LINES))
    assert run.expected == PAPERS + len(BAD_LINES)  # the file's lines, for progress
    assert Paper.objects.count() == PAPERS
    chunk_counts = [counts(chunk) for chunk in run.chunks.all()]
    assert all(seen > 0 for seen, *_ in chunk_counts)  # the work was split, not done by one
    positions = sorted(run.all_rejections().values_list("position", flat=True))
    assert len(positions) == len(BAD_LINES)
    assert all(p.startswith("chunk ") and " of 7, line " in p for p in positions), positions

    again = ingest(str(path), "--chunks", "3")  # other boundaries, the same records
    assert counts(again) == (PAPERS, 0, 0, PAPERS, len(BAD_LINES))


def test_the_command_reports_the_chunks_and_their_rejections(tmp_path, capsys):
    path = snapshot(tmp_path / "snapshot.jsonl")
    call_command("ingest", str(path), "--chunks", "4", "--inline", "--no-progress")
    out = capsys.readouterr().out
    assert f"seen {PAPERS}, created {PAPERS}" in out
    assert "in 4 chunks, executed on" in out
    assert out.count("  rejected ") == len(BAD_LINES)


def test_a_bad_number_of_chunks_is_a_usage_error(tmp_path):
    path = snapshot(tmp_path / "snapshot.jsonl")
    for bad in ("0", "-2", "many", str(chunks.MAX_CHUNKS + 1)):
        with pytest.raises(CommandError, match="number of chunks"):
            call_command("ingest", str(path), "--chunks", bad, "--inline")
    assert not IngestRun.objects.exists()


def test_a_format_that_cannot_be_split_fails_the_run_with_the_reason():
    with pytest.raises(CommandError, match="cannot be split into chunks"):
        call_command("ingest", str(HF_DAILY), "--chunks", "2", "--inline", "--no-progress")
    run = IngestRun.objects.get()
    assert run.status == IngestRun.Status.FAILED and not run.chunks.exists()


def test_failed_chunks_fail_their_run_and_a_retry_runs_just_them_again(tmp_path):
    path = snapshot(tmp_path / "snapshot.jsonl")
    run = create_run(str(path), chunks=3)
    queued: list[int] = []
    execute_run(run, enqueue=queued.append)  # planned; the chunks wait for workers
    run.refresh_from_db()
    assert run.status == IngestRun.Status.RUNNING and len(queued) == run.chunk_count == 3

    first, *others = IngestRun.objects.filter(pk__in=queued).order_by("pk")
    execute_run(first)
    moved = path.rename(tmp_path / "moved.jsonl")  # the file gone for the other chunks
    for chunk in others:
        execute_run(chunk)
    run.refresh_from_db()
    assert run.status == IngestRun.Status.FAILED
    assert run.error.startswith("2 of 3 chunks failed") and "No such file" in run.error

    moved.rename(path)
    IngestRun.objects.filter(pk=run.pk).update(status=IngestRun.Status.QUEUED)
    execute_run(run)  # no enqueue: the chunks run here
    run.refresh_from_db()
    assert run.status == IngestRun.Status.PARTIAL
    assert counts(run) == (PAPERS, PAPERS, 0, 0, len(BAD_LINES))
    first.refresh_from_db()
    assert first.attempts == 1  # the chunk that had succeeded was not run again


def test_the_reaper_leaves_a_split_run_whose_chunks_are_queued(tmp_path):
    path = snapshot(tmp_path / "snapshot.jsonl")
    run = create_run(str(path), chunks=2)
    execute_run(run, enqueue=lambda chunk_id: None)
    run.refresh_from_db()
    assert run.status == IngestRun.Status.RUNNING and run.chunk_count == 2
    assert not IngestRun.objects.orphaned().exists()
    # Planned but not handed out (its worker died in between): the reaper queues it again.
    IngestRun.objects.filter(pk=run.pk).update(chunk_count=None)
    assert list(IngestRun.objects.orphaned()) == [run]


# --- a URL split by byte ranges ---------------------------------------------------------


def range_server(body: bytes, asked: list, ranges: bool = True) -> LocalServer:
    """Serves ``body``, answering a Range request with 206 unless not ``ranges``; each
    request's Range header (or None) is added to ``asked``."""

    def answer(request):
        header = request.headers.get("Range")
        asked.append(header)
        if not (ranges and header):
            return 200, body, {}
        first, _, last = header.removeprefix("bytes=").partition("-")
        first, last = int(first), min(int(last or len(body) - 1), len(body) - 1)
        return 206, body[first : last + 1], {"Content-Range": f"bytes {first}-{last}/{len(body)}"}

    return LocalServer(answer)


@pytest.fixture
def local_fetches(settings):
    settings.INGEST_ALLOW_PRIVATE_HOSTS = True
    settings.INGEST_RETRY_BACKOFF = 0.01


def test_a_url_is_split_by_byte_ranges_each_chunk_fetching_its_own(
    tmp_path, local_fetches, monkeypatch
):
    body = snapshot(tmp_path / "snapshot.jsonl").read_bytes()
    # A tail shorter than most lines: a chunk must fetch on, piece by piece, to its last newline.
    monkeypatch.setattr(runner, "RANGE_TAIL", 1000)
    asked = []
    with range_server(body, asked) as server:
        run = ingest(f"{server.base}/snapshot.jsonl", "--chunks", "5")
    assert counts(run) == (PAPERS, PAPERS, 0, 0, len(BAD_LINES)) and run.chunk_count == 5
    assert None not in asked  # every request asked for a range, none for it all
    assert len(asked) > 1 + 5  # the probe, each chunk's range and its pieces


def test_a_url_without_byte_ranges_fails_the_run_with_the_reason(tmp_path, local_fetches):
    body = snapshot(tmp_path / "snapshot.jsonl").read_bytes()
    refused = pytest.raises(CommandError, match="does not serve byte ranges")
    with range_server(body, [], ranges=False) as server, refused:
        ingest(f"{server.base}/snapshot.jsonl", "--chunks", "3")
    assert not Paper.objects.exists()


# --- an OAI-PMH harvest split by date ---------------------------------------------------


def oai_server(windows: list) -> LocalServer:
    """Answers every ListRecords with the same recorded page; adds each (from, until) asked
    for to ``windows``."""
    page = OAI_PAGE.read_bytes()

    def answer(request):
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()}
        windows.append((query.get("from"), query.get("until")))
        return 200, page, {}

    return LocalServer(answer)


def test_an_oai_pmh_harvest_is_split_into_date_windows_sharing_no_day(local_fetches, settings):
    settings.INGEST_SHARED_THROTTLE = False
    windows = []
    params = {"from": "2025-01-01", "until": "2025-01-10", "set": "physics:hep-th"}
    with oai_server(windows) as server:
        url = f"{server.base}/oai"
        Source.objects.create(name="hep-th", kind="arxiv_oai", url=url, params=params)
        run = ingest("--source", "hep-th", "--chunks", "3")

    expected = chunks.date_windows(dt.date(2025, 1, 1), dt.date(2025, 1, 10), 3)
    assert sorted(windows) == [(a.isoformat(), b.isoformat()) for a, b in expected]
    per_page = run.chunks.order_by("pk").first().seen
    assert per_page > 0 and run.chunk_count == 3
    # The recorded page answers every window: one chunk creates, the others find no change.
    assert counts(run) == (3 * per_page, per_page, 0, 2 * per_page, 0)


def test_only_an_oai_pmh_source_with_a_start_date_can_be_split(local_fetches):
    Source.objects.create(name="no-start", kind="arxiv_oai", url="http://127.0.0.1:9/oai")
    Source.objects.create(name="rss", kind="arxiv_rss", url="http://127.0.0.1:9/rss")
    with pytest.raises(CommandError, match="give the source a 'from' date"):
        ingest("--source", "no-start", "--chunks", "2")
    with pytest.raises(CommandError, match="cannot be split into chunks"):
        ingest("--source", "rss", "--chunks", "2")


def test_the_admin_shows_a_split_runs_chunks_and_their_rejections(tmp_path, admin_client):
    run = ingest(str(snapshot(tmp_path / "snapshot.jsonl")), "--chunks", "3")
    page = admin_client.get(reverse("admin:ingest_ingestrun_change", args=[run.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    for chunk in run.chunks.all():
        start, end = chunk.options["byte_range"]
        assert f"bytes {start:,} to {end:,}" in html and chunk.counts_line() in html
    assert "executed on " in html and "chunk 1 of 3, line " in html

    rejections = admin_client.get(
        reverse("admin:ingest_rejectedrecord_changelist"), {"run__parent__id__exact": run.pk}
    )
    assert rejections.status_code == 200
    assert rejections.context["cl"].result_count == len(BAD_LINES)

    chunk = run.chunks.order_by("pk").last()
    page = admin_client.get(reverse("admin:ingest_ingestrun_change", args=[chunk.pk]))
    assert "chunk 3 of 3 of " in page.content.decode()
