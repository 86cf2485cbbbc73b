"""Ingest runs that cannot wedge: records the database refuses, failures of any kind, retries,
capped rejections, leases and the reaper (issue 13)."""

import datetime as dt
import json
import time
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from catalogue.models import Paper
from ingest import runner
from ingest.lease import run_lease
from ingest.models import IngestRun, RejectedRecord, checkpoint_after, storable
from ingest.records import Deleted, PaperRecord, Rejected
from ingest.runner import RetryLater, create_run, execute_run
from tests.bench.synthetic import snapshot_lines, synthetic_id


def paper(number: int, **fields) -> PaperRecord:
    arxiv_id = synthetic_id(number)
    values = {"title": f"Paper {number}", "abstract": "Words.", **fields}
    return PaperRecord(source="arxiv_snapshot", source_key=arxiv_id, arxiv_id=arxiv_id, **values)


def ingest(*args) -> str:
    out = StringIO()
    call_command(
        "ingest", *args, "--no-progress", "--format", "arxiv_snapshot", stdout=out, timeout=60
    )
    return out.getvalue()


@contextmanager
def sql_fixture(create: str, drop: str):
    """DDL a transactional test commits, undone afterwards (a flush does not drop it)."""
    with connection.cursor() as cursor:
        cursor.execute(create)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(drop)


# --- records the database refuses ----------------------------------------------------------


@pytest.mark.django_db
def test_records_the_database_refuses_become_rejections_and_the_rest_of_their_batch_lands(
    settings,
):
    settings.INGEST_BATCH_SIZE = 4
    results = [
        paper(0),
        paper(1, title="A NUL \x00 in the title"),  # PostgreSQL text cannot hold NUL
        paper(2),
        paper(3, abstract="A lone surrogate \ud800"),  # UTF-8 cannot encode it
        paper(4),
        Deleted(source="arxiv_oai", source_key="x", arxiv_id="bad\x00id"),
        paper(5),
    ]
    run = execute_run(create_run("records"), results=results)

    assert run.status == IngestRun.Status.PARTIAL
    assert (run.seen, run.created, run.rejected, run.rejections_stored) == (4, 4, 3, 3)
    assert set(Paper.objects.values_list("title", flat=True)) == {
        "Paper 0",
        "Paper 2",
        "Paper 4",
        "Paper 5",
    }
    rejections = {r.position: r for r in run.rejections.all()}
    assert set(rejections) == {"record 2", "record 4", "record 6"}
    assert "DataError" in rejections["record 2"].reason
    assert '"title": "A NUL \\u0000 in the title"' in rejections["record 2"].raw  # as JSON
    assert "UnicodeEncodeError" in rejections["record 4"].reason
    assert "surrogate \\ud800" in rejections["record 4"].raw
    assert "bad\\u0000id" in rejections["record 6"].raw


@pytest.mark.django_db
def test_a_constraint_the_record_breaks_rejects_that_record_only():
    """Any error of one record (here an integrity error), not only a NUL."""
    with connection.cursor() as cursor:  # rolled back with the test
        cursor.execute(
            "ALTER TABLE catalogue_paper ADD CONSTRAINT no_poison "
            "CHECK (title NOT LIKE '%%poison%%') NOT VALID"
        )
    results = [paper(0), paper(1, title="poison"), paper(2)]
    run = execute_run(create_run("records"), results=results)
    assert (run.status, run.created, run.rejected) == (IngestRun.Status.PARTIAL, 2, 1)
    assert "IntegrityError" in run.rejections.get().reason


def test_storable_text_escapes_what_postgresql_cannot_store_and_keeps_the_rest():
    assert storable("a\x00b\ud800c ☃ ok") == "a\\x00b\\ud800c ☃ ok"
    assert storable("x" * 150, 100) == "x" * 100


@pytest.mark.django_db
def test_a_rejection_with_nul_and_surrogates_is_stored_escaped():
    run = create_run("records")
    rejected = Rejected("bad \x00 reason", "raw \x00 \udcff", "line \x00 1")
    execute_run(run, results=[rejected, paper(0)])
    stored = RejectedRecord.objects.get(run=run)
    assert (stored.reason, stored.raw, stored.position) == (
        "bad \\x00 reason",
        "raw \\x00 \\udcff",
        "line \\x00 1",
    )


