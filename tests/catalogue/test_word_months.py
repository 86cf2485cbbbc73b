"""A common word's ranking read from its month rows (catalogue.wordmonths): the same rows, in
the same order, as ranking the word's matches in the papers, in any date range; months whose
papers changed are logged by the papers' triggers and never read until built again."""

from __future__ import annotations

import datetime as dt
import random
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from catalogue import search, tagging, tasks, wordmonths
from catalogue.filters import PaperFilter
from catalogue.models import Paper, Topic
from catalogue.summary import Reach

# Transactions of their own: a month is built in a repeatable-read transaction.
pytestmark = pytest.mark.django_db(transaction=True)

WORDS = ["model", "graph", "learning", "protein", "vision", "robot", "quantum", "language"]
FILLER = ["the", "a", "study", "of", "with", "for", "and", "new", "results", "data"]
START = dt.date(2023, 1, 1)


def _text(rng: random.Random, words: int) -> str:
    vocabulary = WORDS + FILLER * 2
    return " ".join(rng.choice(vocabulary) for _ in range(words))


@pytest.fixture
def catalogue(settings):
    """300 papers over 18 months (some on the same day, a few undated, a few hidden), of
    words in many papers, in titles and abstracts at random; their month rows built."""
    settings.SUMMARY_CACHE_SECONDS = 0
    rng = random.Random(7)
    papers = [
        Paper(
            arxiv_id=f"2301.{i:05d}",
            title=_text(rng, rng.randint(2, 6)),
            abstract=_text(rng, rng.randint(0, 40)),
            published_on=None if i % 37 == 0 else START + dt.timedelta(days=rng.randint(0, 540)),
            hidden=i % 41 == 0,
        )
        for i in range(300)
    ]
    Paper.objects.bulk_create(papers)
    common = wordmonths.recount(share=0.05, minimum=5)
    assert common >= len(WORDS)
    assert wordmonths.build_all() > 18
    yield
    wordmonths.forget_common()


def ranking(params: dict, *, months: bool, monkeypatch) -> tuple[list[int], list[str]]:
    """(the relevance ranking's ids, its statements), read from the month rows or not."""
    monkeypatch.setattr(wordmonths, "is_common", lambda lexeme: months)
    paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
    assert paper_filter.is_valid(), paper_filter.errors
    with CaptureQueriesContext(connection) as statements:
        ids = paper_filter.ranking().ids
    return ids, [statement["sql"] for statement in statements]


RANGES = [
    {},
    {"since": "2023-06-15"},
    {"until": "2024-02-10"},
    {"since": "2023-03-31", "until": "2023-09-01"},
    {"since": "2023-05-10", "until": "2023-05-20"},
    {"since": "2024-06-01"},  # past every paper
]


@pytest.mark.parametrize("candidates", [10, 25, 1000])
def test_a_common_word_ranks_the_same_from_its_months(catalogue, settings, monkeypatch, candidates):
    settings.SEARCH_RANK_CANDIDATES = candidates  # 10 and 25: the newest cut, titles past them
    for word in ["model", "graphs", "learned", "Protein"]:
        for dates in RANGES:
            params = {"q": word, "mode": "keyword", **dates}
            expected, ranked = ranking(params, months=False, monkeypatch=monkeypatch)
            found, read = ranking(params, months=True, monkeypatch=monkeypatch)
            assert found == expected, params
            assert any("ts_rank_cd" in sql for sql in ranked)
            assert not any("ts_rank_cd" in sql for sql in read)  # ranked when built
            assert any("catalogue_wordmonth" in sql for sql in read)


def test_the_rows_match_the_papers_ranks_exactly(catalogue, settings):
    """Ranks equal to the last bit, so ties break the same way: each stored rank is the
    rank a search computes."""
    settings.SEARCH_RANK_CANDIDATES = 1000
    rows = wordmonths.ranked_rows("model", None, None, 1000, titles=True)
    papers = Paper.objects.visible().search("model").values_list("pk", "rank")
    assert sorted(rows) == sorted(papers)


