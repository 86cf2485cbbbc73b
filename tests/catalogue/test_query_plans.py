"""The plans PostgreSQL chooses for a page's main statements, on a catalogue large enough for
the planner to prefer an index to reading everything: a missing index or a query written so
that none applies shows here as a Sort node or a scan of every paper, long before it shows
as seconds at a million papers. (The plans of browsing and sorting, on a catalogue built once
for all of them: test_page_plans.py.)"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
from urllib.parse import urlencode

import psycopg
import pytest
from django.db import connection, transaction
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from catalogue import models, search, summary
from catalogue.dburl import url_from_settings
from catalogue.filters import PaperFilter
from catalogue.models import Paper

pytestmark = pytest.mark.django_db

PAPERS = 3000
START = dt.date(2015, 1, 1)


def _without_earlier_tests_dead_rows():
    """Earlier tests' papers, rolled back, leave dead rows whose pages ANALYZE counts: the
    planner then prices reading the table higher, and whether a plan close to its alternative
    (a deep page of many matches) tipped over depended on the tests before it and on whether
    autovacuum came by. VACUUM (from another connection: it cannot run in the test's
    transaction) removes them."""
    with psycopg.connect(url_from_settings(connection.settings_dict), autocommit=True) as other:
        other.execute("VACUUM catalogue_paper")


# An abstract of a real paper's length (~1,000 characters): the table's size in pages is what
# the planner weighs an index against reading it all, so one-line abstracts made deep pages
# look cheaper sorted.
ABSTRACT = "We study models of language and how they attend to long contexts. " * 15


def analysed(papers) -> None:
    """Create ``papers`` in a table without earlier tests' dead rows, with fresh statistics."""
    _without_earlier_tests_dead_rows()
    Paper.objects.bulk_create(papers)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_paper")


@pytest.fixture(autouse=True)
def _fresh_word_statistics(monkeypatch):
    """Each test reads the word statistics of its own catalogue: the process keeps them for
    minutes (``search._lexeme_stats``), and an earlier test's catalogue, where "language" is
    in every paper, would decide how a later one is read."""
    monkeypatch.setattr(search, "_stats", {})


