"""The plans of browsing and of sorted pages (as in tests/catalogue/test_query_plans.py), on
one catalogue of 3,000 papers built once for the module: built for each test, it cost these
50 tests 100 s (2-3 s a build)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from catalogue import models, search, summary
from catalogue.filters import PaperFilter
from catalogue.models import Paper
from tests.catalogue.test_query_plans import ABSTRACT, PAPERS, START, analysed, built_once

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def catalogue(django_db_setup, django_db_blocker):
    """3,000 papers, a few a day, some undated, with fresh statistics, built once for the
    module's tests (``built_once``: each runs in a savepoint of its transaction)."""
    with built_once(django_db_blocker):
        analysed(
            Paper(
                arxiv_id=f"2401.{i:05d}",
                title=f"Paper {i} on {'attention' if i % 3 else 'diffusion'}",
                abstract=ABSTRACT,
                published_on=None if i % 100 == 7 else START + dt.timedelta(days=i // 3),
                upvotes=i % 40,
                code_url="https://github.com/a/b" if i % 4 == 0 else "",
            )
            for i in range(PAPERS)
        )
        yield


SORT = re.compile(r"^(\s*->)?\s*Sort  \(", re.MULTILINE)  # a Sort node, not an Incremental Sort


def plan(params: dict, start: int = 0) -> str:
    papers = PaperFilter(params, queryset=Paper.objects.visible()).qs
    return papers[start : start + 25].explain()


@pytest.mark.parametrize(
    ("params", "start"),
    [
        ({"sort": "oldest"}, 0),
        ({"sort": "oldest"}, 1000),
        ({"sort": "oldest", "since": "2015-03-01"}, 0),
        ({"sort": "oldest", "since": "2015-03-01"}, 1000),
        ({"sort": "oldest", "has_code": "1"}, 0),
        ({"sort": "newest"}, 0),
        ({"sort": "newest"}, 1000),
        ({"sort": "upvotes"}, 0),
        ({"sort": "upvotes"}, 1000),
        ({"sort": "trending"}, 0),
        ({"sort": "trending"}, 1000),
    ],
)
def test_each_order_is_read_from_an_index_not_sorted(catalogue, params, start):
    """Deep pages included: page 41 reads 1,025 index entries, not every match sorted. (Deeper
    into a third of the matches or more, sorting them all may rightly be cheaper: at 3,000
    papers, page 81 of the upvotes order is read in random order from the table, and the
    planner rightly sorts the 3,000 instead; it chose the index only while earlier tests'
    dead rows made the table look larger.)"""
    text = plan(params, start)
    assert "Index Scan" in text, text
    assert "Seq Scan" not in text and not SORT.search(text), text


def test_oldest_first_keeps_undated_papers_last(catalogue):
    papers = PaperFilter({"sort": "oldest"}, queryset=Paper.objects.visible()).qs
    dates = [p.published_on for p in papers]
    undated = dates.count(None)
    assert undated == 30
    assert dates[-undated:] == [None] * undated
    assert dates[:-undated] == sorted(dates[:-undated])


def _plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)


def _cards_page(params: dict, start: int):
    """The page of cards from ``start`` as the list page loads them, and the EXPLAIN ANALYZE
    (JSON) of the one statement that loaded it."""
    paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
    query = params.get("q", "")
    results = paper_filter.results(lambda papers: search.highlight(papers.for_cards(), query))
    with CaptureQueriesContext(connection) as statements:
        page = results[start : start + 25]
    assert len(statements.captured_queries) == 1, statements.captured_queries
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statements[0]["sql"])
        explained = cursor.fetchone()[0]
    return paper_filter, page, explained[0]["Plan"]


DEEP_PAGES = [
    {"sort": "oldest"},
    {"sort": "newest"},
    {"sort": "upvotes"},
    {"sort": "trending", "since": "2015-03-01"},
    {"sort": "newest", "q": "attention"},
]


