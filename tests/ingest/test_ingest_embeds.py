"""An ingest on the real worker is followed by the embedding of every paper it created, and by
the pairing of their words (catalogue.phrases)."""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest
from django.core.management import call_command

from catalogue.backfill import Backfill
from catalogue.embedder import MODEL_ID
from catalogue.embedding import pending_papers
from catalogue.models import Paper, PaperEmbedding, PhrasePairs, PhrasePending
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.django_db(transaction=True)

DAILY = DATA_DIR / "formats" / "hf_daily_papers" / "daily" / "2025-03-13.json"


def test_papers_of_an_ingest_on_the_worker_all_get_embedded_and_paired(celery_worker, tmp_path):
    # Four real items with short abstracts: the model's time is not what is tested here.
    items = json.loads(DAILY.read_text())[:4]
    for item in items:
        item["paper"]["summary"] = item["paper"]["summary"][:200]
    listing = tmp_path / "2025-03-13.json"
    listing.write_text(json.dumps(items))

    out = StringIO()
    call_command("ingest", str(listing), "--no-progress", stdout=out, timeout=60)
    assert "created 4" in out.getvalue()

    deadline = time.monotonic() + 60
    while pending_papers().exists() or Backfill.running(celery_worker.queue):
        assert time.monotonic() < deadline, celery_worker.log()
        time.sleep(0.1)
    assert PaperEmbedding.objects.filter(model=MODEL_ID).count() == Paper.objects.count() == 4
    assert "catalogue.tasks.embed_papers" in celery_worker.log()

    while PhrasePending.objects.exists():  # queued before the embedding: done by now, or soon
        assert time.monotonic() < deadline, celery_worker.log()
        time.sleep(0.1)
    assert PhrasePairs.objects.count() == 4
    assert "catalogue.tasks.pair_phrases" in celery_worker.log()
    # Queued beside the pairing: four papers are too few to count any word common.
    while "catalogue.tasks.build_word_months" not in celery_worker.log():
        assert time.monotonic() < deadline, celery_worker.log()
        time.sleep(0.1)