def test_hybrid_and_api_searches_read_the_months_too(catalogue, settings, client):
    settings.SEARCH_RANK_CANDIDATES = 10
    with CaptureQueriesContext(connection) as statements:
        assert client.get("/", {"q": "vision"}).status_code == 200
        assert client.get("/api/papers", {"q": "vision", "since": "2023-04-01"}).status_code == 200
    assert sum("catalogue_wordmonth" in s["sql"] for s in statements.captured_queries) >= 2


@pytest.mark.parametrize("params", [{}, {"since": "2023-04-01"}, {"q": "the"}, {"sort": "upvotes"}])
def test_pages_without_words_ask_nothing_of_the_months(catalogue, client, params):
    with CaptureQueriesContext(connection) as statements:
        assert client.get("/", params).status_code == 200
    assert not any("catalogue_wordmonth" in s["sql"] for s in statements.captured_queries)


@pytest.mark.parametrize(
    "params",
    [
        {"q": "model graph"},  # two words, where no summary says where their newest lie
        {"q": '"model"'},  # a phrase
        {"q": "title:model"},
        {"q": "model", "min_upvotes": "1"},
        {"q": "model", "has_code": "on"},
        {"q": "model", "author": "Smith"},
        {"q": "model -graph"},
        {"q": "model OR graph"},
    ],
)
def test_other_searches_rank_from_the_papers(catalogue, settings, monkeypatch, params):
    settings.SEARCH_RANK_CANDIDATES = 10
    _, read = ranking({**params, "mode": "keyword"}, months=True, monkeypatch=monkeypatch)
    assert not any("catalogue_wordmonth" in sql for sql in read)


def test_a_topic_filter_ranks_from_the_papers(catalogue, settings, monkeypatch):
    settings.SEARCH_RANK_CANDIDATES = 10
    topic = Topic.objects.create(slug="ml", name="ML", query="model")
    _, read = ranking({"q": "model", "topic": [topic.slug]}, months=True, monkeypatch=monkeypatch)
    assert not any("catalogue_wordmonth" in sql for sql in read)


# --- several words --------------------------------------------------------------------------


def ranking_reaching(params: dict, since: dt.date, *, months: bool, monkeypatch):
    """(the relevance ranking's ids, its statements) where the summary says the newest
    candidates lie from ``since`` on (``Summary.reach``; right or wrong, only the cost may
    differ), read from the words' month rows or not."""
    monkeypatch.setattr(wordmonths, "is_common", lambda lexeme: months)
    paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
    assert paper_filter.is_valid(), paper_filter.errors
    with CaptureQueriesContext(connection) as statements:
        ids = paper_filter.ranking(reach=Reach(walk=0, since=since)).ids
    return ids, [statement["sql"] for statement in statements]


@pytest.mark.parametrize("candidates", [10, 25, 1000])
def test_plain_words_rank_the_same_from_their_months(catalogue, settings, monkeypatch, candidates):
    settings.SEARCH_RANK_CANDIDATES = candidates  # 10 and 25: the newest cut, titles past them
    for query in ["model graph", "graphs learned Model", "protein the vision"]:
        for dates in RANGES:
            # The whole range, a month in it, and past every paper (all read the second time).
            for since in [dt.date(2022, 1, 1), dt.date(2023, 10, 1), dt.date(2025, 1, 1)]:
                params = {"q": query, "mode": "keyword", **dates}
                expected, ranked = ranking_reaching(
                    params, since, months=False, monkeypatch=monkeypatch
                )
                found, read = ranking_reaching(params, since, months=True, monkeypatch=monkeypatch)
                assert found == expected, (params, since)
                assert not any("catalogue_wordmonth" in sql for sql in ranked)
                assert any("catalogue_wordmonth" in sql for sql in read)
                # The candidates by id, never found by the words' condition.
                assert not any("@@" in sql and "ts_rank_cd" not in sql for sql in read)
    assert len(expected) > 0 or dates == RANGES[-1]