@pytest.mark.django_db(transaction=True)
def test_nul_in_a_listing_loses_nothing_and_the_command_returns(celery_worker, tmp_path):
    """The reported case, through the worker: a title with \\u0000 and a raw NUL in a line
    that is no JSON. Before, the upsert raised DataError: nothing landed, the run stayed
    "running" and the command waited for its timeout."""
    lines = list(snapshot_lines(6))
    record = json.loads(lines[2])
    record["title"] = "Hostile \u0000 title"
    lines[2] = json.dumps(record)  # JSON's own escape: the parser reads a NUL
    lines.insert(4, '{"id": "3999.00001", "title": "cut \x00 here')  # raw NUL, not JSON
    path = tmp_path / "snapshot.jsonl"
    path.write_text("\n".join(lines) + "\n")

    started = time.monotonic()
    output = ingest(str(path))
    assert time.monotonic() - started < 30

    run = IngestRun.objects.get()
    assert run.status == IngestRun.Status.PARTIAL, run.error
    assert (run.created, run.rejected, run.rejections.count()) == (5, 2, 2)
    assert Paper.objects.count() == 5
    assert "partial" in output and "rejected line 5" in output
    assert any("\\x00" in r.raw for r in run.rejections.all())


# --- writers --------------------------------------------------------------------------------

# Notes the backend of each statement inserting papers (two a batch: one per key kind).
NOTE_WRITER_BACKENDS = """
    CREATE TABLE h4_writer_backends (pid int);
    CREATE FUNCTION h4_note_backend() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO h4_writer_backends VALUES (pg_backend_pid()); RETURN NULL; END $$;
    CREATE TRIGGER h4_note_backend AFTER INSERT ON catalogue_paper
    FOR EACH STATEMENT EXECUTE FUNCTION h4_note_backend();
"""
DROP_NOTE_WRITER_BACKENDS = (
    "DROP TRIGGER h4_note_backend ON catalogue_paper; DROP FUNCTION h4_note_backend(); "
    "DROP TABLE h4_writer_backends;"
)


@pytest.mark.django_db(transaction=True)
def test_each_writer_keeps_one_connection_for_the_whole_run(settings, tmp_path):
    """Writers used to open a connection per batch: a 1M-paper ingest then paid a backend's
    start, exit and first touch of the shared buffers five hundred times."""
    settings.INGEST_BATCH_SIZE = 10
    settings.INGEST_WRITERS = 3
    path = tmp_path / "snapshot.jsonl"
    path.write_text("\n".join(snapshot_lines(120)) + "\n")
    with sql_fixture(NOTE_WRITER_BACKENDS, DROP_NOTE_WRITER_BACKENDS):
        output = ingest(str(path), "--inline")
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*), count(DISTINCT pid) FROM h4_writer_backends")
            statements, backends = cursor.fetchone()
    assert "succeeded" in output
    assert Paper.objects.count() == 120
    assert statements == 24  # 12 batches written
    assert 1 <= backends <= 3


# --- failures and retries ------------------------------------------------------------------

REFUSE_EVERY_INSERT = """
    CREATE FUNCTION h4_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'refused by a test trigger'; END $$;
    CREATE TRIGGER h4_refuse BEFORE INSERT ON catalogue_paper
    FOR EACH STATEMENT EXECUTE FUNCTION h4_refuse();
"""
DROP_REFUSE = "DROP TRIGGER h4_refuse ON catalogue_paper; DROP FUNCTION h4_refuse();"


@pytest.mark.django_db(transaction=True)
def test_a_task_failing_for_any_reason_fails_its_run_and_the_command_says_why_at_once(
    celery_worker, tmp_path
):
    path = tmp_path / "snapshot.jsonl"
    path.write_text("\n".join(snapshot_lines(5)) + "\n")
    started = time.monotonic()
    refused = pytest.raises(CommandError, match="ProgrammingError: refused by a test trigger")
    with sql_fixture(REFUSE_EVERY_INSERT, DROP_REFUSE), refused:
        ingest(str(path))
    assert time.monotonic() - started < 30  # not the command's timeout
    run = IngestRun.objects.get()
    assert run.status == IngestRun.Status.FAILED
    assert run.attempts == 1  # an error no retry can help is not retried
    assert run.finished_at is not None


# Ends the database session of the first statement inserting papers, once: a lost connection.
DROP_CONNECTION_ONCE = """
    CREATE SEQUENCE h4_inserts;
    CREATE FUNCTION h4_drop_once() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF nextval('h4_inserts') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER h4_drop_once BEFORE INSERT ON catalogue_paper
    FOR EACH STATEMENT EXECUTE FUNCTION h4_drop_once();
"""
DROP_DROP_ONCE = (
    "DROP TRIGGER h4_drop_once ON catalogue_paper; DROP FUNCTION h4_drop_once(); "
    "DROP SEQUENCE h4_inserts;"
)


