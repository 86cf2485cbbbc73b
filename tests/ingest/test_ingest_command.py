"""``manage.py ingest`` end to end: a real Celery worker process, PostgreSQL and Redis."""

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from catalogue.models import Paper
from ingest.models import IngestRun
from tests.conftest import SEED

pytestmark = pytest.mark.django_db(transaction=True)


def ingest(*args, **options) -> str:
    from io import StringIO

    out = StringIO()
    call_command("ingest", *args, stdout=out, timeout=60, **options)
    return out.getvalue()


def test_seed_ingests_through_the_worker_and_a_second_run_creates_nothing(celery_worker, client):
    output = ingest(str(SEED), "--listed-on", "2025-12-24")
    assert "succeeded (hf_page): seen 49, created 49" in output
    assert Paper.objects.count() == 49

    output = ingest(str(SEED), "--listed-on", "2025-12-24")
    assert "seen 49, created 0, updated 0, unchanged 49" in output
    assert Paper.objects.count() == 49
    assert "ingest.tasks.ingest_run" in celery_worker.log()  # it really ran on the worker

    # The pages show what the worker wrote.
    response = client.get(reverse("paper-list"), {"q": "decoupling", "min_upvotes": 3})
    assert response.status_code == 200
    found = {p.title for p in response.context["page"].paginator.object_list}
    assert "Architecture Decoupling Is Not All You Need For Unified Multimodal Model" in found
    assert all(p.upvotes >= 3 for p in response.context["page"].paginator.object_list)


def test_a_file_of_another_format_fails_the_run_and_the_command(celery_worker, tmp_path):
    junk = tmp_path / "junk.txt"
    junk.write_text("just some words\nwith no cards in them\n")
    with pytest.raises(CommandError, match="failed"):
        ingest(str(junk), "--format", "hf_page")
    run = IngestRun.objects.get()
    assert run.status == IngestRun.Status.FAILED
    assert "no paper cards" in run.error


def test_missing_file_is_refused_before_queueing():
    with pytest.raises(CommandError, match="no such file"):
        ingest("/nonexistent/listing.txt")
    assert not IngestRun.objects.exists()


def test_bad_listed_on_is_a_clear_error():
    with pytest.raises(CommandError, match="--listed-on must be a date"):
        ingest(str(SEED), "--listed-on", "Dec 24")


def test_rejections_are_stored_with_reason_and_the_run_is_partial(celery_worker, tmp_path):
    listing = tmp_path / "listing.txt"
    listing.write_text(
        "Good\n\nAbstract one.\n\n  • 2 authors\n·\nNov 3, 2025 7\n\n"
        "Bad\n\nAbstract two.\n\n  • 3 authors\n·\nSomeday\n"
    )
    output = ingest(str(listing))
    assert "partial" in output
    assert "rejected line 9: unreadable date 'Someday'" in output
    run = IngestRun.objects.get()
    assert (run.created, run.rejected) == (1, 1)
    assert run.rejections.get().raw.startswith("Bad")