def test_several_words_newest_are_the_papers_newest_with_them_all(catalogue):
    visible = Paper.objects.visible()
    newest = visible.search("model graph").newest_first().values_list("pk", flat=True)
    since = dt.date(2024, 1, 1)
    assert wordmonths.newest_with_all(("model", "graph"), None, None, 7, since=since) == list(
        newest[:7]
    )
    bounded = newest.filter(published_on__range=(dt.date(2023, 3, 12), dt.date(2023, 9, 3)))
    assert wordmonths.newest_with_all(
        ("model", "graph"), dt.date(2023, 3, 12), dt.date(2023, 9, 3), 1000, since=since
    ) == list(bounded)
    assert wordmonths.newest_with_all(("model", "absent"), None, None, 5, since=since) is None


def test_a_changed_month_is_not_read_for_several_words(catalogue, settings, monkeypatch):
    settings.SEARCH_RANK_CANDIDATES = 10
    new = Paper.objects.create(
        arxiv_id="2401.99998", title="graph model", published_on=dt.date(2024, 7, 1)
    )
    since = dt.date(2024, 1, 1)
    assert wordmonths.newest_with_all(("model", "graph"), None, None, 3, since=since) is None
    params = {"q": "model graph", "mode": "keyword"}
    ids, read = ranking_reaching(params, since, months=True, monkeypatch=monkeypatch)
    expected, _ = ranking_reaching(params, since, months=False, monkeypatch=monkeypatch)
    assert ids == expected and new.pk in ids
    wordmonths.build_all()
    monkeypatch.setattr(wordmonths, "is_common", lambda lexeme: True)
    assert wordmonths.newest_with_all(("model", "graph"), None, None, 1, since=since) == [new.pk]


def test_without_knowing_where_the_newest_lie_the_papers_are_read(catalogue, monkeypatch):
    """No reach (no summary): every month of the range would be read, more than the papers'
    way reads for common words."""
    paper_filter = PaperFilter({"q": "model graph"}, queryset=Paper.objects.visible())
    assert paper_filter.is_valid()
    with CaptureQueriesContext(connection) as statements:
        paper_filter.ranking()
    assert not any("catalogue_wordmonth" in s["sql"] for s in statements.captured_queries)


def test_an_empty_array_is_read_as_no_ids():
    with connection.cursor() as cursor:
        cursor.execute("SELECT array_send('{}'::integer[]), array_send('{3,-1,70000}'::integer[])")
        empty, some = cursor.fetchone()
    assert wordmonths._ids_of(empty).tolist() == []
    assert wordmonths._ids_of(some).tolist() == [3, -1, 70000]


@pytest.mark.parametrize(
    ("query", "lexemes"),
    [
        ("model graph", ("model", "graph")),
        ("Models the graphs", ("model", "graph")),  # a stop word requires nothing
        ("model graph models", ("model", "graph")),
        ("model", ("model",)),
        ("model OR graph", None),
        ('"model graph"', None),
        ("model -graph", None),
        ("title:model graph", None),
        ("author:smith model", None),
        ("gpt-4 model", None),
        ("the", None),
    ],
)
def test_plain_words_are_read_from_their_months(query, lexemes):
    assert wordmonths.plain_lexemes(search.parse(query)) == lexemes


# --- the summary ----------------------------------------------------------------------------


def summary_and_page(params: dict, months: bool, monkeypatch):
    """(the list page's summary, its first page's ids, its statements), from the month rows
    or not."""
    monkeypatch.setattr(wordmonths, "is_common", lambda lexeme: months)
    paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
    assert paper_filter.is_valid(), paper_filter.errors
    with CaptureQueriesContext(connection) as statements:
        summary, results = paper_filter.summary_and_results()
        page = [paper.pk for paper in results[:25]]
    return summary, page, [statement["sql"] for statement in statements]


@pytest.fixture
def every_match_read(settings):
    """Summaries from the sample's pass, which reads every match (a sample too small to
    estimate from), as a large catalogue's few matches are summarised."""
    settings.SUMMARY_EXACT_BELOW = 1
    settings.SUMMARY_MIN_SAMPLE_HITS = 10**6
    settings.SEARCH_RANK_CANDIDATES = 25
    for slug, query in (("ml", "learning"), ("bio", "protein")):
        tagging.retag(Topic.objects.create(slug=slug, name=slug.upper(), query=query))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_paper")  # its size: what decides to sample


