"""Writing paper embeddings: what is pending, what is written, and what makes a vector stale."""

from __future__ import annotations

import numpy as np
import pytest

from catalogue import embedding
from catalogue.embedder import MODEL_ID, get_embedder
from catalogue.embedding import embed_pending, pending_papers, text_hash
from catalogue.models import EMBEDDED_TEXT_MD5, Paper, PaperEmbedding, embedded_text

pytestmark = pytest.mark.django_db

# halfvec keeps 11 significant bits: components of a unit vector of 384 come back within 1e-3.
HALF = 1e-3


def paper(n: int, title: str | None = None, abstract: str = "", **fields) -> Paper:
    return Paper.objects.create(
        arxiv_id=f"2501.{n:05d}", title=title or f"Paper {n} on sparse attention", **fields,
        abstract=abstract or f"We study topic number {n}.",
    )  # fmt: skip


def stored(p: Paper) -> np.ndarray:
    return np.array(PaperEmbedding.objects.get(paper=p).vector)


def test_text_hash_is_the_md5_postgresql_computes_of_the_same_text():
    p = paper(1, "Schrödinger bridges: $\\mathcal{O}(n)$ 𝔼[ℓ] ≈ 0.3", "naïve 中文 Ελληνικά\r\n…")
    in_sql = Paper.objects.annotate(h=EMBEDDED_TEXT_MD5).get(pk=p.pk).h
    assert text_hash(embedded_text(p.title, p.abstract)) == in_sql


def test_every_pending_paper_is_embedded_hidden_ones_too():
    papers = [paper(1), paper(2, hidden=True), paper(3)]
    calls = []
    assert embed_pending(batch_size=2, progress=calls.append) == 3
    assert calls == [2, 1]
    assert not pending_papers().exists()
    texts = [embedded_text(p.title, p.abstract) for p in papers]
    expected = get_embedder().embed(texts)
    for p, text, vector in zip(papers, texts, expected, strict=True):
        row = PaperEmbedding.objects.get(paper=p)
        assert row.model == MODEL_ID and row.text_hash == text_hash(text)
        assert np.abs(np.array(row.vector) - vector).max() < HALF
    assert embed_pending() == 0  # nothing redone


def test_limit_stops_early_and_the_rest_stays_pending():
    for n in range(5):
        paper(n)
    assert embed_pending(batch_size=2, limit=3) == 3
    assert PaperEmbedding.objects.count() == 3
    assert list(pending_papers().values_list("arxiv_id", flat=True)) == ["2501.00003", "2501.00004"]


def test_changed_abstract_is_pending_again_and_recomputed():
    p, other = paper(1, "Graph neural networks", "Message passing over molecules."), paper(2)
    embed_pending()
    before, other_before = stored(p), PaperEmbedding.objects.get(paper=other).computed_at

    Paper.objects.filter(pk=p.pk).update(abstract="Diffusion models for protein design.")
    assert list(pending_papers()) == [p]
    assert embed_pending() == 1
    after = stored(p)
    assert np.abs(after - before).max() > 10 * HALF
    row = PaperEmbedding.objects.get(paper=p)
    assert row.text_hash == text_hash(
        embedded_text(p.title, "Diffusion models for protein design.")
    )
    assert PaperEmbedding.objects.get(paper=other).computed_at == other_before  # not redone
    assert PaperEmbedding.objects.count() == 2


def test_a_new_model_id_makes_every_vector_stale(monkeypatch):
    paper(1), paper(2)
    embed_pending()
    monkeypatch.setattr(embedding, "MODEL_ID", "all-MiniLM-L6-v2@next")
    assert pending_papers().count() == 2
    assert embed_pending() == 2
    assert set(PaperEmbedding.objects.values_list("model", flat=True)) == {"all-MiniLM-L6-v2@next"}


def test_paper_deleted_while_its_text_was_embedded_is_skipped():
    p = paper(1)
    gone = PaperEmbedding(paper_id=p.pk + 1000, vector=[0.0] * 383 + [1.0], model=MODEL_ID)
    kept = PaperEmbedding(paper_id=p.pk, vector=[1.0] + [0.0] * 383, model=MODEL_ID)
    embedding._save([gone, kept])
    assert list(PaperEmbedding.objects.values_list("paper_id", flat=True)) == [p.pk]
