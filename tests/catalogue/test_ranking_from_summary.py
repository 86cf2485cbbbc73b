"""A relevance ranking from the matches the summary read and ranked in its pass
(``Summary.match_ids``, ``match_ranks``): the same ranking as matching again, with no
statement of its own (a phrase is not tested a second time, a word's matches not read
again)."""

from __future__ import annotations

import datetime as dt
import json
import math
import pickle

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalogue import hybrid, search
from catalogue.filters import PaperFilter
from catalogue.models import Paper, PaperEmbedding
from catalogue.summary import ranked_from_summary, summarise

pytestmark = pytest.mark.django_db

PHRASE = "linear attention"
START = dt.date(2024, 1, 1)


def near(target: np.ndarray, cosine: float, seed: int) -> list[float]:
    """A unit vector at ``cosine`` to ``target``."""
    noise = np.random.default_rng(seed).standard_normal(target.shape[0]).astype(np.float32)
    noise -= noise.dot(target) * target
    noise /= np.linalg.norm(noise)
    return (cosine * target + math.sqrt(1 - cosine**2) * noise).tolist()


@pytest.fixture
def catalogue(settings):
    """Papers with the phrase (a few in their titles, some on one day, two undated), papers
    with both words apart, others; embeddings near the query for one phrase match and for one
    paper without the words (a neighbour by meaning). The summary reads every match's id:
    sampled catalogue, a sample too small to estimate from."""
    settings.SUMMARY_EXACT_BELOW = 1
    settings.SUMMARY_MIN_SAMPLE_HITS = 10**6
    settings.SUMMARY_CACHE_SECONDS = 0
    settings.SEARCH_RANK_CANDIDATES = 5  # fewer than the matches: the newest are cut
    abstract = "We scale linear attention to long documents; linear attention is fast."
    papers = [
        Paper(
            arxiv_id=f"2401.{i:05d}",
            title=f"Linear attention study {i}" if i % 5 == 0 else f"Study {i} of transformers",
            abstract=abstract if i % 2 else "Attention is not linear in this model, transformers.",
            published_on=None if i in (7, 9) else START + dt.timedelta(days=(i // 3) * 10),
        )
        for i in range(40)
    ]
    papers += [
        Paper(arxiv_id=f"2402.{i:05d}", title=f"Unrelated {i}", abstract="Proteins.")
        for i in range(10)
    ]
    Paper.objects.bulk_create(papers)
    vector = np.array(hybrid.query_vector(PHRASE), dtype=np.float32)
    for arxiv_id, seed in (("2401.00003", 1), ("2402.00004", 2)):
        PaperEmbedding.objects.create(
            paper=Paper.objects.get(arxiv_id=arxiv_id),
            vector=near(vector, 0.9, seed),
            model="test",
            text_hash="x",
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_paper")  # reltuples: what decides to sample


SEARCHES = [
    {"q": f'"{PHRASE}"'},  # words and meaning: a neighbour without the words among the matches
    {"q": f'"{PHRASE}"', "mode": "keyword"},
    {"q": f'"{PHRASE}" transformers'},
    {"q": f'"{PHRASE}"', "since": "2024-02-01"},
]


def searched(params) -> PaperFilter:
    paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
    assert paper_filter.is_valid(), paper_filter.errors
    return paper_filter


def test_match_ids_are_the_matches_newest_first_and_are_not_cached(catalogue):
    paper_filter = searched(SEARCHES[0])
    summary = summarise(paper_filter.matches)
    newest = [p.pk for p in paper_filter.matches.newest_first()]
    assert summary.match_ids == newest
    assert newest[-2:] == sorted(  # the undated last, as newest_first puts them
        Paper.objects.filter(arxiv_id__in=["2401.00007", "2401.00009"]).values_list(
            "pk", flat=True
        ),
        reverse=True,
    )
    assert pickle.loads(pickle.dumps(summary)).match_ids is None


# --- ranked in the summary's own pass (``Summary.match_ranks``) ------------------------------

RANKED_SEARCHES = [
    *SEARCHES,
    {"q": "transformers", "mode": "keyword"},
    {"q": "linear attention"},  # title words: the title pool reaches past the newest five
    {"q": "attention", "since": "2024-02-01", "until": "2024-03-31"},
]


def summary_and_ranking(params):
    """(the summary, the relevance ranking, the ranking's statements) of a list page."""
    paper_filter = searched(params)
    with CaptureQueriesContext(connection) as statements:
        summary, results = paper_filter.summary_and_results()
    ranked = [s["sql"] for s in statements if "ts_rank_cd" in s["sql"]]
    return summary, results, ranked


@pytest.mark.parametrize("params", RANKED_SEARCHES)
def test_a_summary_that_ranks_its_matches_gives_the_ranking_of_matching_again(catalogue, params):
    """Each match's rank and title flag come from the summary's pass, and the ranking is
    built from them with no statement of its own; it is the ranking matching again gives,
    title pool included (five candidates, older title matches)."""
    summary, results, ranked = summary_and_ranking(params)
    (statement,) = ranked  # the summary's: no ranking statement follows it
    assert "WITH sample" in statement
    again = searched(params).ranking(summary.count)
    assert results.ids == again.ids and results.reasons == again.reasons


def test_the_title_pool_from_the_summarys_ranks_reaches_past_the_newest():
    """The newest ``limit`` matches, then the newest ``limit / 10`` title matches wherever
    they are (as ``relevance_pools``): most relevant first, ties by the newer id."""
    match_ids = list(range(100, 70, -1))  # newest first
    ranks = [(0.1, pk in (95, 80, 75)) for pk in match_ids]
    ranks[match_ids.index(71)] = (0.9, False)  # relevant but old, in no pool
    rows = ranked_from_summary(match_ids, ranks, 10, titles=True)
    assert [pk for pk, _ in rows] == [*range(100, 90, -1)]  # 95, a title match, among them
    rows = ranked_from_summary(match_ids, ranks, 20, titles=True)
    assert [pk for pk, _ in rows] == [*range(100, 79, -1)]  # 20 // 10: 95 and 80
    ranks[match_ids.index(95)] = (0.1, False)
    rows = ranked_from_summary(match_ids, ranks, 20, titles=True)
    assert [pk for pk, _ in rows] == [*range(100, 79, -1), 75]
    assert {pk for pk, _ in ranked_from_summary(match_ids, ranks, 20, titles=False)} == set(
        range(100, 80, -1)
    )


def test_ranks_are_not_read_for_sorted_pages_or_where_the_sample_estimates(catalogue, settings):
    summary, _, _ = summary_and_ranking({"q": "attention", "sort": "newest"})
    assert summary.match_ids is not None and summary.match_ranks is None
    settings.SUMMARY_MIN_SAMPLE_HITS = 0  # the sample's hits always enough: estimated
    summary, results, ranked = summary_and_ranking({"q": "transformers", "mode": "keyword"})
    assert not summary.exact and summary.match_ranks is None
    assert [s for s in ranked if "WITH sample" not in s]  # the ranking's own statements


def test_match_ranks_are_not_cached(catalogue):
    summary, _, _ = summary_and_ranking(SEARCHES[1])
    assert summary.match_ranks
    assert pickle.loads(pickle.dumps(summary)).match_ranks is None


def test_the_samples_pass_does_not_rank(catalogue):
    """The matches are compiled once, with their rank columns, for both passes: the sample's
    pass, over a fifth of a million papers' sample for a common word, must not compute
    them (PostgreSQL drops the columns a pulled-up subquery's parent does not use)."""
    _, _, (statement,) = summary_and_ranking(SEARCHES[1])
    body = statement.split("; ", 1)[1].rsplit("; RESET", 1)[0]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (VERBOSE, FORMAT JSON) " + body)
        plan = cursor.fetchone()[0][0]["Plan"]
    (sample,) = [node for node in plan["Plans"] if node.get("Subplan Name") == "CTE sample"]
    assert "ts_rank_cd" not in json.dumps(sample)
    assert "ts_rank_cd" in json.dumps(plan)


TITLE_SEARCHES = ["attention", "linear attention", f'"{PHRASE}"', "linear OR proteins",
                  f'"{PHRASE}" transformers', "title:study"]  # fmt: skip


@pytest.mark.parametrize("text", TITLE_SEARCHES)
def test_a_title_tested_by_weight_is_a_title_the_title_index_finds(catalogue, text):
    """The summary's pass and a walked title pool test a paper's title words by their weight
    in its whole vector; the title index holds a copy of the title words (``ts_filter``).
    Both must find the same titles: words apart or reversed in a title, one word in the title
    and the other in the abstract, a phrase across the two."""
    Paper.objects.bulk_create(
        Paper(arxiv_id=f"2403.{i:05d}", title=title, abstract=abstract)
        for i, (title, abstract) in enumerate(
            [
                ("Attention, not linear", "Proteins."),
                ("Linear models", "Attention everywhere."),
                ("Fast and linear", "Attention is what we study."),
                ("A study of proteins", "Linear attention."),
                ("Linear attention for transformers", "Proteins."),
            ]
        )
    )
    title_query = search.parse(text).title_query
    visible = Paper.objects.visible()
    by_index = visible.filter(search.in_title(title_query)).values_list("pk", flat=True)
    by_weight = visible.filter(search.in_title_by_weight(title_query)).values_list("pk", flat=True)
    assert set(by_weight) == set(by_index) and by_index


def test_the_summarys_pass_tests_titles_by_weight_not_on_a_copy_of_each_vector(catalogue):
    """``ts_filter`` copies each match's vector (~1.2 KB) to test its title: as costly as its
    rank, over every match the pass reads."""
    _, _, (statement,) = summary_and_ranking({"q": "linear attention"})
    assert "ts_filter" not in statement
    assert "''linear'':A" in statement  # its title flags: by weight


def test_the_neighbour_without_the_words_is_ranked_by_meaning_only(catalogue):
    _, results, _ = summary_and_ranking(SEARCHES[0])
    without_words = Paper.objects.get(arxiv_id="2402.00004").pk
    assert results.reasons[without_words] == (hybrid.MEANING,)


def test_nothing_matched_is_an_empty_ranking_without_ranking_anything(catalogue):
    params = {"q": '"attention linear"', "mode": "keyword"}  # both words, never in this order
    summary, results, ranked = summary_and_ranking(params)
    assert summary.count == 0 and summary.match_ids == [] and results.ids == []
    assert all("WITH sample" in statement for statement in ranked)  # the summary's alone


# --- the ranking's cache key (``summary.ranking_text``) --------------------------------------


def test_a_ranking_from_the_summary_builds_no_candidate_statements(catalogue, monkeypatch):
    """Its key names it by the matches' SQL and its terms: the candidate pools, which nothing
    would read, are neither built nor compiled for a key (~1-2 ms of a ranked page)."""

    def unread(*args, **kwargs):
        raise AssertionError("candidate pools built for a ranking the summary gave")

    monkeypatch.setattr(type(Paper.objects.all()), "relevance_pools", unread)
    for params in RANKED_SEARCHES:
        _, results, (statement,) = summary_and_ranking(params)
        assert "WITH sample" in statement and results.ids


def test_a_ranking_is_cached_under_its_matches_terms_and_candidates(catalogue, settings):
    """Ranked from the summary's pass, then asked for again where the summary came from the
    cache (no match ids): the same key, so the ranking is read from the cache, not ranked
    again. A change to what decides its candidates (their number) or its order (the words'
    order: another phrase) is another key."""
    settings.SUMMARY_CACHE_SECONDS = 60
    params = {"q": "attention transformers", "mode": "keyword", "until": "2024-06-01"}
    first_summary, first, _ = summary_and_ranking(params)
    assert first_summary.match_ranks  # ranked from the summary's pass
    again_summary, again, ranked = summary_and_ranking(params)
    assert again_summary.match_ids is None  # from the cache
    assert again.ids == first.ids and not ranked  # no statement ranked anything
    settings.SEARCH_RANK_CANDIDATES = 2
    _, fewer, ranked = summary_and_ranking(params)
    assert ranked and len(fewer.ids) < len(first.ids)
    settings.SEARCH_RANK_CANDIDATES = 5
    _, _, ranked = summary_and_ranking({**params, "q": "transformers attention"})
    assert ranked  # its own ranking, not the other order's