@pytest.mark.parametrize("sort", ["relevance", "newest", "upvotes"])
def test_a_common_word_is_summarised_the_same_from_its_months(
    catalogue, every_match_read, monkeypatch, sort
):
    for word in ["model", "learned", "Protein"]:
        for dates in RANGES:
            params = {"q": word, "mode": "keyword", "sort": sort, **dates}
            expected, expected_page, _ = summary_and_page(params, False, monkeypatch)
            found, page, read = summary_and_page(params, True, monkeypatch)
            assert found == expected, params
            assert found.match_ids == expected.match_ids
            assert found.match_ranks == expected.match_ranks
            assert page == expected_page
            assert any("catalogue_wordmonth" in sql for sql in read)
            assert not any("@@" in sql for sql in read)  # no paper is tested for the word


def test_more_matches_than_the_sample_counts_are_summarised_from_the_sample(
    catalogue, every_match_read, settings, monkeypatch
):
    settings.SUMMARY_MIN_SAMPLE_HITS = 1  # 50 matches at most from the months
    params = {"q": "model", "mode": "keyword"}
    expected, expected_page, _ = summary_and_page(params, False, monkeypatch)
    found, page, read = summary_and_page(params, True, monkeypatch)
    assert not found.exact and found == expected
    assert page == expected_page
    # The ranking still from the months: their candidates read, the papers' not.
    assert any("catalogue_wordmonth" in sql and "OVER newest" in sql for sql in read)
    assert sum("ts_rank_cd" in sql for sql in read) == 1  # the summary's (its unrun branch)


# --- the newest matches (feeds) ----------------------------------------------------------


def newest(params: dict, limit: int, months: bool, monkeypatch) -> tuple[list[int], list[str]]:
    """(the ids of a search's ``limit`` newest matches, as its feed lists them; its
    statements), read from the month rows or not."""
    monkeypatch.setattr(wordmonths, "is_common", lambda lexeme: months)
    paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
    assert paper_filter.is_valid(), paper_filter.errors
    with CaptureQueriesContext(connection) as statements:
        ids = [paper.pk for paper in paper_filter.newest(limit)]
    return ids, [statement["sql"] for statement in statements]


@pytest.mark.parametrize("limit", [1, 7, 50, 1000])
def test_a_common_words_newest_matches_are_read_from_its_months(catalogue, monkeypatch, limit):
    for word in ["model", "graphs", "Protein"]:
        for dates in RANGES:
            params = {"q": word, "mode": "keyword", **dates}
            expected, found_in_papers = newest(params, limit, False, monkeypatch)
            ids, read = newest(params, limit, True, monkeypatch)
            assert ids == expected, params
            assert any("@@" in sql for sql in found_in_papers)
            assert not any("@@" in sql for sql in read)  # only loaded by id
            assert any("catalogue_wordmonth" in sql for sql in read)
    everywhere, _ = newest({"q": "protein", "mode": "keyword"}, limit, True, monkeypatch)
    assert len(everywhere) == min(limit, Paper.objects.visible().search("protein").count())


def test_a_hybrid_feed_lists_the_same_from_the_months(catalogue, client, monkeypatch):
    for dates in [{}, {"since": "2023-05-10", "until": "2023-09-20"}]:
        pages = []
        for months in (False, True):
            monkeypatch.setattr(wordmonths, "is_common", lambda lexeme, months=months: months)
            with CaptureQueriesContext(connection) as statements:
                response = client.get("/feed/", {"q": "vision", **dates})
            assert response.status_code == 200
            read = any("catalogue_wordmonth" in s["sql"] for s in statements.captured_queries)
            assert read == months
            pages.append(response.content)
        assert pages[0] == pages[1] and pages[0].count(b"<entry>") > 5


def test_a_changed_month_is_not_read_for_the_newest_either(catalogue, monkeypatch):
    new = Paper.objects.create(
        arxiv_id="2401.99999", title="model", published_on=dt.date(2024, 7, 1)
    )
    ids, read = newest({"q": "model", "mode": "keyword"}, 3, True, monkeypatch)
    assert ids[0] == new.pk and any("@@" in sql for sql in read)
    assert wordmonths.newest_ids("model", None, None, 3) is None
    wordmonths.build_all()
    ids, read = newest({"q": "model", "mode": "keyword"}, 3, True, monkeypatch)
    assert ids[0] == new.pk and not any("@@" in sql for sql in read)