@pytest.mark.parametrize("params", DEEP_PAGES)
def test_a_deep_page_computes_its_cards_for_its_own_papers_only(catalogue, params):
    """A row's selected columns are computed before OFFSET drops it: page 41 loaded in one
    step ran each card's topics subquery (and a search's headlines) for the 1,000 papers
    before it too. The page is the order's papers 1,000-1,024, each with its extras."""
    paper_filter, page, explained = _cards_page(params, 1000)
    assert [p.pk for p in page] == [p.pk for p in paper_filter.qs[1000:1025]]
    assert len(page) == 25 and all(p.topic_list == [] for p in page)
    if "q" in params:
        assert all("attention" in p.marked_words for p in page)
    subplans = [n for n in _plan_nodes(explained) if n.get("Parent Relationship") == "SubPlan"]
    assert subplans, explained
    assert all(n["Actual Loops"] <= 25 for n in subplans), explained


@pytest.mark.parametrize("params", DEEP_PAGES[:4])
def test_a_browsed_page_reads_its_ids_from_the_order_index_alone(catalogue, params):
    """The sort indexes include the columns these pages filter by (hidden, the dates): the
    papers a deep page skips are never read from the table."""
    _, _, explained = _cards_page(params, 1000)
    _assert_skipped_papers_read_from_an_index(explained)


def _assert_skipped_papers_read_from_an_index(explained: dict) -> None:
    """The page's ids come from an index alone: papers are read from the table only for the
    page's own 25 rows."""
    scans = [n for n in _plan_nodes(explained) if "Scan" in n["Node Type"]]
    assert any(n["Node Type"] == "Index Only Scan" for n in scans), explained
    assert all(
        n["Actual Rows"] * n["Actual Loops"] <= 25
        for n in scans
        if n["Node Type"] != "Index Only Scan" and n.get("Relation Name") == "catalogue_paper"
    ), explained


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "newest", "has_code": "1"},
        {"sort": "oldest", "min_upvotes": "5", "has_code": "1"},
        {"sort": "upvotes", "has_code": "1"},
        {"sort": "trending", "since": "2015-03-01", "has_code": "1"},
    ],
)
def test_a_browsed_page_filtered_by_code_or_upvotes_reads_its_ids_from_the_index(catalogue, params):
    """The sort indexes include upvotes and code links too: a deep page of papers with code
    reads the papers it skips from the index alone."""
    _, page, explained = _cards_page(params, 100)
    assert len(page) == 25
    _assert_skipped_papers_read_from_an_index(explained)


@pytest.mark.parametrize("params", [{"has_code": "1"}, {"min_upvotes": "30"}])
def test_a_date_ranges_exact_count_reads_its_papers_from_an_index(catalogue, params):
    """A summary counting a date range's matches exactly (few in the sample) reads them from
    an index (the date index, or for many upvotes the upvotes index): with the code links and
    upvotes in the sort indexes, no paper is read from the table."""
    explained = _summary_plan({**params, "since": "2015-03-01", "until": "2016-01-01"})
    papers = [n for n in _plan_nodes(explained) if n.get("Relation Name") == "catalogue_paper"]
    assert len(papers) == 2, explained  # the sample's pass and the pass over every match
    assert all(n["Node Type"] == "Index Only Scan" for n in papers), explained


@pytest.mark.parametrize(
    "params",
    [
        {"has_code": "1", "since": "2015-02-01"},
        {"min_upvotes": "9", "until": "2017-01-01"},
        {"has_code": "1", "min_upvotes": "3", "sort": "upvotes"},
    ],
)
def test_a_summary_reads_the_samples_rows_from_its_index_alone(catalogue, params):
    """The sample's index includes every column a filter other than words, authors and topics
    tests: a filter by code links read each of the sample's 20,000 rows from the table at a
    million papers (30 ms warm, 150 from disk; 1.5 from the index)."""
    explained = _summary_plan(params)
    sample_scans = [n for n in _plan_nodes(explained) if n.get("Index Name") == "paper_sample_idx"]
    assert sample_scans and all(n["Node Type"] == "Index Only Scan" for n in sample_scans), (
        explained
    )


