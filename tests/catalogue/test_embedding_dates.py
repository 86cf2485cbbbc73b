"""An embedding's copy of its paper's date (``PaperEmbedding.published_on``, kept by the
triggers of migration 0024), which a date-ranged nearest-neighbour scan tests on the rows the
HNSW index hands back (tests/catalogue/test_hybrid_search.py shows the scan)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from catalogue import embedding, merging
from catalogue.models import Paper, PaperEmbedding

pytestmark = pytest.mark.django_db

JAN, MAR, MAY = dt.date(2024, 1, 10), dt.date(2024, 3, 10), dt.date(2024, 5, 10)
VECTOR = [1.0] + [0.0] * 383


def _embedding_dates() -> dict[int, dt.date | None]:
    return dict(PaperEmbedding.objects.values_list("paper_id", "published_on"))


def _paper(key: str, published_on=None) -> Paper:
    return Paper.objects.create(arxiv_id=key, title=f"Paper {key}", published_on=published_on)


def _embedded(paper: Paper, **fields) -> PaperEmbedding:
    return PaperEmbedding(paper=paper, vector=VECTOR, model="test", text_hash="x", **fields)


def test_an_embedding_takes_its_papers_date_whatever_writes_it():
    by_orm, by_task, undated = _paper("2401.1", JAN), _paper("2403.2", MAR), _paper("2405.3")
    _embedded(by_orm, published_on=MAY).save()  # a date handed over is not the paper's
    embedding._save([_embedded(by_task), _embedded(undated)])  # the backfill's upsert
    assert _embedding_dates() == {by_orm.pk: JAN, by_task.pk: MAR, undated.pk: None}
    # Its vector computed again (the upsert's UPDATE), it keeps the paper's date.
    embedding._save([_embedded(by_orm, published_on=MAY)])
    assert _embedding_dates()[by_orm.pk] == JAN


def test_a_papers_new_date_reaches_its_embedding():
    paper, other = _paper("2401.1", JAN), _paper("2401.2", JAN)
    embedding._save([_embedded(paper), _embedded(other)])
    paper.published_on = MAR
    paper.save()
    assert _embedding_dates() == {paper.pk: MAR, other.pk: JAN}
    Paper.objects.filter(pk=paper.pk).update(published_on=None)
    assert _embedding_dates() == {paper.pk: None, other.pk: JAN}
    # Saved again with another date (an export read back, a stray write), it keeps the paper's.
    PaperEmbedding.objects.filter(paper=paper).update(published_on=MAY)
    assert _embedding_dates() == {paper.pk: None, other.pk: JAN}


def test_a_merged_papers_embedding_takes_the_survivors_date():
    survivor, duplicate = _paper("2405.1", MAY), _paper("2401.9", JAN)
    embedding._save([_embedded(survivor), _embedded(duplicate)])
    merging.merge(survivor, [duplicate])  # the earlier date is kept; the duplicate's row goes
    assert _embedding_dates() == {survivor.pk: JAN}


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_embeddings_their_papers_dates_in_one_rewrite():
    """Migration 0024 on a catalogue embedded before it: every embedding gets its paper's date
    (one rewrite of the table: no row left behind in an old version), and the HNSW index is
    there again, as the model declares it."""
    executor = MigrationExecutor(connection)
    executor.migrate([("catalogue", "0023_topic_links_dated")])
    dated, undated = _paper("2401.1", JAN), _paper("2405.2")
    vector = "[" + ",".join(["1"] + ["0"] * 383) + "]"
    with connection.cursor() as cursor:
        for paper in (dated, undated):
            cursor.execute(
                "INSERT INTO catalogue_paperembedding (paper_id, vector, model, text_hash,"
                " computed_at) VALUES (%s, %s, 'test', 'x', now())",
                [paper.pk, vector],
            )
    executor = MigrationExecutor(connection)  # the graph as it stands now
    executor.migrate(executor.loader.graph.leaf_nodes("catalogue"))
    assert _embedding_dates() == {dated.pk: JAN, undated.pk: None}
    with connection.cursor() as cursor:
        # Rewritten, each row is where it was; updated, its new version would follow the old.
        cursor.execute("SELECT ctid::text FROM catalogue_paperembedding ORDER BY paper_id")
        assert [ctid for (ctid,) in cursor.fetchall()] == ["(0,1)", "(0,2)"]
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'embedding_hnsw'")
        (definition,) = cursor.fetchone()
    assert "hnsw (vector halfvec_cosine_ops)" in definition