@pytest.mark.parametrize("params", [{"q": "model graph"}, {"q": "model", "has_code": "on"}])
def test_other_feeds_find_their_newest_in_the_papers(catalogue, monkeypatch, params):
    _, read = newest({**params, "mode": "keyword"}, 10, True, monkeypatch)
    assert not any("catalogue_wordmonth" in sql for sql in read)


# --- months changed since they were built ---------------------------------------------------


def changed_months() -> set[dt.date]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT month FROM catalogue_wordmonthchange")
        return {row[0] for row in cursor.fetchall()}


def test_every_change_to_a_paper_logs_its_months(catalogue):
    assert changed_months() == set()
    paper = Paper.objects.create(
        arxiv_id="2401.99999", title="model", published_on=dt.date(2023, 4, 2)
    )
    assert changed_months() == {dt.date(2023, 4, 1)}
    wordmonths.build_all()
    Paper.objects.filter(pk=paper.pk).update(published_on=dt.date(2023, 7, 9))
    assert changed_months() == {dt.date(2023, 4, 1), dt.date(2023, 7, 1)}
    wordmonths.build_all()
    Paper.objects.filter(pk=paper.pk).update(abstract="graph")  # its vector changes
    assert changed_months() == {dt.date(2023, 7, 1)}
    wordmonths.build_all()
    Paper.objects.filter(pk=paper.pk).update(hidden=True)
    assert changed_months() == {dt.date(2023, 7, 1)}
    wordmonths.build_all()
    Paper.objects.filter(pk=paper.pk).update(upvotes=5)  # nothing the rows hold
    assert changed_months() == set()
    Paper.objects.filter(pk=paper.pk).delete()
    assert changed_months() == {dt.date(2023, 7, 1)}
    Paper.objects.create(arxiv_id="2401.99998", title="model")  # undated
    assert wordmonths.UNDATED in changed_months()


def test_a_changed_month_is_not_read_until_built_again(catalogue, settings, monkeypatch):
    settings.SEARCH_RANK_CANDIDATES = 10
    new = Paper.objects.create(
        arxiv_id="2401.99999",
        title="model model model",
        abstract="model",
        published_on=dt.date(2024, 6, 20),  # the newest paper, and the most relevant
    )
    assert wordmonths.ranked_rows("model", dt.date(2024, 6, 1), None, 10, titles=True) is None
    assert wordmonths.ranked_rows("model", None, dt.date(2024, 5, 31), 10, titles=True)
    ids, read = ranking({"q": "model"}, months=True, monkeypatch=monkeypatch)
    assert ids[0] == new.pk  # found in the papers
    assert any("ts_rank_cd" in sql for sql in read)
    wordmonths.build_all()
    ids, read = ranking({"q": "model"}, months=True, monkeypatch=monkeypatch)
    assert ids[0] == new.pk
    assert not any("ts_rank_cd" in sql for sql in read)


def test_a_change_during_a_build_leaves_the_month_to_build_again(catalogue):
    """The build reads the papers in the snapshot in which it deletes the month's log:
    a paper changed after that snapshot is logged again, not lost."""
    Paper.objects.create(arxiv_id="2401.99990", title="model", published_on=dt.date(2023, 8, 3))

    def write_elsewhere():  # another thread: another connection, committed at once
        Paper.objects.create(arxiv_id="2401.99991", title="model", published_on=dt.date(2023, 8, 4))
        connections.close_all()

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("SELECT count(*) FROM catalogue_wordmonthchange")  # the snapshot
        writer = threading.Thread(target=write_elsewhere)
        writer.start()
        writer.join()
        wordmonths._build(cursor, dt.date(2023, 8, 1))
    assert changed_months() == {dt.date(2023, 8, 1)}  # the writer's entry is left
    wordmonths.build_all()
    rows = dict(wordmonths.ranked_rows("model", dt.date(2023, 8, 1), None, 1000, titles=False))
    assert Paper.objects.get(arxiv_id="2401.99991").pk in rows


