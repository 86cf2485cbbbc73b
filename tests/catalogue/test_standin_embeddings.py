"""Stand-in embeddings of bench catalogues (tests.bench.standin): the model's word vectors
averaged over each paper's words, written beside the real ones' table and indexed."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from django.conf import settings

from catalogue import embedder
from catalogue.dburl import url_from_settings
from catalogue.models import Paper, PaperEmbedding
from tests.bench import standin


def test_words_are_lowercase_and_hyphenated_ones_stay_whole():
    assert standin.words_of("Self-Attention for 3D Graphs, x2") == [
        "self-attention", "for", "3d", "graphs", "x2"
    ]  # fmt: skip


def test_the_commonest_words_count_each_text_once():
    texts = ["graph graph graph", "graph protein", "protein folding", "folding"]
    assert standin.commonest_words(texts, limit=2) == ["graph", "protein"]


def test_a_paper_is_the_unit_mean_of_its_known_words_its_title_counted_twice():
    index = {"graph": 0, "protein": 1}
    vectors = np.eye(2, dtype=np.float32)
    vector = standin.paper_vector("Graph", "protein unknown", index, vectors)
    assert np.allclose(vector, np.array([2, 1]) / np.sqrt(5))
    assert standin.paper_vector("Unknown", "words", index, vectors) is None


@pytest.mark.django_db(transaction=True)
def test_every_paper_gets_a_vector_near_papers_of_its_words_and_the_index_is_rebuilt():
    topics = {
        "protein": "protein folding structure prediction amino acids",
        "galaxy": "galaxy cluster dark matter telescope survey",
        "speech": "speech recognition acoustic audio transcription",
    }
    for n, (name, words) in enumerate(topics.items()):
        for i in range(3):
            Paper.objects.create(
                arxiv_id=f"2601.{n}{i:04d}", title=f"{name} study {i}", abstract=words
            )
    Paper.objects.create(arxiv_id="2601.99999", title="Ç", abstract="")  # no word at all
    kept = Paper.objects.create(arxiv_id="2601.88888", title="speech", abstract="speech")
    real = [0.0] * 383 + [1.0]
    PaperEmbedding.objects.create(paper=kept, vector=real, model="real", text_hash="x")

    figures = standin.fill(url_from_settings(settings.DATABASES["default"]), _embed)

    assert figures["papers"] == 9  # neither the wordless paper nor the embedded one
    assert list(PaperEmbedding.objects.get(paper=kept).vector) == real  # untouched
    standins = PaperEmbedding.objects.filter(model=standin.STANDIN_MODEL)
    assert standins.count() == 9
    for embedding in standins.select_related("paper"):
        nearest = (
            Paper.objects.exclude(pk=embedding.paper_id)
            .exclude(pk=kept.pk)
            .nearest_to(list(embedding.vector), 2)
        )
        topic = embedding.paper.title.split()[0]
        assert all(paper.title.startswith(topic) for paper in nearest), embedding.paper.title
    with psycopg.connect(url_from_settings(settings.DATABASES["default"])) as conn:
        (definition,) = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'embedding_hnsw'"
        ).fetchone()
    assert "hnsw" in definition and "halfvec_cosine_ops" in definition


def _embed(texts):
    return embedder.get_embedder().embed(texts)
