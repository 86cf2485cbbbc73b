"""A phrase's relevance ranking from the matches the summary read (``Summary.match_ids``):
the same ranking as matching again, without testing the phrase a second time."""

from __future__ import annotations

import datetime as dt
import json
import math
import pickle

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalogue import filters, hybrid, search
from catalogue.filters import PaperFilter
from catalogue.models import Paper, PaperEmbedding
from catalogue.summary import known_ids_pay, ranked_from_summary, ranks_in_summary_pay, summarise

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


@pytest.mark.parametrize("params", SEARCHES)
def test_the_ranking_among_the_summarys_matches_is_the_ranking_of_matching_again(catalogue, params):
    summary = summarise(searched(params).matches)
    assert summary.match_ids is not None and len(summary.match_ids) == summary.count
    known = searched(params).ranking(summary.count, summary.match_ids)
    again = searched(params).ranking(summary.count)
    assert known.ids == again.ids and known.reasons == again.reasons
    assert len(known.ids) >= 5  # the newest five, a title match, the neighbours


def test_the_neighbour_without_the_words_is_ranked_by_meaning_only(catalogue):
    summary = summarise(searched(SEARCHES[0]).matches)
    without_words = Paper.objects.get(arxiv_id="2402.00004").pk
    assert without_words in summary.match_ids
    ranking = searched(SEARCHES[0]).ranking(summary.count, summary.match_ids)
    assert ranking.reasons[without_words] == (hybrid.MEANING,)


def newest_pool_ranked_among_known_matches(params) -> tuple[str, list[int]]:
    """(the SQL of the ranking's newest pool, the matches' ids newest first) of a search
    ranked among the matches its summary read."""
    summary = summarise(searched(params).matches)
    with CaptureQueriesContext(connection) as statements:
        searched(params).ranking(summary.count, summary.match_ids)
    (ranking,) = [s["sql"] for s in statements if "ts_rank_cd" in s["sql"]]
    return ranking.split("; ")[0], summary.match_ids


def test_the_phrase_is_not_tested_again_where_its_matches_are_known(catalogue):
    newest_pool, _ = newest_pool_ranked_among_known_matches(SEARCHES[1])
    assert "~*" not in newest_pool and "@@" not in newest_pool, newest_pool


def test_the_known_matches_reach_postgresql_as_one_array(catalogue):
    """Not as one parameter per id: a few thousand ids cost the ORM's compiling and
    PostgreSQL's parsing and planning more than the ranking's reads."""
    newest_pool, match_ids = newest_pool_ranked_among_known_matches(SEARCHES[1])
    window = match_ids[:5]  # SEARCH_RANK_CANDIDATES, no neighbour in keyword mode
    assert "= ANY((SELECT '{" + ",".join(map(str, window)) + "}'" in newest_pool, newest_pool
    assert f"IN ({window[0]}, " not in newest_pool, newest_pool


def test_nothing_matched_is_an_empty_ranking_without_ranking_anything(catalogue):
    params = {"q": '"attention linear"', "mode": "keyword"}  # both words, never in this order
    summary = summarise(searched(params).matches)
    assert summary.count == 0 and summary.match_ids == []
    with CaptureQueriesContext(connection) as statements:
        ranking = searched(params).ranking(summary.count, summary.match_ids)
    assert ranking.ids == []
    assert not [s for s in statements if "ts_rank_cd" in s["sql"]]


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


def test_the_title_pool_looks_among_the_known_matches_without_testing_the_phrase_again(
    catalogue,
):
    """A title with the phrase is a match, and the summary read every match: the title pool
    reads them by id. Looking among the words' candidates again tested the phrase's pattern
    on every paper with both words ("trained times" at a million papers: 7,208 papers with
    "train time", none with the phrase, 132 ms)."""
    summary = summarise(searched(SEARCHES[1]).matches)
    with CaptureQueriesContext(connection) as statements:
        searched(SEARCHES[1]).ranking(summary.count, summary.match_ids)
    (ranking,) = [s["sql"] for s in statements if "ts_rank_cd" in s["sql"]]
    newest_pool, title_pool = ranking.split("; ")
    known = "= ANY((SELECT '{" + ",".join(map(str, summary.match_ids)) + "}'"
    assert known in title_pool, title_pool
    assert "~*" not in title_pool and "~*" not in newest_pool, title_pool


@pytest.mark.parametrize(
    ("matches", "entries", "window", "phrased", "pays"),
    [
        (2_633, 126_629, 2_000, False, True),  # "baselines" in 17 months of a million papers
        (2_103, 124_163, 2_000, False, True),  # "critical" in six months: 48 ms again, 25 by id
        (5_555, 5_555, 2_000, False, False),  # "diagonally" everywhere: 28 ms again, 49 by id
        (3_898, 40_288, 2_000, True, False),  # "randomly text": 37 ms again, 49 by id
        (100, 10_000, 2_100, False, False),  # a rare word: its few rows, by id or not
        (2_633, 0, 2_000, False, False),  # entries unknown (an author, a prefix)
        (0, 126_629, 2_000, False, False),  # nothing matched
    ],
)
def test_ranking_by_the_known_ids_pays_where_the_words_index_holds_many_more(
    matches, entries, window, phrased, pays
):
    assert known_ids_pay(matches, entries, window, phrased=phrased) is pays


