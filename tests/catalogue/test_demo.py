"""The demo of ``make run``: which bundled samples it ingests, its topics, its ledger."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.conf import settings

from catalogue import demo
from catalogue.models import Paper, Topic
from ingest import sources

BASE = Path(settings.BASE_DIR)


def test_demo_ingests_the_seed_first_as_listed_on_its_capture_day():
    assert demo.listings(BASE)[0] == (BASE / demo.SEED, dt.date(2025, 12, 24))


def test_demo_ingests_every_bundled_sample_of_every_format():
    listed = {path for path, _ in demo.listings(BASE)}
    bundled = {p for p in (BASE / demo.FORMATS).rglob("*") if p.is_file()}
    assert bundled - listed == set()
    assert len(listed) == len(demo.listings(BASE))  # each once
    head = {sources.detect_format(p.read_bytes()[:65536]) for p in listed if p.stat().st_size}
    assert head == set(sources.FORMATS)


def test_daily_files_are_listed_on_the_day_they_name():
    days = {path.name: day for path, day in demo.listings(BASE)}
    dailies = [name for name in days if name.startswith("20") and name.endswith(".json")]
    assert len(dailies) >= 7
    assert all(days[name] == dt.date.fromisoformat(name[:10]) for name in dailies)
    assert days["arxiv-metadata-oai-snapshot_head200.jsonl"] is None


def test_listings_skip_what_is_not_a_sample(tmp_path):
    (tmp_path / demo.SEED).parent.mkdir(parents=True)
    (tmp_path / demo.SEED).write_text("seed")
    daily = tmp_path / demo.FORMATS / "hf_daily_papers" / "daily"
    daily.mkdir(parents=True)
    (daily / "2025-01-02.json").write_text("[]")
    (daily / "README.md").write_text("notes")
    (daily / "not-a-date.json").write_text("[]")
    assert demo.listings(tmp_path) == [
        (tmp_path / demo.SEED, demo.SEED_LISTED_ON),
        (daily / "2025-01-02.json", dt.date(2025, 1, 2)),
        (daily / "not-a-date.json", None),
    ]


@pytest.mark.django_db
def test_topics_are_created_once_and_staff_changes_are_kept():
    created = demo.ensure_topics()
    assert [(t.name, t.slug, t.query) for t in created] == [
        ("Decoupling", "decoupling", "decoupling"),
        ("Linear attention", "linear-attention", '"linear attention"'),
    ]
    Topic.objects.filter(slug="decoupling").update(query="decoupling OR decoupled")
    assert demo.ensure_topics() == []
    assert Topic.objects.count() == 2
    assert Topic.objects.get(slug="decoupling").query == "decoupling OR decoupled"


@pytest.mark.django_db
def test_a_topic_staff_created_under_another_slug_is_not_duplicated():
    Topic.objects.create(name="Linear attention", slug="linear-attn", query="linear attention")
    assert [t.slug for t in demo.ensure_topics()] == ["decoupling"]


@pytest.mark.django_db
def test_demo_topics_tag_the_papers_their_queries_match():
    from catalogue import tagging

    match = Paper.objects.create(arxiv_id="2501.00001", title="Linear attention, decoupled")
    Paper.objects.create(arxiv_id="2501.00002", title="Linear models of attention")
    for topic in demo.ensure_topics():
        tagging.retag(topic)
    tagged = {t.slug: list(Paper.objects.in_topic(t)) for t in Topic.objects.all()}
    assert tagged == {"decoupling": [match], "linear-attention": [match]}


def test_ledger_skips_samples_loaded_into_the_same_database_until_they_change(tmp_path):
    ledger = tmp_path / "data" / "demo-loaded.json"
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("[]")
    b.write_text("[]")
    listings = [(a, None), (b, dt.date(2025, 1, 2))]
    assert demo.not_yet_loaded(listings, ledger, "db1") == listings  # no ledger yet
    demo.remember_loaded([a], ledger, "db1")
    assert demo.not_yet_loaded(listings, ledger, "db1") == [(b, dt.date(2025, 1, 2))]
    assert demo.not_yet_loaded(listings, ledger, "db2") == listings  # another database
    a.write_text("[{}]")  # a sample changed since
    assert demo.not_yet_loaded(listings, ledger, "db1") == listings


def test_an_unreadable_ledger_means_nothing_loaded(tmp_path):
    ledger = tmp_path / "demo-loaded.json"
    ledger.write_text("{not json")
    sample = tmp_path / "a.json"
    sample.write_text("[]")
    assert demo.not_yet_loaded([(sample, None)], ledger, "db") == [(sample, None)]
