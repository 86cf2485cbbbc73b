"""``manage.py embed``: the backfill, its report, and Ctrl-C then a rerun; ``--on-workers``:
the backfill sent to two real workers and followed to its exact end."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from io import StringIO

import pytest
import redis
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction

from catalogue import tasks
from catalogue.backfill import Backfill
from catalogue.dburl import url_from_settings
from catalogue.embedding import pending_papers
from catalogue.management.commands import embed as embed_command
from catalogue.models import Paper, PaperEmbedding
from tests.conftest import private_queue
from tests.embedding_workers import embedding_workers


def papers(count: int) -> list[Paper]:
    return [
        Paper.objects.create(
            arxiv_id=f"2502.{n:05d}", title=f"Paper {n}", abstract=f"Short abstract {n}."
        )
        for n in range(count)
    ]


def embed(*args: str) -> str:
    out = StringIO()
    call_command("embed", "--no-progress", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_backfill_reports_count_and_rate_and_a_rerun_does_nothing():
    papers(3)
    output = embed("--batch-size", "2")
    assert "3 papers to embed with all-MiniLM-L6-v2; embedding 3." in output
    assert "Embedded 3 papers in " in output and " papers/s)." in output
    assert PaperEmbedding.objects.count() == 3
    assert "Embedded 0 papers" in embed()


@pytest.mark.django_db
def test_limit_embeds_that_many():
    papers(3)
    assert "embedding 2." in embed("--limit", "2")
    assert pending_papers().count() == 1


def test_bad_batch_size_is_refused():
    with pytest.raises(CommandError, match="batch-size"):
        embed("--batch-size", "0")


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_for_value(value, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := value()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


# The command's connections name themselves (libpq reads PGAPPNAME): only its own wait
# counts, not that of a connection another test left waiting (the suite once saw one, and
# the interruption landed before the command's first batch: it then hung on the lock).
EMBED_APP = "embed-interrupted-test"


def waiting_on_a_lock(process: subprocess.Popen) -> bool:
    assert process.poll() is None, process.communicate()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # a fresh look in this transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND application_name = %s",
            [EMBED_APP],
        )
        return cursor.fetchone()[0] > 0


def _ctrl_c_as_at_a_terminal() -> None:
    """In the child: SIGINT's default action, whatever this process's is (a child inherits
    an ignored signal, and Python then installs no KeyboardInterrupt handler; in the full
    suite the command once sat out the interruption on its lock)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(process: subprocess.Popen) -> tuple[str, str]:
    """Ctrl-C, pressed again every 5 s as a reader would if the first went unanswered; the
    output once the command has stopped."""
    for _ in range(6):
        process.send_signal(signal.SIGINT)
        try:
            return process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            continue
    return process.communicate(timeout=1)


@pytest.mark.django_db(transaction=True)
def test_interrupted_backfill_keeps_committed_batches_and_a_rerun_finishes():
    """Ctrl-C loses at most the batch being written. The second batch is held by a row lock
    this test takes, so the interruption lands after exactly one committed batch."""
    made = papers(10)
    env = {
        **os.environ,
        "DATABASE_URL": url_from_settings(settings.DATABASES["default"]),
        "PGAPPNAME": EMBED_APP,
    }
    command = [sys.executable, "manage.py", "embed", "--batch-size", "2", "--no-progress"]
    with transaction.atomic():
        # The papers after the first two are locked: the second batch waits to be saved.
        list(Paper.objects.filter(pk__in=[p.pk for p in made[2:]]).select_for_update())
        process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=_ctrl_c_as_at_a_terminal,
        )  # fmt: skip
        try:
            wait_for(lambda: waiting_on_a_lock(process), 20, "the second batch to wait")
            out, err = _interrupt(process)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode != 0
    assert "Embedded 2 papers" in out and "interrupted: run it again" in err
    assert set(PaperEmbedding.objects.values_list("paper_id", flat=True)) == {
        made[0].pk,
        made[1].pk,
    }

    output = embed("--batch-size", "2")
    assert "8 papers to embed" in output and "Embedded 8 papers" in output
    assert PaperEmbedding.objects.count() == 10
    assert not pending_papers().exists()


# --- on the workers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_workers(django_db_setup, django_db_blocker, tmp_path_factory):
    with embedding_workers(tmp_path_factory.mktemp("embed-workers")) as workers:
        yield workers


def test_on_workers_is_refused_with_limit_and_chains_without_it():
    with pytest.raises(CommandError, match="--limit applies to embedding here"):
        embed("--on-workers", "--limit", "3")
    with pytest.raises(CommandError, match="--chains needs --on-workers"):
        embed("--chains", "3")


@pytest.mark.django_db(transaction=True)
def test_on_workers_spreads_the_chains_and_reports_exact_totals(two_workers):
    papers(30)
    out, err = StringIO(), StringIO()
    call_command("embed", "--on-workers", "--chains", "3", stdout=out, stderr=err)

    output = out.getvalue()
    assert "30 papers to embed with all-MiniLM-L6-v2, in 3 chains on the workers" in output
    assert "Embedded 30 papers in 3 chains over 2 workers in " in output
    for worker in two_workers:
        assert re.search(rf"{re.escape(worker.name)} [1-9]\d*\b", output), output
    assert "30/30" in err.getvalue()  # the progress bar reached the total
    assert PaperEmbedding.objects.count() == 30 and not pending_papers().exists()
    assert "Embedded 0 papers in 0 chains over 0 workers" in embed("--on-workers")


@pytest.mark.django_db(transaction=True)
def test_on_workers_follows_a_backfill_already_running(two_workers):
    papers(12)
    assert tasks.queue_embedding()  # as an ingest ending now would
    output = embed("--on-workers")
    assert "A backfill is already running on the workers" in output
    assert "Embedded 12 papers in 2 chains over " in output
    assert PaperEmbedding.objects.count() == 12


def embed_in_a_thread(*args: str) -> str:
    try:
        return embed(*args)
    finally:
        connections.close_all()  # the thread's own: the test database is dropped at the end


@pytest.mark.django_db(transaction=True)
def test_on_workers_says_so_when_the_backfill_stops_without_its_workers(monkeypatch):
    """No worker reads this queue: the backfill's key expires and the command stops."""
    monkeypatch.setattr(embed_command, "POLL_SECONDS", 0.05)
    papers(3)
    with private_queue() as queue, ThreadPoolExecutor(1) as pool:
        try:
            waiting = pool.submit(embed_in_a_thread, "--on-workers")
            backfill = wait_for_value(lambda: Backfill.running(queue), 10, "the backfill")
            # STALL_SECONDS without a chunk: the key expires.
            redis.Redis.from_url(settings.REDIS_URL).delete(Backfill.current_key(queue))
            with pytest.raises(CommandError, match="the backfill stopped: no chain went on"):
                waiting.result(timeout=10)
        finally:
            client = redis.Redis.from_url(settings.REDIS_URL)
            for key in client.scan_iter(f"*{queue}*"):
                client.delete(key)
    assert backfill.id
    assert pending_papers().count() == 3