@contextlib.contextmanager
def built_once(django_db_blocker):
    """A catalogue built once for several tests (a class's or a module's), in a transaction
    each test runs in a savepoint of (Django's ``setUpTestData`` pattern), rolled back after
    the last: uncommitted as when each test built its own, so its ANALYZE's statistics go with
    the rollback, autovacuum does not come by meanwhile, and the next catalogue's version
    (``summary.catalogue_state``: its papers' ``updated_at``, the transaction's time) is
    another. Built for each test, the 3,000-paper catalogues cost ~2 s each."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def title_neighbours(monkeypatch):
    """A paper and 80 others sharing two of its title words, 40 sharing one."""
    me = Paper.objects.create(arxiv_id="2501.00001", title="Decoupled sparse attention kernels")
    Paper.objects.bulk_create(
        [Paper(arxiv_id=f"2502.{i:05d}", title=f"Sparse attention study {i}") for i in range(80)]
        + [Paper(arxiv_id=f"2503.{i:05d}", title=f"Kernels survey {i}") for i in range(40)]
    )
    monkeypatch.setattr(models, "SIMILAR_CANDIDATES", (10, 4))
    return me


def test_similar_papers_by_title_words_rank_a_bounded_number_of_candidates(title_neighbours):
    """Ranking every paper that shares a word with a title costs seconds at scale: at most
    SIMILAR_CANDIDATES papers of each kind are read and ranked."""
    similar = Paper.objects.visible().similar_to(title_neighbours)
    text = similar.explain(analyze=True)
    ranked = [int(n) for n in re.findall(r"Append .*?actual time=\S+ rows=(\d+)", text)]
    assert ranked and ranked[0] <= 14, text
    titles = [p.title for p in similar]
    assert len(titles) == 5
    assert all(t.startswith("Sparse attention") for t in titles)  # two shared words first


def _language_in_every_abstract(in_titles_every: int) -> None:
    """3,000 papers, a few a day, each with "language" in its abstract, one in
    ``in_titles_every`` with it in their title too; fresh statistics."""
    analysed(
        Paper(
            arxiv_id=f"2401.{i:05d}",
            title=f"Paper {i} on {'language' if i % in_titles_every == 0 else 'attention'}",
            abstract=ABSTRACT,
            published_on=START + dt.timedelta(days=i // 3),
        )
        for i in range(PAPERS)
    )


@pytest.fixture(scope="class")
def word_in_every_abstract_and_few_titles(django_db_setup, django_db_blocker):
    """Six titles with the word, one in five hundred (built once for the class)."""
    with built_once(django_db_blocker):
        _language_in_every_abstract(500)
        yield


def _walked_pools(settings, candidates: int = 100):
    """The candidate pools of a keyword search for "language", a word in every paper: more
    matches than candidates, so many that the newest are found by walking the date index."""
    settings.SEARCH_RANK_CANDIDATES = candidates
    assert summary.walks_date_index(PAPERS)
    search = PaperFilter({"q": "language", "mode": "keyword"}, queryset=Paper.objects.visible())
    return search._keyword_ranked(PAPERS)


class TestAWordInEveryAbstractAndFewTitles:
    """ "language" in every abstract and one title in 500 (one catalogue for the class)."""

    def test_a_walked_ranking_reads_only_its_newest_matches_by_walking_the_date_index(
        self, word_in_every_abstract_and_few_titles, settings
    ):
        """The title pool is read from the title index: under the walk's planner settings (no
        bitmap scans, and a GIN index is read by nothing else) it walked the date index too,
        testing papers until enough titles matched (96 ms instead of 3 at 100,000 papers)."""
        _, pools = _walked_pools(settings)
        newest, titles = _explained_walk(pools)
        assert "Index Scan using paper_published_idx" in newest, newest
        assert "paper_title_gin" in titles and "paper_published_idx" not in titles, titles

    def test_a_title_pool_of_few_matches_is_read_from_the_title_index(
        self, word_in_every_abstract_and_few_titles, settings
    ):
        _, pools = _walked_pools(settings)
        assert summary.estimated_rows(pools[1]) < 20
        (*_, titles_off) = summary.walk_statements(*pools)[1]
        assert titles_off == _READ_SETTINGS

    def test_a_title_pool_beyond_the_newest_matches_is_read_after_them(
        self, word_in_every_abstract_and_few_titles, settings
    ):
        """None of the 100 newest matches has the word in its title: the title pool is read,
        from the title index, in a second statement (the first says how many it holds)."""
        ranked, pools = _walked_pools(settings)
        with CaptureQueriesContext(connection) as statements:
            summary.cached_ranking(ranked, PAPERS, lambda rows: rows, pools=pools)
        newest, titles = _ranking_reads(statements)
        assert "LIMIT 100" in newest and "ts_filter" not in newest, newest
        assert "LIMIT 10;" in titles and "ts_filter" in titles, titles

    def test_a_walked_ranking_read_in_parts_is_the_ranking_of_their_union(
        self, word_in_every_abstract_and_few_titles, settings
    ):
        ranked, pools = _walked_pools(settings)
        union = list(ranked.values_list("pk", "rank"))
        walked = summary.cached_ranking(ranked, PAPERS, lambda rows: rows, pools=pools)
        assert [pk for pk, _ in walked] == [pk for pk, _ in union]
        assert [rank for _, rank in walked] == pytest.approx([rank for _, rank in union])
        # The six older papers named after the query are in it, through the title pool.
        newest = set(pools[0].values_list("pk", flat=True))
        titled = Paper.objects.filter(title__contains="language").values_list("pk", flat=True)
        assert len(newest) == 100 and set(titled) - newest == set(titled)
        assert {pk for pk, _ in walked} == newest | set(titled)


def _ranking_reads(statements: CaptureQueriesContext) -> list[str]:
    """The statements that read ranked rows (not the plans asked for)."""
    sql = [query["sql"] for query in statements.captured_queries]
    return [s for s in sql if "ts_rank_cd" in s and not s.startswith("EXPLAIN")]


@pytest.fixture(scope="class")
def word_in_every_abstract_and_many_titles(django_db_setup, django_db_blocker):
    """300 titles with the word, one in ten (PostgreSQL would rather read them all from the
    title index); built once for the class."""
    with built_once(django_db_blocker):
        _language_in_every_abstract(10)
        yield


def _explained_walk(pools) -> list[str]:
    return _explained(summary.walk_statements(*pools))


def _explained(statements) -> list[str]:
    """The plan of each (compiler, sql, params, planner settings off) statement."""
    explained = [("EXPLAIN " + sql, params, off) for _, sql, params, off in statements]
    return [
        "\n".join(line for (line,) in rows) for rows in summary._fetch_each("default", explained)
    ]


class TestAWordInEveryAbstractAndManyTitles:
    """ "language" in every abstract and one title in ten (one catalogue for the class)."""

    def test_a_title_pool_of_many_matches_walks_the_date_index_too(
        self, word_in_every_abstract_and_many_titles, settings
    ):
        """300 titles with the word: their 100 newest come from walking the date index (~1,000
        papers read), under the walk's settings, not from reading every title match to sort them
        by date ("task" in 18,000 titles of a million: 150 ms, walking 15). (At this size
        PostgreSQL walks of its own accord; at a million it did not.)"""
        ranked, pools = _walked_pools(settings, candidates=1000)
        assert summary.estimated_rows(pools[1]) > 173  # walking pays: 173² x 10 > 100 x 3,000
        (*_, newest_off), (*_, titles_off) = summary.walk_statements(*pools)
        assert titles_off == newest_off == ("enable_bitmapscan", "enable_seqscan")
        assert "Index Scan using paper_published_idx" in _explained_walk(pools)[1]
        union = list(ranked.values_list("pk", "rank"))
        walked = summary.cached_ranking(ranked, PAPERS, lambda rows: rows, pools=pools)
        assert [pk for pk, _ in walked] == [pk for pk, _ in union]

    def test_a_title_pool_the_newest_matches_hold_is_not_read(
        self, word_in_every_abstract_and_many_titles, settings
    ):
        """The 1,000 newest matches, one in ten named after the query, hold the 100 newest
        title matches: the title pool adds nothing and is not read (its statement cost 59 ms
        for "distillation" in six years of a million papers, where 510 of the 2,000 newest
        matches held the word in their title). The ranking is the union's."""
        ranked, pools = _walked_pools(settings, candidates=1000)
        with CaptureQueriesContext(connection) as statements:
            walked = summary.cached_ranking(ranked, PAPERS, lambda rows: rows, pools=pools)
        (read,) = _ranking_reads(statements)
        assert "LIMIT 1000" in read and "LIMIT 100;" not in read, read
        union = list(ranked.values_list("pk", "rank"))
        assert [pk for pk, _ in walked] == [pk for pk, _ in union] and len(walked) == 1000
        assert [rank for _, rank in walked] == pytest.approx([rank for _, rank in union])

    def test_a_walked_title_pool_tests_title_words_by_weight_and_finds_the_same_papers(
        self, word_in_every_abstract_and_many_titles, settings
    ):
        """Walked, a title pool tests each paper's title words by their weight in the whole
        vector ('languag':A): ts_filter made a copy of every walked paper's title words first
        (35-55 % of a walk's time at 100,000 papers, the same papers found)."""
        _, pools = _walked_pools(settings, candidates=1000)
        _, (_, titles_sql, titles_params, _) = summary.walk_statements(*pools)
        assert "ts_filter" not in titles_sql and "(('languag':A))" in titles_params
        walked = summary._read_apart([summary._statement(pools[1].walked(), summary._WALK)])[0]
        indexed = summary._read_apart([summary._statement(pools[1], summary._BITMAPS)])[0]
        assert len(walked) == 100 and walked == indexed

    def test_the_title_pool_of_plain_words_tests_only_the_title(
        self, word_in_every_abstract_and_many_titles, settings
    ):
        """A title with "language" is a match: the pool does not test the whole vector too, which
        made PostgreSQL intersect the word's whole index entry with the title's, and estimate
        the pool as the title's share times the word's (3,000 for 9,400 titles in a date range
        at a million papers, so it was not walked). Its rows are the same."""
        settings.SEARCH_RANK_CANDIDATES = 100
        params = {"q": "language", "mode": "keyword", "since": "2015-06-01"}
        sql = _title_pool_sql(params)
        assert sql.count("@@") == 1 and "ts_filter" in sql, sql
        paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
        ranked, pools = paper_filter._keyword_ranked(PAPERS)
        with_words = paper_filter._searched.alias(title_vector=search.TITLE_VECTOR).filter(
            title_vector=search.RawTsQuery("'languag'")
        )
        expected = list(with_words.newest_first().values_list("pk", flat=True)[:10])
        assert [row["pk"] for row in pools[1]] == expected and len(expected) == 10
        walked = summary.cached_ranking(ranked, PAPERS, lambda rows: rows, pools=pools)
        union = list(ranked.values_list("pk", "rank"))
        assert [pk for pk, _ in walked] == [pk for pk, _ in union]

    def test_the_title_pool_of_an_exclusion_keeps_the_whole_condition(
        self,
        word_in_every_abstract_and_many_titles,
    ):
        sql = _title_pool_sql({"q": "language -zebra", "mode": "keyword"})
        assert sql.count("@@") == 3, sql  # the word, the excluded word, the title

    def test_a_title_pool_of_recent_matches_still_walks(
        self, word_in_every_abstract_and_many_titles, settings
    ):
        """The walk for the 10 newest of 300 titles with the word passes ~100 papers, less
        than reading the 300 title matches."""
        settings.SUMMARY_EXACT_BELOW = 1
        settings.SEARCH_RANK_CANDIDATES = 100
        settings.SAMPLE_CACHE_SECONDS = 60
        assert _title_pool_settings({"q": "language", "mode": "keyword"}) == _WALK_SETTINGS

    @pytest.mark.parametrize("mode", ["keyword", "hybrid"])
    def test_a_common_word_in_a_few_months_is_tested_on_their_papers_not_found_from_its_index(
        self, word_in_every_abstract_and_many_titles, settings, mode
    ):
        """ "language" is in every paper (3,000 index entries); a month holds ~90 papers: testing
        each costs less than reading the word's whole entry and intersecting it with the month's
        (PostgreSQL prices the entry as nearly free). The figures and the ranking are those of
        the index's way."""
        settings.SUMMARY_EXACT_BELOW = 1
        params = {"q": "language", "mode": mode, "since": "2016-03-01", "until": "2016-03-31"}
        paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
        assert paper_filter._tested_in_date_range
        found = summary.summarise(paper_filter.matches)
        with CaptureQueriesContext(connection) as statements:
            ranking = paper_filter.ranking(found.count, found.match_ids, paper_filter._reach(found))
        (ranked,) = [s["sql"] for s in statements.captured_queries if "ts_rank_cd" in s["sql"]]
        assert "coalesce(" in ranked.lower()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + re.sub(r"^(SET LOCAL [^;]*;\s*)+", "", ranked))
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "paper_search_gin" not in plan, plan

        indexed = PaperFilter(params, queryset=Paper.objects.visible())
        indexed._tested_in_date_range = False  # the index's way, for comparison
        assert summary.summarise(indexed.matches) == found and found.count == 93
        assert indexed.ranking(found.count).ids == ranking.ids

    def test_a_common_word_over_most_of_the_catalogue_keeps_its_index(
        self, word_in_every_abstract_and_many_titles
    ):
        params = {"q": "language", "since": "2015-02-01"}
        assert not PaperFilter(params, queryset=Paper.objects.visible())._tested_in_date_range
        assert not PaperFilter({"q": "language"}, Paper.objects.visible())._tested_in_date_range

    def test_a_month_page_s_search_knows_the_month(
        self, word_in_every_abstract_and_many_titles, settings, client
    ):
        """The month's page limits its papers itself, not by since/until: its search is told the
        range, so a common word is tested on the month's papers there too."""
        settings.SUMMARY_EXACT_BELOW = 1
        response = client.get("/papers/month/2016-03/", {"q": "language", "mode": "keyword"})
        assert response.status_code == 200
        paper_filter = response.context["filter"]
        assert paper_filter._published_range() == (dt.date(2016, 3, 1), dt.date(2016, 3, 31))
        assert paper_filter._tested_in_date_range
        assert response.context["summary"].count == 93