@pytest.mark.django_db(transaction=True)
def test_a_lost_database_connection_is_retried_and_the_run_ends_exact(celery_worker, tmp_path):
    path = tmp_path / "snapshot.jsonl"
    # 30 papers, not 300: the session's worker embeds what the run adds (~60 ms a paper)
    # before the test may end, 18 s for 300.
    path.write_text("\n".join(snapshot_lines(30)) + "\n")
    with sql_fixture(DROP_CONNECTION_ONCE, DROP_DROP_ONCE):
        output = ingest(str(path))
    run = IngestRun.objects.get()
    assert "succeeded" in output
    assert run.attempts == 2
    assert (run.seen, run.created, run.unchanged, run.rejected) == (30, 30, 0, 0)
    assert Paper.objects.count() == 30


# Fails the third statement inserting papers, once, as a serialization failure (transient).
FAIL_THIRD_INSERT_ONCE = """
    CREATE SEQUENCE h4_inserts;
    CREATE FUNCTION h4_fail_third() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF nextval('h4_inserts') = 3 THEN
            RAISE EXCEPTION 'transient, by a test trigger' USING ERRCODE = '40001';
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER h4_fail_third BEFORE INSERT ON catalogue_paper
    FOR EACH STATEMENT EXECUTE FUNCTION h4_fail_third();
"""


@pytest.mark.django_db
def test_a_run_retried_after_a_transient_error_resumes_after_its_written_batches(settings):
    settings.INGEST_BATCH_SIZE = 10
    records = [paper(n) for n in range(45)] + [Rejected("junk", "junk", "line 46")]
    # Batches insert arxiv-keyed papers (one statement) then source-keyed ones (another).
    with connection.cursor() as cursor:  # rolled back with the test
        cursor.execute(FAIL_THIRD_INSERT_ONCE)
    run = create_run("records")
    with pytest.raises(RetryLater, match="transient, by a test trigger"):
        execute_run(run, final_attempt=False, results=records)
    run.refresh_from_db()
    assert (run.status, run.checkpoint, run.created) == (IngestRun.Status.QUEUED, 1, 10)

    run = execute_run(run, results=records)
    assert (run.status, run.attempts) == (IngestRun.Status.PARTIAL, 2)
    assert (run.seen, run.created, run.unchanged, run.rejected) == (45, 45, 0, 1)
    assert (run.checkpoint, run.batches_ahead) == (5, [])
    assert run.rejections.count() == 1


# --- capped rejections ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_rejections_are_all_counted_but_only_the_first_are_stored(celery_worker, tmp_path):
    """The reported case: one valid line, then junk. Before: a row per junk line."""
    junk_lines = 20_000
    path = tmp_path / "junk.jsonl"
    with open(path, "w") as out:
        out.write(next(snapshot_lines(1)) + "\n")
        for number in range(junk_lines):
            out.write(f'{{"junk": {number}, not json\n')

    output = ingest(str(path))

    cap = 1000  # INGEST_MAX_STORED_REJECTIONS's default, the worker's setting
    run = IngestRun.objects.get()
    assert (run.status, run.created, run.rejected) == (IngestRun.Status.PARTIAL, 1, junk_lines)
    assert RejectedRecord.objects.count() == run.rejections_stored == cap
    assert Paper.objects.count() == 1
    assert f"rejected {junk_lines} ({junk_lines - cap} not stored)" in output
    assert f"{junk_lines - cap} more counted but not stored" in output


@pytest.mark.django_db
def test_the_cap_keeps_the_first_rejections(settings):
    settings.INGEST_MAX_STORED_REJECTIONS = 3
    settings.INGEST_BATCH_SIZE = 2
    junk = [Rejected(f"junk {n}", "x", f"line {n}") for n in range(7)]
    run = execute_run(create_run("records"), results=[*junk, paper(0)])
    assert (run.rejected, run.rejections_stored, run.rejections_not_stored) == (7, 3, 4)
    assert [r.reason for r in run.rejections.order_by("pk")] == ["junk 0", "junk 1", "junk 2"]


@pytest.mark.django_db
def test_the_admin_says_how_many_rejections_were_not_stored(admin_client, settings):
    settings.INGEST_MAX_STORED_REJECTIONS = 2
    junk = [Rejected(f"junk {n}", "x", f"line {n}") for n in range(5)]
    run = execute_run(create_run("records"), results=junk)
    page = admin_client.get(f"/admin/ingest/ingestrun/{run.pk}/change/").content.decode()
    assert "All 2 stored rejected records" in page
    assert "3 more were counted but not stored" in page
    assert run.counts_line() == (
        "seen 0, created 0, updated 0, unchanged 0, rejected 5 (3 not stored)"
    )


# --- leases, checkpoints and the reaper ----------------------------------------------------