def _summary_plan(params: dict) -> dict:
    """The plan (EXPLAIN JSON) of the summary's statement of ``params``' matches (the sample's
    pass and, where it finds few, the pass over every match), index scans its only choice:
    on 3,000 papers reading everything would do, and what is tested is how an index is read."""
    matches = PaperFilter(params, queryset=Paper.objects.visible()).matches.order_by()
    with CaptureQueriesContext(connection) as statements:
        summary._sampled_ids_by_month(matches, summary.sample_every)
    (statement,) = statements.captured_queries
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement["sql"])
        return cursor.fetchone()[0][0]["Plan"]


@pytest.fixture
def small_topic(catalogue):
    """A topic of the 40 oldest papers (one undated, upvotes tied in places)."""
    topic = models.Topic.objects.create(name="Old", slug="old", query="old")
    papers = Paper.objects.filter(arxiv_id__in=[f"2401.{i:05d}" for i in range(40)])
    models.PaperTopic.objects.bulk_create(
        models.PaperTopic(paper=paper, topic=topic, reason=models.PaperTopic.Reason.RULE)
        for paper in papers
    )
    return topic


def _page_ids(params: dict, start: int, matches: int) -> tuple[list[int], str]:
    paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
    results = paper_filter.results(summary=summary.Summary(count=matches, exact=True))
    with CaptureQueriesContext(connection) as statements:
        page = results[start : start + 25]
    return [p.pk for p in page], statements[-1]["sql"]


@pytest.mark.parametrize("sort", ["newest", "oldest", "upvotes", "trending"])
@pytest.mark.parametrize("start", [0, 25])
def test_few_matches_spread_over_the_catalogue_are_sorted_not_walked_for(small_topic, sort, start):
    """A topic's 40 papers among 3,000, all at the old end: the newest-first walk of the date
    index would pass nearly every paper before it found 25 of them (PostgreSQL prices the
    walk as if they were spread evenly). The page's ids come from its matches, sorted by a key
    no index gives (``summary.unindexed``): the same papers in the same order."""
    params = QueryDict(f"topic=old&sort={sort}")
    expected = [p.pk for p in PaperFilter(params, queryset=Paper.objects.visible()).qs][
        start : start + 25
    ]
    ids, sql = _page_ids(params, start, matches=40)
    assert ids == expected and len(ids) == (25 if start == 0 else 15)
    assert "+ 0) DESC" in sql or "+ 0) ASC" in sql, sql
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        text = "\n".join(row[0] for row in cursor.fetchall())
    assert SORT.search(text), text  # the matches sorted, not the date index walked


def test_many_matches_keep_walking_the_order_index(catalogue):
    ids, sql = _page_ids({"sort": "newest"}, 1000, matches=PAPERS)
    assert "+ 0)" not in sql
    assert (
        ids
        == [p.pk for p in PaperFilter({"sort": "newest"}, Paper.objects.visible()).qs][1000:1025]
    )


def _summarised_page(params, start: int) -> tuple[list[int], list[str]]:
    """A page's ids as the list page reads them after a summary that read every match's id
    (a sampled catalogue whose sample finds too few matches to estimate from), and the
    statements that read the page."""
    paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
    found = summary.summarise(paper_filter.matches)
    assert found.match_ids is not None and found.count == 40
    results = paper_filter.results(summary=found)
    with CaptureQueriesContext(connection) as statements:
        page = results[start : start + 25]
    # (Outside a request the catalogue's size is read afresh for each decision.)
    state = "SELECT (SELECT max(updated_at)"
    return [p.pk for p in page], [
        s["sql"] for s in statements.captured_queries if not s["sql"].startswith(state)
    ]