def test_matches_by_date_keep_the_undated_last_both_ways():
    found = summary.Summary(
        count=5, exact=True, per_month={dt.date(2024, 1, 1): 3, None: 2}, match_ids=[5, 4, 3, 9, 8]
    )
    assert found.ids_by_date(newest=True) == [5, 4, 3, 9, 8]
    assert found.ids_by_date(newest=False) == [3, 4, 5, 8, 9]
    assert summary.Summary(count=5, exact=True).ids_by_date(newest=True) is None


@pytest.mark.parametrize(
    ("query", "implied"),
    [
        ("language", True),
        ("language models", True),
        ("language OR speech", True),
        ("title:language models", True),
        ('"language models"', False),
        ("language -speech", False),
        ("author:Lovelace language", False),
        ("abstract:language", False),
    ],
)
def test_a_title_with_the_query_implies_a_match_for_plain_words_only(query, implied):
    assert search.titles_imply_match(search.parse(query)) is implied


def _title_pool_sql(params: dict) -> str:
    paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
    _, pools = paper_filter._keyword_ranked(PAPERS)
    return str(pools[1].query)


def _language_where(in_abstract, in_title=lambda i: False) -> None:
    """3,000 papers, three a day, the ``i``-th (oldest first) with "language" in its abstract
    where ``in_abstract(i)`` and in its title where ``in_title(i)``; fresh statistics. Their
    tests read a sample of every paper (``every_paper_sampled``: exact figures from it)."""
    analysed(
        Paper(
            arxiv_id=f"2401.{i:05d}",
            title=f"Paper {i} on {'language' if in_title(i) else 'vision'}",
            abstract="A study of language." if in_abstract(i) else "A study of vision.",
            published_on=START + dt.timedelta(days=i // 3),
        )
        for i in range(PAPERS)
    )


@pytest.fixture
def every_paper_sampled(monkeypatch):
    monkeypatch.setattr(summary, "sample_every", 1)


@pytest.fixture(scope="class")
def word_in_the_oldest_abstracts(django_db_setup, django_db_blocker):
    """ "language" in the abstracts of the 200 oldest papers only."""
    with built_once(django_db_blocker):
        _language_where(lambda i: i < 200)
        yield


@pytest.mark.usefixtures("every_paper_sampled")
class TestAWordInTheOldestAbstracts:
    """ "language" in the 200 oldest abstracts (one catalogue for the class)."""

    def test_the_walk_counts_the_papers_newer_than_the_newest_matches(
        self, word_in_the_oldest_abstracts, settings
    ):
        settings.SUMMARY_EXACT_BELOW = 1
        settings.SAMPLE_CACHE_SECONDS = 60
        found = summary.summarise(PaperFilter({"q": "language"}, Paper.objects.visible()).matches)
        assert found.count == 200
        # The 100 newest matches (papers 100-199: days 33-66) reach back to February 2015: the
        # walk reads every paper from then to the newest, in whole months.
        months = summary.catalogue_months()
        assert summary.catalogue_months() is months  # kept, not read again
        assert found.reach(100).walk == sum(
            n for m, n in months.items() if m >= dt.date(2015, 2, 1)
        )
        assert found.reach(100).walk > 2_800
        assert found.reach(100, newest=dt.date(2015, 3, 15)).walk == sum(
            n for m, n in months.items() if dt.date(2015, 2, 1) <= m <= dt.date(2015, 3, 1)
        )
        assert found.reach(201) is None  # fewer matches than that

    def test_a_ranking_of_old_matches_does_not_walk_the_date_index(
        self, word_in_the_oldest_abstracts, settings
    ):
        """Spread evenly, 200 matches of 3,000 would be met every 15 papers, and the walk for the
        newest 100 would read ~1,500; they are the oldest, and it would read 2,900, more than
        reading each of the 200 would cost (the rule's factor 3)."""
        settings.SUMMARY_EXACT_BELOW = 1
        settings.SEARCH_RANK_CANDIDATES = 100
        settings.SAMPLE_CACHE_SECONDS = 60
        assert summary.walks_date_index(200)  # the even spread's verdict
        paper_filter = PaperFilter({"q": "language", "mode": "keyword"}, Paper.objects.visible())
        found = summary.summarise(paper_filter.matches)
        with CaptureQueriesContext(connection) as statements:
            ranked = paper_filter.results(summary=found)
        assert not [s for s in statements.captured_queries if "enable_bitmapscan" in s["sql"]]
        expected = PaperFilter({"q": "language", "mode": "keyword"}, Paper.objects.visible()).qs
        assert [p.pk for p in ranked[:100]] == [p.pk for p in expected[:100]]


def test_the_walk_rule_weighs_the_papers_read_when_known():
    assert summary.walks_date_index(5_000, reads=14_000)
    assert not summary.walks_date_index(5_000, reads=16_000)
    assert not summary.walks_date_index(10, reads=1)  # fewer matches than candidates


@pytest.fixture(scope="class")
def word_in_every_tenth_abstract(django_db_setup, django_db_blocker):
    """ "language" in every tenth abstract (300 matches, spread evenly), in no title."""
    with built_once(django_db_blocker):
        _language_where(lambda i: i % 10 == 0)
        yield


def _ranked_with_statements(params: dict) -> tuple[list[int], list[str]]:
    paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
    found = summary.summarise(paper_filter.matches)
    with CaptureQueriesContext(connection) as statements:
        ranked = paper_filter.results(summary=found)
    return list(ranked.ids), [s["sql"] for s in statements.captured_queries]


def _since_statements(sql: list[str]) -> list[str]:
    return [s for s in sql if "enable_indexscan = off" in s and 'published_on" >= ' in s]


@pytest.mark.usefixtures("every_paper_sampled")
class TestAWordInEveryTenthAbstract:
    """ "language" in every tenth abstract (one catalogue for the class)."""

    @pytest.mark.parametrize("params", [{}, {"until": "2017-06-30"}])
    def test_a_ranking_reads_its_newest_candidates_since_the_month_they_reach_back_to(
        self, word_in_every_tenth_abstract, settings, params
    ):
        """The 100 newest of 300 matches spread over 3,000 papers: a walk of the date index would
        read ~1,000 papers, reading every match 300; the matches published since the month the
        newest 100 reach back to (with the estimate's margin) cost less than either. The ranking
        is the one every match would give."""
        settings.SUMMARY_EXACT_BELOW = 1
        settings.SEARCH_RANK_CANDIDATES = 100
        settings.SAMPLE_CACHE_SECONDS = 60
        params = {"q": "language", "mode": "keyword", **params}
        ids, sql = _ranked_with_statements(params)
        (since,) = _since_statements(sql)
        assert "enable_seqscan = off" in since and "enable_bitmapscan" not in since
        expected = PaperFilter(params, queryset=Paper.objects.visible()).qs
        assert ids == [p.pk for p in expected] and len(ids) == 100

    def test_a_ranking_whose_estimate_overshot_finds_its_candidates_another_way(
        self, word_in_every_tenth_abstract, settings, monkeypatch
    ):
        """Where fewer matches than the candidates were published since the estimated month,
        the rows read are not the ranking: the candidates are found again (here from every
        match)."""
        settings.SUMMARY_EXACT_BELOW = 1
        settings.SEARCH_RANK_CANDIDATES = 100
        settings.SAMPLE_CACHE_SECONDS = 60
        monkeypatch.setattr(summary, "SINCE_MARGIN", 0.5)  # an estimate twice too high
        params = {"q": "language", "mode": "keyword"}
        found = summary.summarise(PaperFilter(params, Paper.objects.visible()).matches)
        assert not found.exact
        assert summary.reads_since_pays(found.count, found.reach(100))
        ids, sql = _ranked_with_statements(params)
        first, then = [s for s in sql if "ts_rank_cd" in s and not s.startswith("EXPLAIN")]
        assert _since_statements([first]) and not _since_statements([then])
        expected = PaperFilter(params, queryset=Paper.objects.visible()).qs
        assert ids == [p.pk for p in expected] and len(ids) == 100

    def test_a_hybrid_rankings_read_since_a_month_counts_the_matches_by_meaning_on_top(
        self, word_in_every_tenth_abstract, settings, monkeypatch
    ):
        """Exact figures count the papers found by meaning alone among the matches: the month the
        newest candidates reach back to is reached with them on top, so the words' matches read
        since then are enough, and are not found again by walking the date index."""
        settings.SUMMARY_EXACT_BELOW = 1
        settings.SUMMARY_MIN_SAMPLE_HITS = 1_000  # the 300 matches read exactly
        settings.SEARCH_RANK_CANDIDATES = 100
        settings.SAMPLE_CACHE_SECONDS = 60
        without_the_word = Paper.objects.exclude(abstract__contains="language").order_by("-id")
        by_meaning = [(pk, 0.9) for pk in without_the_word.values_list("pk", flat=True)[:9]]
        monkeypatch.setattr(PaperFilter, "_nearest", property(lambda self: by_meaning))
        params = {"q": "language", "mode": "hybrid"}
        found = summary.summarise(PaperFilter(params, Paper.objects.visible()).matches)
        assert found.exact and found.count == 309
        ids, sql = _ranked_with_statements(params)
        # (No title has the word: the title pool is read too, apart, from the title index.)
        ranked = [s for s in sql if "ts_rank_cd" in s and not s.startswith("EXPLAIN")]
        newest = [s for s in ranked if "ts_filter" not in s]
        assert len(newest) == 1 and _since_statements(newest) and len(ranked) == 2
        expected = PaperFilter(params, queryset=Paper.objects.visible()).ranking().ids
        assert ids == expected

    def test_a_searchs_reach_counts_the_entries_of_its_words_index(
        self, word_in_every_tenth_abstract, settings, monkeypatch
    ):
        monkeypatch.setattr(search, "_stats", {})  # this catalogue's, not an earlier test's
        settings.SUMMARY_EXACT_BELOW = 1
        settings.SEARCH_RANK_CANDIDATES = 100
        settings.SAMPLE_CACHE_SECONDS = 60
        paper_filter = PaperFilter(
            {"q": "language", "mode": "keyword", "until": "2016-06-30"},
            queryset=Paper.objects.visible(),
        )
        found = summary.summarise(paper_filter.matches)
        reach = paper_filter._reach(found)
        assert not paper_filter._tested_in_date_range
        assert reach.entries == int(search.index_entries(paper_filter._parsed)) > found.count


def test_the_reach_of_an_estimate_keeps_a_margin_and_of_exact_figures_none():
    months = {dt.date(2024, m, 1): 50 for m in range(1, 13)}
    estimated = summary.Summary(count=600, exact=False, per_month=months)
    exact = summary.Summary(count=600, exact=True, per_month=months)
    # 100 needed: two months of 50; with the margin, 150: three.
    assert exact.reach(100).since == dt.date(2024, 11, 1)
    assert exact.reach(100).found == 100
    assert estimated.reach(100).since == dt.date(2024, 10, 1)
    assert estimated.reach(100).found == 150
    assert estimated.reach(500).since is None and estimated.reach(500).walk is not None
    assert estimated.reach(700) is None


@pytest.mark.parametrize(
    ("matches", "walk", "span", "found", "pays"),
    [
        (32_000, 83_000, 120_000, 3_000, True),  # "probabilities" at a million papers
        (750_000, 10_000, 10_000, 3_000, False),  # a word in most papers: a short walk
        (2_500, 50_000, 60_000, 2_100, False),  # few matches: read them all
        (13_000, 9_850, 12_800, 3_550, False),  # a walk shorter than the range's bitmap
    ],
)
def test_reading_since_a_month_pays_between_a_short_walk_and_few_matches(
    settings, matches, walk, span, found, pays
):
    settings.SEARCH_RANK_CANDIDATES = 2_000
    reach = summary.Reach(walk, since=dt.date(2025, 1, 1), span=span, found=found)
    assert summary.reads_since_pays(matches, reach) is pays
    assert not summary.reads_since_pays(matches, summary.Reach(walk))  # no month known
    assert not summary.reads_since_pays(None, reach)


def test_reading_since_a_month_counts_every_paper_the_words_index_holds(settings):
    """ "challenge" at a million papers: 238,230 papers hold it, 11,000 of them in the date
    range, whose 2,000 newest lie since a month of 22,250 papers (3,000 matches). Read since
    that month, the word's whole bitmap: 68 ms; walked, 13,750 papers: 18 ms."""
    settings.SEARCH_RANK_CANDIDATES = 2_000
    reach = summary.Reach(13_750, since=dt.date(2011, 10, 1), span=22_250, found=3_000)
    assert summary.reads_since_pays(11_000, reach)  # the date range's matches alone
    assert not summary.reads_since_pays(11_000, dataclasses.replace(reach, entries=238_230))


@pytest.fixture(scope="class")
def word_in_the_oldest_titles(django_db_setup, django_db_blocker):
    """ "language" in the titles and abstracts of the 600 oldest papers only."""
    with built_once(django_db_blocker):
        _language_where(lambda i: i < 600, in_title=lambda i: i < 600)
        yield


def _title_pool_settings(params: dict) -> tuple:
    """The title pool's planner settings off, as a ranking from the summary reads it."""
    (*_, titles_off) = _title_pool_statement(params)
    return titles_off


def _title_pool_statement(params: dict) -> tuple:
    """The title pool's (compiler, sql, params, planner settings off), as a ranking from the
    summary reads it."""
    paper_filter = PaperFilter(params, queryset=Paper.objects.visible())
    found = summary.summarise(paper_filter.matches)
    reach = paper_filter._reach(found)
    _, pools = paper_filter._keyword_ranked(found.count, reach)
    _, titles = summary.walk_statements(*pools, matches=found.count, reach=reach)
    return titles


@pytest.mark.usefixtures("every_paper_sampled")
class TestAWordInTheOldestTitles:
    """ "language" in the 600 oldest titles and abstracts (one catalogue for the class)."""

    def test_a_title_pool_whose_matches_are_old_is_not_walked_for(
        self, word_in_the_oldest_titles, settings
    ):
        """600 titles with the word of 3,000 papers: spread evenly, the 10 newest would be met
        within ~50 papers of a walk, and the title pool walks; the months of the matches say the
        walk would pass ~2,400 newer papers first ("spins" at a million papers: 132,000 papers
        walked, 236 ms, against 28 ms from the title index)."""
        settings.SUMMARY_EXACT_BELOW = 1
        settings.SEARCH_RANK_CANDIDATES = 100
        settings.SAMPLE_CACHE_SECONDS = 60
        assert summary._walk_pays(600, 10)  # the even spread's verdict
        params = {"q": "language", "mode": "keyword"}
        assert _title_pool_settings(params) == _READ_SETTINGS
        ids, _ = _ranked_with_statements(params)
        assert ids == [p.pk for p in PaperFilter(params, queryset=Paper.objects.visible()).qs]

    def test_a_title_pool_read_whole_is_read_from_the_title_index(
        self, word_in_the_oldest_titles, settings
    ):
        """Where the rule reads a title pool's every match, PostgreSQL does not walk the date index
        anyway: it prices each paper's title test as free, and here walked for the 10 newest of
        600 titles. At a million papers, "non" since December 2016: the rule read the range's
        4,962 title matches (~20 ms), PostgreSQL walked 46,660 papers for them (102 ms)."""
        settings.SUMMARY_EXACT_BELOW = 1
        settings.SEARCH_RANK_CANDIDATES = 100
        settings.SAMPLE_CACHE_SECONDS = 60
        (plan,) = _explained([_title_pool_statement({"q": "language", "mode": "keyword"})])
        assert "paper_title_gin" in plan and "paper_published_idx" not in plan, plan


_WALK_SETTINGS = ("enable_bitmapscan", "enable_seqscan")
_READ_SETTINGS = ("enable_indexscan", "enable_seqscan")


def test_the_index_entries_a_query_reads(monkeypatch):
    shares = {"languag": 0.5, "model": 0.3, "vision": 0.1}
    stats = search.TitleStats(shares, rare=0.001, titles=10_000)
    monkeypatch.setattr(search, "vector_frequencies", lambda: stats)

    def entries(query: str) -> float:
        return search.index_entries(search.parse(query))

    assert entries("language") == pytest.approx(5_000)
    assert entries("language model") == pytest.approx(3_000)  # the fewest group's
    assert entries("language OR vision") == pytest.approx(6_000)  # each alternative's
    assert entries('"language model"') == pytest.approx(3_000)  # a phrase: its rarest word
    assert entries("language -vision") == pytest.approx(5_000)  # an exclusion reads none
    assert entries("zebra") == pytest.approx(10)  # a word the statistics lack: rare
    assert entries("language author:smith") == 0  # another index: kept


@pytest.mark.parametrize(
    ("params", "published", "expected"),
    [
        ({}, None, None),
        ({"since": "2016-03-05"}, None, (dt.date(2016, 3, 5), None)),
        (
            {},
            (dt.date(2016, 3, 1), dt.date(2016, 3, 31)),
            (dt.date(2016, 3, 1), dt.date(2016, 3, 31)),
        ),
        (
            {"since": "2016-03-05", "until": "2017-01-01"},
            (dt.date(2016, 3, 1), dt.date(2016, 3, 31)),
            (dt.date(2016, 3, 5), dt.date(2016, 3, 31)),
        ),
        ({"period": "week"}, None, (dt.date(2016, 3, 9), dt.date(2016, 3, 15))),
    ],
)
def test_the_range_a_search_is_limited_to(params, published, expected):
    paper_filter = PaperFilter(
        QueryDict(urlencode(params)), today=dt.date(2016, 3, 15), published=published
    )
    assert paper_filter.is_valid()
    assert paper_filter._published_range() == expected
