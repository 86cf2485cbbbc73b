"""A large run loads the papers without their secondary indexes and builds them again at its
end, whatever ends it; no index is ever lost (ingest.deferral)."""

import threading
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from catalogue.models import Paper
from ingest import deferral, runner
from ingest.models import DeferredIndex, IngestRun
from ingest.records import PaperRecord
from ingest.runner import create_run, execute_run
from tests.bench.synthetic import snapshot_lines, synthetic_id


def paper_indexes() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
            [deferral.PAPERS_TABLE],
        )
        return dict(cursor.fetchall())


SECONDARY = {
    "paper_search_gin",
    "paper_author_gin",
    "paper_title_gin",
    "paper_trending_idx",
    "paper_published_idx",
    "paper_upvotes_idx",
    "paper_sample_gin",
}
KEPT = {"catalogue_paper_pkey", "paper_arxiv_id_unique", "paper_source_key_unique"}


@pytest.fixture
def indexes_as_migrated():
    """The indexes the migrations made; after the test, every one is there again, the same."""
    before = paper_indexes()
    assert set(before) >= SECONDARY | KEPT
    yield before
    deferral.restore_abandoned()  # a failed test's leftovers: the next tests need them
    DeferredIndex.objects.all().delete()
    assert paper_indexes() == before


def paper(number: int) -> PaperRecord:
    arxiv_id = synthetic_id(number)
    return PaperRecord(
        source="arxiv_oai", source_key=arxiv_id, arxiv_id=arxiv_id, title=f"Paper {number}"
    )


def snapshot(tmp_path, count: int, name: str = "snapshot.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(snapshot_lines(count)) + "\n")
    return path


def ingest(path) -> str:
    out = StringIO()
    call_command(
        "ingest", str(path), "--inline", "--no-progress", "--format", "arxiv_snapshot", stdout=out
    )
    return out.getvalue()


@pytest.fixture(autouse=True)
def count_every_file(monkeypatch):
    """Runs know their records' number from the file's lines, small test files too."""
    monkeypatch.setattr(runner, "COUNT_LINES_FROM_BYTES", 0)


@pytest.fixture
def indexes_while_writing(monkeypatch):
    """The papers' index names each time a run starts writing its records."""
    seen: list[set[str]] = []
    consume = runner._consume

    def noting(*args):
        seen.append(set(paper_indexes()))
        return consume(*args)

    monkeypatch.setattr(runner, "_consume", noting)
    return seen


@pytest.mark.django_db(transaction=True)
def test_a_large_run_into_an_empty_catalogue_writes_without_secondary_indexes_then_builds_them(
    settings, tmp_path, indexes_as_migrated, indexes_while_writing
):
    settings.INGEST_DEFER_INDEXES_FROM = 100
    settings.INGEST_BATCH_SIZE = 40
    output = ingest(snapshot(tmp_path, 300))

    assert "succeeded" in output
    assert Paper.objects.count() == 300
    (while_writing,) = indexes_while_writing
    assert while_writing == KEPT
    assert paper_indexes() == indexes_as_migrated  # same names, same definitions
    assert not DeferredIndex.objects.exists()
    word = Paper.objects.first().title.split()[0]
    assert Paper.objects.search(word).exists()


@pytest.mark.django_db(transaction=True)
def test_a_run_of_many_payloads_defers_once_and_builds_once_at_its_end(
    settings, monkeypatch, indexes_as_migrated, indexes_while_writing
):
    """A harvest's pages each say how large the whole harvest is: the indexes are dropped
    at its first page and built at its end, not around every page."""
    settings.INGEST_DEFER_INDEXES_FROM = 100
    built: list[str] = []
    build_one = deferral._build_one
    monkeypatch.setattr(deferral, "_build_one", lambda name: built.append(name) or build_one(name))

    def pages(run):
        runner._mark(run, expected=150)  # as a harvest's first page tells
        for page in range(3):
            yield [paper(number) for number in range(page * 50, page * 50 + 50)]

    monkeypatch.setattr(runner, "_parsed_payloads", pages)
    run = execute_run(create_run("harvest"))

    assert run.status == IngestRun.Status.SUCCEEDED
    assert Paper.objects.count() == 150
    assert indexes_while_writing == [KEPT, KEPT, KEPT]
    assert sorted(built) == sorted(set(indexes_as_migrated) - KEPT)  # each once
    assert paper_indexes() == indexes_as_migrated


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("threshold", "records", "already"),
    [
        (0, 300, 0),  # turned off
        (400, 300, 0),  # a run below the threshold
        (100, 300, 301),  # a catalogue larger than the run
    ],
)
def test_other_runs_write_with_every_index(
    settings, tmp_path, indexes_as_migrated, indexes_while_writing, threshold, records, already
):
    if already:
        ingest(snapshot(tmp_path, already, "before.jsonl"))
        indexes_while_writing.clear()
    settings.INGEST_DEFER_INDEXES_FROM = threshold
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(snapshot_lines(records, start=already)) + "\n")  # new papers
    assert "succeeded" in ingest(path)
    (while_writing,) = indexes_while_writing
    assert while_writing == set(indexes_as_migrated)


