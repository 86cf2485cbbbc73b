"""The realistic corpus generator: valid snapshot lines, growing dates, real term statistics."""

from __future__ import annotations

import inspect
import itertools
import json
from collections import Counter

import pytest

from ingest.records import PaperRecord
from ingest.sources import arxiv_snapshot
from tests.bench import corpus

PAPERS = 2_000


@pytest.fixture(scope="module")
def pool():
    return corpus.load_pool()


@pytest.fixture(scope="module")
def written(pool, tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    summary = corpus.write_corpus(path, PAPERS, seed=7, pool=pool)
    with open(path, "rb") as stream:
        results = list(arxiv_snapshot.parse(stream))
    return path, summary, results


def test_every_line_parses_as_a_paper(written):
    _, _, results = written
    assert len(results) == PAPERS
    assert all(isinstance(r, PaperRecord) for r in results)


def test_ids_are_distinct_new_style_and_follow_the_dates(written):
    _, _, records = written
    ids = [r.arxiv_id for r in records]
    assert len(set(ids)) == PAPERS
    for record in records:
        assert record.arxiv_id[:4] == f"{record.published_on:%y%m}"
    assert [r.published_on for r in records] == sorted(r.published_on for r in records)


def test_each_full_year_has_more_papers_than_the_one_before(written):
    _, _, records = written
    per_year = Counter(r.published_on.year for r in records)
    full_years = [per_year[year] for year in range(2008, 2026)]
    assert full_years == sorted(full_years)
    assert full_years[-1] > 3 * full_years[0]


def test_papers_look_like_arxiv_papers(written):
    _, _, records = written
    assert all(1 <= len(r.authors) <= corpus.MAX_AUTHORS for r in records)
    assert all(r.title and r.abstract and r.categories for r in records)
    with_code = sum(bool(r.code_url) for r in records) / PAPERS
    assert 0.10 < with_code < 0.20
    assert all(r.code_url.startswith("https://github.com/") for r in records if r.code_url)


def test_upvotes_are_mostly_absent_with_a_long_tail(written):
    _, _, records = written
    upvotes = [r.upvotes or 0 for r in records]
    assert sum(u == 0 for u in upvotes) > 0.7 * PAPERS
    assert max(upvotes) >= 20


def test_generated_document_frequencies_are_within_2x_of_the_real_ones(written):
    _, summary, _ = written
    assert len(summary.check.terms) == corpus.TOP_TERMS
    assert summary.check.passed, summary.check.summary()
    assert f"{corpus.TOP_TERMS} of the real sample's top {corpus.TOP_TERMS}" in (
        summary.check.summary()
    )


def test_the_check_measures_what_was_written(written):
    """The check reads the file's own lines: recounting one term from the file agrees."""
    path, summary, _ = written
    term = summary.check.terms[0][0]
    lines = path.read_text().splitlines()
    counted = sum(
        term in corpus.terms(f"{p['title']} {p['abstract']}") for p in map(json.loads, lines)
    )
    assert summary.sample.share(term) == pytest.approx(counted / PAPERS)


def test_the_check_flags_a_term_off_by_more_than_the_tolerance():
    real, generated = corpus.Frequencies(), corpus.Frequencies()
    for i in range(100):
        real.add("attention transformer" if i < 10 else "transformer")
        generated.add("attention transformer" if i < 25 else "transformer")
    check = corpus.check_frequencies(real, generated, top=2)
    assert [term for term, _, _ in check.failures] == ["attention"]
    assert not check.passed
    assert corpus.check_frequencies(real, generated, top=2, tolerance=3).passed


def test_terms_drop_stop_words_and_short_words():
    assert corpus.terms("The Models of an LLM: we show it") == {"models", "llm", "show"}


def test_generation_streams(pool):
    lines = corpus.Generator(pool, seed=1).lines(1_000_000)
    assert inspect.isgenerator(lines)
    first = [json.loads(line) for line in itertools.islice(lines, 3)]
    assert [paper["id"] for paper in first] == ["0704.0001", "0704.0002", "0704.0003"]


def test_the_same_seed_gives_the_same_corpus(pool):
    def head(seed):
        return list(itertools.islice(corpus.Generator(pool, seed).lines(1000), 50))

    assert head(3) == head(3)
    assert head(3) != head(4)
