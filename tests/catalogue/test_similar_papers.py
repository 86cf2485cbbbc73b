"""Similar papers on a paper's page: nearest by meaning (crafted vectors), else by title words."""

from __future__ import annotations

import math

import numpy as np
import pytest
from django.db import connection, transaction

from catalogue import models, search
from catalogue.models import Paper, PaperEmbedding

pytestmark = pytest.mark.django_db

DIMENSIONS = 384
_RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def _fresh_index():
    """Each test starts from an empty HNSW graph. Tests roll back, but their vectors stay in
    the index (an HNSW graph drops entries only at VACUUM) and the next test's nodes link to
    them: the graph of a test database is not the graph of a vacuumed catalogue. Rebuilt
    inside the test's transaction, so the rollback puts the old index back."""
    with connection.cursor() as cursor:
        cursor.execute("REINDEX INDEX embedding_hnsw")


def direction(cosine: float) -> np.ndarray:
    """A unit vector at ``cosine`` to the first axis, the rest a random direction.

    Random, not one axis per paper: a graph of papers that differ in one coordinate each is
    degenerate (HNSW links a cluster of near-identical vectors only to itself, and the papers
    beyond it become unreachable), and real embeddings are never like that.
    """
    rest = _RNG.standard_normal(DIMENSIONS).astype(np.float32)
    rest[0] = 0
    vector = rest / np.linalg.norm(rest) * math.sqrt(1 - cosine**2)
    vector[0] = cosine
    return vector


def paper(key: str, title: str, cosine: float | None = None, hidden: bool = False):
    made = Paper.objects.create(arxiv_id=key, title=title, hidden=hidden)
    if cosine is not None:
        PaperEmbedding.objects.create(
            paper=made, vector=direction(cosine), model="test", text_hash="x"
        )
    return made


def similar(client, of: Paper):
    response = client.get(of.get_absolute_url())
    assert response.status_code == 200
    return response


def test_neighbours_are_ordered_by_distance_and_show_their_similarity(client):
    me = paper("2501.00001", "Subject", 1.0)
    paper("2501.00002", "Far", 0.30)
    paper("2501.00003", "Nearest", 0.95)
    paper("2501.00004", "Middle", 0.70)
    paper("2501.00005", "Near", 0.85)
    response = similar(client, me)
    assert response.context["similar_by_meaning"]
    titles = [p.title for p in response.context["similar"]]
    assert titles == ["Nearest", "Near", "Middle", "Far"]
    html = response.content.decode()
    assert "95% similar" in html and "30% similar" in html
    assert 'href="/?like=2501.00001"' in html


def test_paper_itself_is_never_its_own_neighbour(client):
    me = paper("2501.00001", "Subject", 1.0)
    twin = paper("2501.00002", "Same vector", 1.0)
    similar_titles = [p.title for p in similar(client, me).context["similar"]]
    assert similar_titles == ["Same vector"]
    assert [p.pk for p in Paper.objects.visible().similar_by_meaning(twin)] == [me.pk]


def test_hidden_papers_never_shown_even_when_they_are_the_nearest_fifty(client):
    me = paper("2501.00001", "Subject", 1.0)
    for i in range(50):
        paper(f"2502.{i:05d}", f"Hidden {i}", 0.99 - i * 0.001, hidden=True)
    visible = [paper(f"2503.{i:05d}", f"Visible {i}", 0.6 - i * 0.05) for i in range(3)]
    cursor = connection.cursor()
    # Through the HNSW index, as on a large catalogue (a few rows would be sorted whole).
    cursor.execute("SET LOCAL enable_seqscan = off")
    cursor.execute("SET LOCAL enable_sort = off")
    with transaction.atomic():  # rolled back, and its setting with it
        cursor.execute("SET LOCAL hnsw.iterative_scan = off")
        cursor.execute("SET LOCAL hnsw.ef_search = 40")  # pgvector's default
        # A plain index scan hands back its ~40 nearest rows, all hidden, and stops there.
        assert list(Paper.objects.visible().exclude(pk=me.pk).nearest_to(direction(1.0), 5)) == []
        transaction.set_rollback(True)
    shown = similar(client, me).context["similar"]
    assert [p.pk for p in shown] == [p.pk for p in visible]


def test_falls_back_to_shared_title_words_without_an_embedding(client):
    me = paper("2501.00001", "Decoupled linear attention")  # just ingested: no vector yet
    paper("2501.00002", "Linear attention revisited", 0.9)
    paper("2501.00003", "Protein folding", 0.99)
    response = similar(client, me)
    assert not response.context["similar_by_meaning"]
    assert [p.title for p in response.context["similar"]] == ["Linear attention revisited"]
    html = response.content.decode()
    assert "By shared title words" in html
    assert "% similar" not in html
    assert "?like=" not in html  # nothing to find papers like it with yet