@pytest.mark.django_db(transaction=True)
def test_a_run_that_fails_midway_builds_its_indexes_again_and_keeps_what_it_wrote(
    settings, tmp_path, indexes_as_migrated
):
    settings.INGEST_DEFER_INDEXES_FROM = 100
    settings.INGEST_BATCH_SIZE = 40
    path = tmp_path / "truncated.jsonl"
    lines = list(snapshot_lines(200))
    path.write_text("\n".join(lines) + "\n" + lines[0][:50])  # a cut last line
    with pytest.raises(CommandError, match="truncated last line"):
        ingest(path)

    assert Paper.objects.count() == 200
    assert paper_indexes() == indexes_as_migrated
    assert not DeferredIndex.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_worker_stopped_mid_run_leaves_its_indexes_recorded_and_the_resumed_run_builds_them(
    settings, tmp_path, indexes_as_migrated
):
    settings.INGEST_DEFER_INDEXES_FROM = 100
    run = create_run(str(snapshot(tmp_path, 150)), fmt="arxiv_snapshot")
    run.expected = 150
    dropped = deferral.defer(run)  # what the stopped worker did before its batches

    assert set(dropped) >= SECONDARY and not set(dropped) & KEPT
    assert set(paper_indexes()) == KEPT
    assert set(DeferredIndex.objects.values_list("name", flat=True)) == set(dropped)
    assert deferral.restore_abandoned() == []  # its run is not finished: not abandoned

    run = execute_run(run)  # the reaper's resend
    assert run.status == IngestRun.Status.SUCCEEDED
    assert paper_indexes() == indexes_as_migrated
    assert not DeferredIndex.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_indexes_left_by_a_finished_or_deleted_run_are_built_by_the_next_run(
    tmp_path, indexes_as_migrated
):
    gone = create_run("gone.jsonl")
    deferral.defer(gone)
    gone.delete()  # its indexes' run: NULL
    assert set(paper_indexes()) == KEPT

    run = execute_run(create_run(str(snapshot(tmp_path, 20)), fmt="arxiv_snapshot"))

    assert run.status == IngestRun.Status.SUCCEEDED
    assert paper_indexes() == indexes_as_migrated
    assert not DeferredIndex.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_table_held_by_a_reader_keeps_its_indexes(monkeypatch, indexes_as_migrated):
    """Dropping waits for every reader; a long one would stall the pages: the run gives up."""
    monkeypatch.setattr(deferral, "LOCK_TIMEOUT", "200ms")
    run = create_run("held.jsonl")
    reading, done = threading.Event(), threading.Event()
    url = connection.get_connection_params()

    def reader():
        with psycopg.connect(**url) as held:
            held.execute("SELECT count(*) FROM catalogue_paper")  # its lock lasts until commit
            reading.set()
            done.wait(10)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        reading.wait(10)
        assert deferral.defer(run) == []
    finally:
        done.set()
        thread.join()
    assert paper_indexes() == indexes_as_migrated
    assert not DeferredIndex.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_of_two_runs_deferring_at_once_one_drops_the_indexes_and_the_other_finds_none(
    indexes_as_migrated,
):
    runs = [create_run("first.jsonl"), create_run("second.jsonl")]
    dropped: dict[int, list[str]] = {}
    start = threading.Barrier(2)

    def deferring(run):
        start.wait(10)
        dropped[run.pk] = deferral.defer(run)
        connection.close()  # this thread's

    threads = [threading.Thread(target=deferring, args=[run]) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(map(len, dropped.values())) == [0, len(indexes_as_migrated) - len(KEPT)]
    assert set(paper_indexes()) == KEPT
    for run in runs:
        deferral.restore_for(run)


@pytest.mark.django_db(transaction=True)
def test_an_index_that_fails_to_build_keeps_its_record_and_error_and_the_others_are_built(
    admin_client, indexes_as_migrated
):
    run = create_run("broken.jsonl")
    deferral.defer(run)
    broken = "CREATE INDEX paper_search_gin ON public.catalogue_paper (no_such_column)"
    DeferredIndex.objects.filter(name="paper_search_gin").update(definition=broken)

    built = deferral.restore_for(run)

    assert "paper_search_gin" not in built and len(built) == len(indexes_as_migrated) - 4
    (left,) = DeferredIndex.objects.all()
    assert left.name == "paper_search_gin" and "no_such_column" in left.error
    listing = admin_client.get(reverse("admin:ingest_deferredindex_changelist"))
    assert "no_such_column" in listing.text
    run.status = IngestRun.Status.RUNNING  # even while its run is unfinished, the next run
    run.save()  # tries a failed one again
    DeferredIndex.objects.filter(pk=left.pk).update(definition=indexes_as_migrated[left.name])
    assert deferral.restore_abandoned() == ["paper_search_gin"]


@pytest.mark.django_db
def test_a_deferred_index_is_built_with_its_own_definition():
    """Built from what pg_indexes said, not from the models: indexes made by hand or by SQL
    migrations come back too."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX h5_title_length ON catalogue_paper (length(title))")
    run = create_run("own.jsonl")
    assert "h5_title_length" in deferral.defer(run)
    assert "h5_title_length" not in paper_indexes()
    assert "h5_title_length" in deferral.restore_for(run)
    assert "length(title)" in paper_indexes()["h5_title_length"]


@pytest.mark.django_db
def test_staff_see_the_indexes_waiting_and_cannot_delete_their_records(admin_client):
    run = create_run("shown.jsonl")
    deferral.defer(run)
    index = DeferredIndex.objects.get(name="paper_search_gin")
    listing = admin_client.get(reverse("admin:ingest_deferredindex_changelist"))
    page = admin_client.get(reverse("admin:ingest_deferredindex_change", args=[index.pk]))
    delete = admin_client.post(
        reverse("admin:ingest_deferredindex_delete", args=[index.pk]), {"post": "yes"}
    )

    assert listing.status_code == 200 and "paper_search_gin" in listing.text
    assert "USING gin (search_vector)" in page.text
    assert delete.status_code == 403
    assert DeferredIndex.objects.filter(pk=index.pk).exists()
    deferral.restore_for(run)


@pytest.mark.django_db(transaction=True)
def test_deferred_indexes_are_built_one_at_a_time_each_by_a_parallel_build(
    settings, indexes_as_migrated
):
    """On the run's own connection, one after another, each with the configured parallel
    workers (three builders at once, two workers each, took 13-16 % longer at 1M), which
    apply to that build alone."""
    settings.INGEST_INDEX_BUILD_WORKERS = 3
    session_workers = _session_setting("max_parallel_maintenance_workers")
    run = create_run("parallel.jsonl")
    dropped = deferral.defer(run)
    workers_seen = {}

    def record_workers(execute, sql, params, many, context):
        if sql.startswith("CREATE INDEX"):
            with context["connection"].cursor() as cursor:
                cursor.execute("SELECT current_setting('max_parallel_maintenance_workers')")
                workers_seen[sql.split()[5]] = cursor.fetchone()[0]
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record_workers):
        built = deferral.restore_for(run)

    assert sorted(built) == sorted(dropped) == sorted(workers_seen)
    assert set(workers_seen.values()) == {"3"}
    assert paper_indexes() == indexes_as_migrated
    # the build's setting was its transaction's alone
    assert _session_setting("max_parallel_maintenance_workers") == session_workers != "3"


def _session_setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return cursor.fetchone()[0]