@pytest.mark.parametrize(("titles", "by_id"), [(100_000, True), (30, False)])
def test_a_word_whose_index_holds_many_more_papers_is_ranked_by_the_known_ids(
    catalogue, monkeypatch, titles, by_id
):
    """The summary read the matches of "transformers"; where the word's index holds many more
    papers than those (the statistics say 90 % of 100,000, as for a common word among a few
    months' papers), the ranking reads its candidates by id instead of every index entry
    again. The same ranking either way."""
    stats = search.TitleStats({"transform": 0.9}, rare=0.001, titles=titles)
    monkeypatch.setattr(search, "vector_frequencies", lambda: stats)
    params = {"q": "transformers", "mode": "keyword"}
    summary = summarise(searched(params).matches)
    assert summary.match_ids is not None and summary.count > 5
    assert not searched(params)._tested_in_date_range
    with CaptureQueriesContext(connection) as statements:
        ranking = searched(params).ranking(summary.count, summary.match_ids)
    reads = [s["sql"] for s in statements if "ts_rank_cd" in s["sql"]]
    newest_pool = reads[0].split("; ")[0]
    assert ("= ANY((SELECT '{" in newest_pool and "@@" not in newest_pool) is by_id, newest_pool
    assert ranking.ids == searched(params).ranking(summary.count).ids


def test_no_title_pool_is_read_where_the_candidates_hold_every_known_match(catalogue, settings):
    """With no more matches than candidates, the newest pool holds every match, title
    matches included: the title pool would add nothing and is not read (1-5 ms a phrase at a
    million papers). The ranking is the one matching again gives."""
    settings.SEARCH_RANK_CANDIDATES = 1_000
    params = SEARCHES[1]
    summary = summarise(searched(params).matches)
    assert summary.count <= settings.SEARCH_RANK_CANDIDATES
    with CaptureQueriesContext(connection) as statements:
        known = searched(params).ranking(summary.count, summary.match_ids)
    (ranking,) = [s["sql"] for s in statements if "ts_rank_cd" in s["sql"]]
    assert "; " not in ranking and "ts_filter" not in ranking, ranking  # the newest pool alone
    assert known.ids == searched(params).ranking(summary.count).ids
    titled = Paper.objects.filter(title__startswith="Linear attention", abstract__contains="scale")
    assert set(titled.values_list("pk", flat=True)) <= set(known.ids)


# --- ranked in the summary's own pass (``Summary.match_ranks``) ------------------------------

RANKED_SEARCHES = [
    *SEARCHES,
    {"q": "transformers", "mode": "keyword"},
    {"q": "linear attention"},  # title words: the title pool reaches past the newest five
    {"q": "attention", "since": "2024-02-01", "until": "2024-03-31"},
]


@pytest.fixture
def counted_words(monkeypatch):
    """Word statistics by which every search of the catalogue is expected to match a few
    papers (``_expected_matches``): few enough to be ranked in the summary's pass."""
    stats = search.TitleStats({}, rare=0.2, titles=50)
    monkeypatch.setattr(search, "vector_frequencies", lambda: stats)


def summary_and_ranking(params):
    """(the summary, the relevance ranking, the ranking's statements) of a list page."""
    paper_filter = searched(params)
    with CaptureQueriesContext(connection) as statements:
        summary, results = paper_filter.summary_and_results()
    ranked = [s["sql"] for s in statements if "ts_rank_cd" in s["sql"]]
    return summary, results, ranked


@pytest.mark.parametrize("params", RANKED_SEARCHES)
def test_a_summary_that_ranks_its_matches_gives_the_ranking_of_matching_again(
    catalogue, counted_words, params
):
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


def test_ranks_are_not_read_for_sorted_pages_or_where_the_matches_are_many(
    catalogue, counted_words, monkeypatch
):
    summary, _, _ = summary_and_ranking({"q": "attention", "sort": "newest"})
    assert summary.match_ids is not None and summary.match_ranks is None
    many = search.TitleStats({}, rare=1.0, titles=10**6)  # a million papers expected
    monkeypatch.setattr(search, "vector_frequencies", lambda: many)
    summary, results, ranked = summary_and_ranking({"q": "transformers", "mode": "keyword"})
    assert summary.match_ranks is None
    (ranking,) = ranked  # its own statement; the summary's ranks nothing
    assert "WITH sample" not in ranking


def test_match_ranks_are_not_cached(catalogue, counted_words):
    summary, _, _ = summary_and_ranking(SEARCHES[1])
    assert summary.match_ranks
    assert pickle.loads(pickle.dumps(summary)).match_ranks is None


def test_the_samples_pass_does_not_rank(catalogue, counted_words):
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


@pytest.mark.parametrize(
    ("matches", "pays"), [(None, False), (0, True), (4_000, True), (4_001, False)]
)
def test_ranks_in_the_summary_pay_up_to_twice_the_candidates(settings, matches, pays):
    settings.SEARCH_RANK_CANDIDATES = 2_000
    assert ranks_in_summary_pay(matches) is pays


def test_the_expected_matches_are_the_words_share_of_the_date_range(catalogue, monkeypatch):
    stats = search.TitleStats({"attent": 0.5}, rare=0.001, titles=1_000)
    monkeypatch.setattr(search, "vector_frequencies", lambda: stats)
    assert searched({"q": "attention"})._expected_matches == 500
    monkeypatch.setattr(filters, "papers_published_between", lambda first, last: 10)
    monkeypatch.setattr(filters, "catalogue_size", lambda: 100)
    ranged = searched({"q": "attention", "since": "2024-02-01"})
    assert ranged._expected_matches == pytest.approx(50)