@pytest.mark.django_db
def test_a_run_whose_lease_is_taken_is_not_executed_twice(tmp_path):
    path = tmp_path / "snapshot.jsonl"
    path.write_text("\n".join(snapshot_lines(3)) + "\n")
    run = create_run(str(path))
    with run_lease(run.pk) as taken:  # another worker executes it
        assert taken
        result = execute_run(run)
    assert (result.status, result.attempts, result.seen) == (IngestRun.Status.QUEUED, 0, 0)
    assert not Paper.objects.exists()


@pytest.mark.django_db
def test_the_reaper_requeues_running_runs_nobody_holds_and_only_those():
    orphan, alive, done = (create_run(name) for name in ("orphan", "alive", "done"))
    IngestRun.objects.filter(pk__in=[orphan.pk, alive.pk]).update(
        status=IngestRun.Status.RUNNING, attempts=1
    )
    IngestRun.objects.filter(pk=done.pk).update(status=IngestRun.Status.SUCCEEDED)
    sent = []
    with run_lease(alive.pk):
        assert runner.requeue_orphaned_runs(sent.append) == [orphan.pk]
    assert sent == [orphan.pk]
    orphan.refresh_from_db()
    assert (orphan.status, orphan.error) == (
        IngestRun.Status.QUEUED,
        "resuming: its worker stopped mid-run",
    )
    assert IngestRun.objects.get(pk=alive.pk).status == IngestRun.Status.RUNNING


@pytest.mark.django_db
def test_a_run_that_keeps_losing_its_worker_is_given_up():
    run = create_run("records")
    IngestRun.objects.filter(pk=run.pk).update(attempts=runner.MAX_ATTEMPTS)
    run = execute_run(run, results=[paper(0)])
    assert run.status == IngestRun.Status.FAILED
    assert f"given up after {runner.MAX_ATTEMPTS} attempts" in run.error
    assert not Paper.objects.exists()


def test_checkpoint_grows_over_batches_written_out_of_order():
    assert checkpoint_after(0, [], 1) == (0, [1])
    assert checkpoint_after(0, [1], 2) == (0, [1, 2])
    assert checkpoint_after(0, [1, 2], 0) == (3, [])
    assert checkpoint_after(3, [], 3) == (4, [])


def test_beat_runs_the_reaper_every_30_seconds_at_most():
    from catalogue.celery import app

    entry = app.conf.beat_schedule["requeue-orphaned-ingest-runs"]
    assert entry["task"] == "ingest.tasks.requeue_orphaned_runs"
    assert entry["schedule"] <= 30
    assert entry["task"] in app.tasks


@pytest.mark.django_db
def test_the_reaper_sends_again_a_run_queued_long_ago_and_never_started(settings):
    """Its message may be with a worker lost after taking it (a chunk of a split run most
    often): without a second message it would wait for the broker's visibility timeout."""
    settings.INGEST_RESEND_QUEUED_AFTER = 600
    long_ago = timezone.now() - dt.timedelta(minutes=11)
    lost, waiting, retrying = (create_run(name) for name in ("lost", "waiting", "retrying"))
    IngestRun.objects.filter(pk__in=[lost.pk, retrying.pk]).update(queued_at=long_ago)
    IngestRun.objects.filter(pk=retrying.pk).update(attempts=1)  # waits for its countdown
    sent = []
    assert runner.requeue_orphaned_runs(sent.append) == sent == [lost.pk]
    lost.refresh_from_db()
    assert lost.queued_at > long_ago  # once per interval, not at every pass of the reaper
    assert runner.requeue_orphaned_runs(sent.append) == []


@pytest.mark.django_db
def test_a_starting_worker_sends_again_every_run_queued_before_it_and_never_started(settings):
    """A worker killed while it held runs' messages (taken, not started) takes them with it
    for hours: its successor's reaper sends them again at once, not 10 minutes later (`make
    run`'s demo waited 5 minutes for one and gave up)."""
    settings.INGEST_RESEND_QUEUED_AFTER = 600
    held, retrying = create_run("held"), create_run("retrying")
    IngestRun.objects.filter(pk=retrying.pk).update(attempts=1)  # waits for its countdown
    started = timezone.now()
    later = create_run("queued after the worker started")
    sent = []
    assert runner.requeue_orphaned_runs(sent.append) == []  # the periodic reaper: too recent
    assert runner.requeue_orphaned_runs(sent.append, resend_queued_before=started) == [held.pk]
    assert sent == [held.pk] and later.pk not in sent


def test_the_worker_start_hook_asks_for_the_resend_of_runs_queued_before_it(monkeypatch):
    from ingest import tasks

    sent = []
    monkeypatch.setattr(tasks.requeue_orphaned_runs, "delay", lambda *a: sent.append(a))
    before = timezone.now()
    tasks._requeue_orphaned_runs_at_start()
    [(when,)] = sent
    assert before <= dt.datetime.fromisoformat(when) <= timezone.now()