def test_first_embedded_paper_shows_title_word_neighbours_meanwhile(client):
    me = paper("2501.00001", "Decoupled linear attention", 1.0)
    paper("2501.00002", "Linear attention revisited")  # not embedded yet
    response = similar(client, me)
    assert not response.context["similar_by_meaning"]
    assert [p.title for p in response.context["similar"]] == ["Linear attention revisited"]
    assert "Nothing close in meaning yet" in response.content.decode()


def test_paper_page_query_count_is_pinned(client, django_assert_num_queries):
    me = paper("2501.00001", "Subject", 1.0)
    for i in range(5):
        paper(f"2501.{i + 10:05d}", f"Neighbour {i}", 0.9 - i * 0.1)
    # The paper with its embedding, its upvote history, topics, sightings, and neighbours.
    with django_assert_num_queries(5):
        response = similar(client, me)
    assert len(response.context["similar"]) == 5


def test_title_word_neighbours_of_titles_with_quotes_backslashes_and_one_word(client):
    me = paper("2501.00001", "O'Brien's \\back\\slash 'quoted' kernels")
    paper("2501.00002", "Quoted kernels for O'Brien")
    alone = paper("2501.00003", "Kernels")
    assert [p.title for p in similar(client, me).context["similar"]] == [
        "Quoted kernels for O'Brien",
        "Kernels",
    ]
    assert [p.title for p in similar(client, alone).context["similar"]] == [
        "Quoted kernels for O'Brien",
        "O'Brien's \\back\\slash 'quoted' kernels",
    ]


@pytest.fixture
def title_statistics(monkeypatch):
    """Title statistics read afresh after the test's ANALYZE, not from an earlier test."""
    monkeypatch.setattr(search, "_stats", {})

    def analyse():
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE catalogue_paper")
        search._stats.clear()

    return analyse


def test_anchors_stop_at_the_share_of_titles_and_at_a_number_of_papers(monkeypatch):
    monkeypatch.setattr(models, "SIMILAR_ANCHOR_SHARE", 0.05)
    monkeypatch.setattr(models, "SIMILAR_ANCHOR_PAPERS", 5_000)
    words = [("'rare'", 0.001), ("'less'", 0.003), ("'common'", 0.02), ("'usual'", 0.04)]
    # 100,000 titles: the share binds (the anchors in 2.4 % of them, 2,400 papers).
    assert models.similarity_anchors(words, 100_000) == ["'rare'", "'less'", "'common'"]
    # A million: 5,000 papers do (the first three would be in 24,000).
    assert models.similarity_anchors(words, 1_000_000) == ["'rare'", "'less'"]
    # The rarest word anchors even past both caps; an unknown count leaves the share alone.
    assert models.similarity_anchors(words, 100_000_000) == ["'rare'"]
    assert models.similarity_anchors(words, 0) == ["'rare'", "'less'", "'common'"]


def test_title_statistics_count_the_titles(title_statistics):
    Paper.objects.bulk_create(Paper(arxiv_id=f"2501.{i:05d}", title=f"T {i}") for i in range(30))
    title_statistics()
    assert search.title_frequencies().titles == 30


def test_title_word_neighbours_come_from_anchors_in_few_enough_papers(
    monkeypatch, title_statistics
):
    """With the share of titles alone every word of "Alpha beta gamma" anchors; with at most
    15 papers' worth, only alpha (in 10 of 211 titles) does, and papers sharing only beta,
    newer and as similar by ts_rank, are not candidates."""
    me = paper("2501.00001", "Alpha beta gamma")
    for i, word in enumerate(["gamma"] * 190 + ["alpha"] * 10 + ["beta"] * 10):
        paper(f"2502.{i:05d}", f"{word.title()} study {i}")
    title_statistics()
    monkeypatch.setattr(models, "SIMILAR_ANCHOR_SHARE", 1.0)

    def neighbour_words(papers_cap: int) -> set[str]:
        monkeypatch.setattr(models, "SIMILAR_ANCHOR_PAPERS", papers_cap)
        similar = Paper.objects.visible().similar_to(me, 5)
        return {p.title.split()[0] for p in similar}

    assert neighbour_words(1_000_000) == {"Beta"}  # the newest of equals
    assert neighbour_words(15) == {"Alpha"}
