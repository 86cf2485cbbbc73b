"""Each publication year's HNSW index (migration 0022): the embeddings' year kept by the
database, how a date range's nearest papers are found (``hybrid.plan_scan``), and a search
through the years' indexes finding what measuring each paper finds."""

from __future__ import annotations

import datetime as dt
import importlib

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalogue import hybrid, summary
from catalogue.hybrid import Scan, YearScan
from catalogue.models import YEAR_INDEXED, Paper, PaperEmbedding
from tests.catalogue.test_hybrid_search import QUERY, api, at_cosine, titles

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("catalogue.migrations.0022_embedding_year_indexes")


def paper(key: str, published_on: dt.date | None, vector=None) -> Paper:
    made = Paper.objects.create(arxiv_id=key, title=f"Paper {key}", published_on=published_on)
    if vector is not None:
        PaperEmbedding.objects.create(paper=made, vector=vector, model="test", text_hash="x")
    return made


def year_of(made: Paper) -> int | None:
    return PaperEmbedding.objects.values_list("published_year", flat=True).get(paper=made)


UNIT = [1.0] + [0.0] * 383


# --- the year, kept by the database ------------------------------------------------------


def test_an_embedding_takes_its_papers_year_whatever_the_write_gives():
    dated, undated = paper("2301.00001", dt.date(2023, 5, 2)), paper("2301.00002", None)
    PaperEmbedding.objects.create(paper=dated, vector=UNIT, model="m", published_year=1999)
    PaperEmbedding.objects.bulk_create([PaperEmbedding(paper=undated, vector=UNIT, model="m")])
    assert (year_of(dated), year_of(undated)) == (2023, None)
    PaperEmbedding.objects.filter(paper=dated).update(published_year=2001, model="n")
    assert year_of(dated) == 2023  # an update of the row cannot set another year either


def test_a_paper_whose_date_moves_to_another_year_moves_its_embedding():
    moved = paper("2301.00003", dt.date(2023, 12, 31), UNIT)
    Paper.objects.filter(pk=moved.pk).update(published_on=dt.date(2024, 1, 1))
    assert year_of(moved) == 2024
    Paper.objects.filter(pk=moved.pk).update(published_on=dt.date(2024, 6, 1))
    assert year_of(moved) == 2024  # (the same year: the trigger's condition skips it)
    Paper.objects.filter(pk=moved.pk).update(published_on=None)
    assert year_of(moved) is None


def test_the_migration_gives_the_embeddings_already_there_their_years():
    """Its backfill, on rows written before the trigger: each row's year from its paper, and
    the whole catalogue's index built again over them."""
    old = paper("1501.00001", dt.date(2015, 3, 1), UNIT)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # (no foreign key check left pending)
        cursor.execute("ALTER TABLE catalogue_paperembedding DISABLE TRIGGER embedding_year")
        try:
            cursor.execute("UPDATE catalogue_paperembedding SET published_year = NULL")
        finally:
            cursor.execute("ALTER TABLE catalogue_paperembedding ENABLE TRIGGER embedding_year")
        assert year_of(old) is None
        cursor.execute(MIGRATION.BACKFILL)
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'embedding_hnsw'")
        (definition,) = cursor.fetchone()
    assert year_of(old) == 2015
    assert "USING hnsw (vector halfvec_cosine_ops)" in definition


def test_every_indexed_year_has_its_index():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'catalogue_paperembedding'"
        )
        names = {name for (name,) in cursor.fetchall()}
    assert {f"embedding_hnsw_{year}" for year in YEAR_INDEXED} <= names
    assert list(MIGRATION.YEARS) == list(YEAR_INDEXED)


# --- the plan: the whole index, each paper, or each year ---------------------------------

MILLION = 1_000_000
# Papers of the bench's million-paper catalogue per year, 2007-2010.
OLD_YEARS = {2007: 12_800, 2008: 18_600, 2009: 20_600, 2010: 22_700}


def measured(first: int, last: int | None = None) -> YearScan:
    return YearScan(first, exact=True, last=last or first)


