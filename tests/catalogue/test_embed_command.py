"""``manage.py embed``: the backfill, its report, and Ctrl-C then a rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from catalogue.dburl import url_from_settings
from catalogue.embedding import pending_papers
from catalogue.models import Paper, PaperEmbedding


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


def waiting_on_a_lock(process: subprocess.Popen) -> bool:
    assert process.poll() is None, process.communicate()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # a fresh look in this transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_interrupted_backfill_keeps_committed_batches_and_a_rerun_finishes():
    """Ctrl-C loses at most the batch being written. The second batch is held by a row lock
    this test takes, so the interruption lands after exactly one committed batch."""
    made = papers(10)
    env = {**os.environ, "DATABASE_URL": url_from_settings(settings.DATABASES["default"])}
    command = [sys.executable, "manage.py", "embed", "--batch-size", "2", "--no-progress"]
    with transaction.atomic():
        # The papers after the first two are locked: the second batch waits to be saved.
        list(Paper.objects.filter(pk__in=[p.pk for p in made[2:]]).select_for_update())
        process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            wait_for(lambda: waiting_on_a_lock(process), 20, "the second batch to wait")
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
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
