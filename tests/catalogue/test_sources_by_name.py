"""Sources by name, not by format code, wherever readers and staff see them."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from catalogue.models import Paper, Sighting
from ingest.models import IngestRun, Source

pytestmark = pytest.mark.django_db


@pytest.fixture
def paper():
    made = Paper.objects.create(arxiv_id="2501.00001", title="Seen twice")
    now = timezone.now()
    for source in ("arxiv_oai", "hf_daily"):
        Sighting.objects.create(
            paper=made,
            source=source,
            first_seen_at=now,
            last_seen_at=now,
            listed_on=dt.date.today(),
        )
    return made


def test_paper_page_names_where_the_paper_was_seen(client, paper):
    html = client.get(paper.get_absolute_url()).content.decode()
    assert "arXiv OAI-PMH" in html and "Hugging Face Daily Papers" in html
    assert "arxiv_oai" not in html and "hf_daily" not in html


def test_paper_admin_names_sources_in_its_column_filter_and_sightings(admin_client, paper):
    changelist = admin_client.get(reverse("admin:catalogue_paper_changelist")).content.decode()
    assert "arXiv OAI-PMH, Hugging Face Daily Papers" in changelist  # the sources column
    assert "?source=hf_daily" in changelist  # the filter keeps the code in its URL
    change = admin_client.get(reverse("admin:catalogue_paper_change", args=[paper.pk]))
    assert "Hugging Face Daily Papers" in change.content.decode()
    filtered = admin_client.get(reverse("admin:catalogue_paper_changelist"), {"source": "hf_daily"})
    assert list(filtered.context["cl"].result_list) == [paper]


def test_ingest_admin_names_formats_of_sources_and_runs(admin_client):
    Source.objects.create(name="daily", kind="hf_daily", params={"date": "yesterday"})
    run = IngestRun.objects.create(format="arxiv_atom", location="https://example.org/api")
    sources = admin_client.get(reverse("admin:ingest_source_changelist")).content.decode()
    assert "Hugging Face Daily Papers" in sources
    runs = admin_client.get(reverse("admin:ingest_ingestrun_changelist"))
    assert "arXiv API" in runs.content.decode()
    only_atom = admin_client.get(
        reverse("admin:ingest_ingestrun_changelist"), {"format": "arxiv_atom"}
    )
    assert list(only_atom.context["cl"].result_list) == [run]
    form = admin_client.get(reverse("admin:ingest_source_add")).content.decode()
    assert "arXiv OAI-PMH (arxiv_oai)" in form
