"""Keyword relevance (catalogue.search.relevance): words together, as a phrase, in the title,
in a short text rank first; an older paper named after the query is among the candidates."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from catalogue.models import Paper

pytestmark = pytest.mark.django_db

FILLER = "We study several unrelated settings and report results on standard benchmarks. "


def make_paper(key: str, title: str, abstract: str, published_on=dt.date(2025, 1, 1)) -> Paper:
    return Paper.objects.create(
        arxiv_id=key, title=title, abstract=abstract, published_on=published_on
    )


def ranked(client, q: str, **params) -> list[str]:
    response = client.get(reverse("api-papers"), {"q": q, "mode": "keyword", **params})
    assert response.status_code == 200, response.content
    return [paper["arxiv_id"] for paper in response.json()["results"]]


def test_words_side_by_side_outrank_the_same_words_apart(client):
    make_paper("1", "A study", "Visual tokens, visual features, visual encoders; " + FILLER * 2
               + "and the quality of the data.")  # fmt: skip
    make_paper("2", "A study", "We improve the visual quality of generated images. " + FILLER)
    assert ranked(client, "visual quality") == ["2", "1"]


def test_title_matches_rank_above_abstract_matches(client):
    make_paper("1", "Efficient training", "We study linear attention. " + FILLER)
    make_paper("2", "Linear attention", "We study efficient training. " + FILLER)
    assert ranked(client, "linear attention") == ["2", "1"]


def test_a_short_text_outranks_a_long_one_with_the_same_mention(client):
    make_paper("1", "A study", "Distillation helps. " + FILLER * 12)
    make_paper("2", "A study", "Distillation helps. " + FILLER)
    assert ranked(client, "distillation") == ["2", "1"]


def test_an_older_paper_with_the_query_in_its_title_is_ranked(client, settings):
    """Relevance ranks the newest SEARCH_RANK_CANDIDATES matches and the newest matches in
    titles: the classic paper named after the query is not crowded out by newer mentions."""
    settings.SEARCH_RANK_CANDIDATES = 10  # and a tenth of it, 1, from titles
    make_paper("old", "Speculative decoding", "The method. " + FILLER, dt.date(2019, 1, 1))
    for i in range(12):
        make_paper(f"new{i}", "A study", f"We mention speculative decoding. {FILLER}",
                   dt.date(2025, 1, 1 + i))  # fmt: skip
    results = ranked(client, "speculative decoding")
    assert results[0] == "old"
    assert len(results) == 11  # the 10 newest and the title match


def test_every_word_is_still_required(client):
    make_paper("1", "Visual features", FILLER)
    make_paper("2", "Visual quality", FILLER)
    assert ranked(client, "visual quality") == ["2"]


@pytest.mark.parametrize("q", ["attention", "linear attention"])  # a phrase bonus too
def test_ranks_are_read_as_psycopg_gives_them_without_a_conversion_per_row(q):
    """A ranking reads 2,000 rows: the ORM's float() of each rank cost ~1 ms a page, for
    values psycopg already reads as floats."""
    make_paper("2501.00001", "Linear attention", FILLER)
    rows = Paper.objects.search(q).values_list("pk", "rank")
    compiler = rows.query.get_compiler(using=rows.db)
    compiler.setup_query()
    assert compiler.get_converters([column for column, *_ in compiler.select]) == {}
    [(_, rank)] = list(rows)
    assert type(rank) is float and rank > 0