# --- what may be read ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "lexeme"),
    [
        ("model", "model"),
        ("Models", "model"),
        ("learned", "learn"),
        ("gpt-4", None),  # several lexemes
        ("title:model", None),
        ('"model"', None),
        ("-model", None),
        ("model graph", None),
        ("model OR graph", None),
        ("author:smith", None),
        ("the", None),  # a stop word: nothing to search
    ],
)
def test_a_single_plain_word_is_read_from_its_months(query, lexeme):
    assert wordmonths.single_lexeme(search.parse(query)) == lexeme


def test_date_bounds_are_read_from_date_filters_alone():
    visible = Paper.objects.visible()
    day = dt.date(2024, 3, 5)
    assert wordmonths.date_bounds(visible) == (None, None)
    assert wordmonths.date_bounds(visible.filter(published_on__gte=day)) == (day, None)
    bounded = visible.filter(published_on__gte=day, published_on__lte=dt.date(2024, 4, 1))
    assert wordmonths.date_bounds(bounded) == (day, dt.date(2024, 4, 1))
    narrowed = bounded.filter(published_on__gte=dt.date(2024, 3, 20))
    assert wordmonths.date_bounds(narrowed) == (dt.date(2024, 3, 20), dt.date(2024, 4, 1))
    assert wordmonths.date_bounds(Paper.objects.all()) is None  # hidden papers too
    assert wordmonths.date_bounds(visible.filter(upvotes__gte=1)) is None
    assert wordmonths.date_bounds(visible.exclude(code_url="")) is None


def test_a_small_catalogue_counts_no_word_common(settings):
    Paper.objects.create(arxiv_id="2401.00001", title="model")
    assert not wordmonths.needs_recount()
    assert wordmonths.needs_recount(min_papers=0)


def test_a_catalogue_loaded_but_not_yet_analysed_is_counted(monkeypatch):
    """A bulk load's task runs before autovacuum analyses the papers: reltuples still says
    0 then, and the words were never counted until the next ingest (seen: the 100,000-paper
    benchmark built no month)."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_paper")  # empty: reltuples 0, as before a load
    rng = random.Random(5)
    Paper.objects.bulk_create(
        Paper(arxiv_id=f"2303.{i:05d}", title=_text(rng, 4), published_on=START) for i in range(60)
    )
    monkeypatch.setattr(wordmonths, "MIN_PAPERS", 50)
    monkeypatch.setattr(wordmonths, "COMMON_MIN", 10)
    assert wordmonths.needs_recount()
    assert not wordmonths.needs_recount(min_papers=1_000_000)  # counted up to it: 60
    assert tasks.build_word_months() == 1


def test_a_truncate_of_the_papers_takes_every_row_with_it(catalogue):
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE catalogue_paper CASCADE")
        cursor.execute(
            "SELECT (SELECT count(*) FROM catalogue_wordmonth),"
            " (SELECT count(*) FROM catalogue_commonword)"
        )
        assert cursor.fetchone() == (0, 0)


def test_the_command_counts_and_builds(catalogue):
    Paper.objects.create(arxiv_id="2401.99999", title="model", published_on=dt.date(2023, 4, 2))
    out = StringIO()
    call_command("build_word_months", "--no-progress", stdout=out)
    assert out.getvalue() == "built 1 months\n"
    assert changed_months() == set()
    call_command("build_word_months", "--no-progress", "--recount", stdout=out)
    assert "common words" in out.getvalue() and changed_months() == set()


def test_the_task_counts_a_grown_catalogue_and_builds_its_months(monkeypatch):
    rng = random.Random(3)
    Paper.objects.bulk_create(
        Paper(arxiv_id=f"2302.{i:05d}", title=_text(rng, 4), published_on=START) for i in range(60)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_paper")  # its size, as the task reads it
    assert tasks.build_word_months() == 0  # too small: nothing counted
    monkeypatch.setattr(wordmonths, "MIN_PAPERS", 50)
    monkeypatch.setattr(wordmonths, "COMMON_MIN", 10)
    assert tasks.build_word_months() == 1  # counted, then its one month built
    assert wordmonths.ranked_rows("model", None, None, 5, titles=False)
    assert tasks.build_word_months() == 0  # nothing changed since