@pytest.mark.parametrize("sort", ["newest", "oldest", "upvotes", "trending"])
@pytest.mark.parametrize("start", [0, 25])
def test_a_page_of_matches_the_summary_read_is_not_matched_again(
    small_topic, settings, sort, start
):
    """The summary read the topic's 40 ids: newest and oldest pages are slices of them (one
    statement loading 25 papers by id, no LIMIT), other orders sort them (the topic's links
    are not read again)."""
    settings.SUMMARY_EXACT_BELOW = 1
    params = QueryDict(f"topic=old&sort={sort}")
    expected = [p.pk for p in PaperFilter(params, queryset=Paper.objects.visible()).qs]
    ids, statements = _summarised_page(params, start)
    assert ids == expected[start : start + 25] and len(ids) == (25 if start == 0 else 15)
    assert len(statements) == 1 and "catalogue_papertopic" not in statements[0], statements
    if sort in ("newest", "oldest"):
        assert "LIMIT" not in statements[0], statements
    else:
        assert "= ANY((SELECT '{" in statements[0], statements


@pytest.mark.parametrize("sort", ["upvotes", "trending"])
def test_matches_the_summary_read_are_sorted_even_where_a_walk_looks_cheaper(
    catalogue, settings, sort
):
    """A topic of the 300 oldest papers of 3,000: spread evenly over the order, a walk for the
    first 25 would pass ~250 papers, and the even spread's rule walks. Their ids, read by the
    summary, are sorted instead: a bounded cost, where the walk's is not (trending, with
    code, in 2010-2011 at a million papers: the walk passed 914,000 papers, 967 ms)."""
    settings.SUMMARY_EXACT_BELOW = 1
    topic = models.Topic.objects.create(name="Old", slug="old", query="old")
    models.PaperTopic.objects.bulk_create(
        models.PaperTopic(paper=paper, topic=topic, reason=models.PaperTopic.Reason.RULE)
        for paper in Paper.objects.filter(arxiv_id__lt="2401.00300")
    )
    assert not summary.collects_before_sorting(300, 25)  # the even spread's verdict
    params = QueryDict(f"topic=old&sort={sort}")
    paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
    found = summary.summarise(paper_filter.matches)
    assert found.match_ids is not None and found.count == 300
    with CaptureQueriesContext(connection) as statements:
        page = paper_filter.results(summary=found)[0:25]
    expected = list(PaperFilter(params, queryset=Paper.objects.visible()).qs[:25])
    assert [p.pk for p in page] == [p.pk for p in expected]
    (statement,) = [s["sql"] for s in statements.captured_queries if "LIMIT" in s["sql"]]
    assert "catalogue_papertopic" not in statement
    # The ids as one array, its papers read from the primary key's index in one pass (a
    # semi-join of the unnested array looked each up from the root: 3x the buffers).
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + statement)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index Cond: (id = ANY (" in plan and "unnest" not in plan, plan


def test_a_phrases_pattern_reaches_the_planner_from_an_initplan(catalogue):
    """A constant pattern is tried on the column's statistics (a hundred abstracts) while
    each statement testing it is planned: a phrase's summary spent 4-5 ms planning for
    1-1.5 executing. From an InitPlan it is not; the phrase still finds the same papers."""
    phrase = PaperFilter({"q": '"on diffusion"', "mode": "keyword"}, queryset=Paper.objects.all())
    assert phrase.is_valid(), phrase.errors
    found = set(phrase.matches.values_list("arxiv_id", flat=True))
    assert found == {f"2401.{i:05d}" for i in range(0, PAPERS, 3)}
    sql, params = phrase.matches.values("pk").query.sql_with_params()
    assert "~* (SELECT %s::text)" in sql, sql
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        explained = "\n".join(line for (line,) in cursor.fetchall())
    assert "title ~* (InitPlan" in explained and "~* '" not in explained, explained