@pytest.mark.parametrize(
    ("span", "parts", "expected"),
    [
        # A few months of one year: measured each (5,000 papers: ~10 ms).
        ((2025, 2025), {2025: (5_000, 100_000)}, Scan(exact=True)),
        # "analysis" in 2007-06..2010-02: the whole index hands back ~2,000 entries and
        # measuring each 50,000 papers; the full years' own indexes ~100 entries each,
        # and the two months of 2010 are measured.
        (
            (2007, 2010),
            {2007: (7_400, 12_800), 2008: (18_600, 18_600), 2009: (20_600, 20_600),
             2010: (3_800, 22_700)},
            Scan(years=(YearScan(2007), YearScan(2008), YearScan(2009), measured(2010))),
        ),
        # Ten recent years, 60 % of the catalogue: the whole index hands back ~170 entries.
        ((2017, 2026), {year: (60_000, 60_000) for year in range(2017, 2027)}, Scan()),
        # Since 1985 and until 2008-06, open-ended: the years before any index and the year
        # the estimate missed are measured, each run of them in one part.
        (
            (dt.MINYEAR, 2008),
            {1989: (40, 40), 2007: (12_800, 12_800), 2008: (9_300, 18_600)},
            Scan(years=(measured(dt.MINYEAR, 2006), YearScan(2007), YearScan(2008))),
        ),
        # Since 2025, open-ended: the years ahead measured (the estimate knows none of them).
        (
            (2025, dt.MAXYEAR),
            {2025: (20_000, 100_000), 2026: (400, 400)},
            Scan(years=(YearScan(2025), measured(2026, dt.MAXYEAR))),
        ),
        # Nothing in the range: nothing to measure.
        ((2030, 2030), {}, Scan(exact=True)),
    ],
    ids=["few-months", "old-years", "recent-decade", "open-start", "open-end", "empty"],
)  # fmt: skip
def test_a_date_ranges_nearest_papers_are_found_the_cheapest_way(span, parts, expected):
    assert hybrid.plan_scan(span, parts, MILLION, 100) == expected


# --- a search through the years' indexes -------------------------------------------------


@pytest.fixture
def years_apart(query_vector):
    """Near decoys (cosine 0.9) in 2019-2020, outside the range searched; in 2022-2024, six
    targets (cosine 0.60 down to 0.55) among papers far from the query (cosine 0.1)."""
    rng = np.random.default_rng(7)
    made = Paper.objects.bulk_create(
        [
            Paper(arxiv_id=f"19{i:02d}.{i:05d}", title=f"Decoy {i}",
                  published_on=dt.date(2019 + i % 2, 1 + i % 12, 1))
            for i in range(400)
        ]
        + [
            Paper(arxiv_id=f"22{i:02d}.{i:05d}", title=f"Target {i}",
                  published_on=dt.date(2022 + i % 3, 2 + i, 1))
            for i in range(6)
        ]
        + [
            Paper(arxiv_id=f"23{i:02d}.{i:05d}", title=f"Far {i}",
                  published_on=dt.date(2022 + i % 3, 1 + i % 12, 15))
            for i in range(60)
        ]
    )  # fmt: skip
    cosine = {"Decoy": 0.9, "Target": 0.6, "Far": 0.1}
    PaperEmbedding.objects.bulk_create(
        [
            PaperEmbedding(
                paper=p,
                vector=at_cosine(query_vector, _cosine(p.title, cosine), rng),
                model="test",
                text_hash="x",
            )
            for p in made
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_paper; ANALYZE catalogue_paperembedding")


def _cosine(title: str, cosine: dict[str, float]) -> float:
    kind, number = title.split()
    return cosine[kind] - (int(number) / 100 if kind == "Target" else 0.0)


@pytest.fixture
def query_vector():
    return np.array(hybrid.query_vector(QUERY), dtype=np.float32)


def test_a_large_catalogues_years_are_searched_each_through_its_own_index(
    client, settings, monkeypatch, years_apart
):
    """The range's years each through its own index, in one statement, nearest first and
    none of the nearer decoys outside the range. (Measuring each paper is made dear: this
    catalogue's range is small enough to measure, a large one's is not.)"""
    settings.SUMMARY_EXACT_BELOW = 1
    monkeypatch.setattr(summary, "sample_every", 1)  # the years' figures exact
    monkeypatch.setattr(hybrid, "_EXACT_PAPER_US", 1_000.0)
    with CaptureQueriesContext(connection) as queries:
        answer = api(client, q=QUERY, mode="semantic", since="2022-01-01", until="2024-12-31")
    assert titles(answer)[:6] == [f"Target {i}" for i in range(6)]
    assert answer["count"] == 66 and all(not t.startswith("Decoy") for t in titles(answer))
    (nearest,) = [q["sql"] for q in queries.captured_queries if "<=>" in q["sql"]][:1]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + nearest)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    for year in (2022, 2023, 2024):
        assert f"embedding_hnsw_{year} " in plan, plan
    assert "embedding_hnsw " not in plan and "UNION ALL" in nearest


def test_the_years_scans_find_what_measuring_each_paper_finds(query_vector, years_apart):
    papers = Paper.objects.visible().filter(
        published_on__gte=dt.date(2022, 3, 1), published_on__lte=dt.date(2024, 12, 31)
    )
    each = hybrid.neighbours(papers, query_vector.tolist(), 10, Scan(exact=True))
    years = Scan(years=(YearScan(2022), measured(2023), YearScan(2024, exact=True, last=2031)))
    found = hybrid.neighbours(papers, query_vector.tolist(), 10, years)
    assert [pk for pk, _ in found] == [pk for pk, _ in each]
    assert [sim for _, sim in found] == pytest.approx([sim for _, sim in each])
    assert len(each) == 10 and [pk for pk, _ in each][:5] == [
        Paper.objects.get(title=f"Target {i}").pk
        for i in range(1, 6)  # Target 0: February
    ]
