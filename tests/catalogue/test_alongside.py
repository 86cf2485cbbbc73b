"""A hybrid search finds its neighbours by meaning beside its keyword matches
(catalogue.alongside, ``PaperFilter.summary_and_results``): the same answer as one after the
other, the scan on another thread and connection while the request's own reads the keyword
matches, inline inside a transaction, and the summary of the keyword matches plus the papers
found by meaning alone (``Summary.plus``) equal to the summary of every match."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import os
import sys
import threading
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import numpy as np
import pytest
from django.db import connection, transaction
from django.http import QueryDict
from django.urls import reverse

from catalogue import alongside, hybrid
from catalogue.filters import PaperFilter
from catalogue.models import Paper, PaperTopic, Topic
from catalogue.summary import FACET_TOPICS, Summary, summarise
from tests.catalogue.test_hybrid_search import QUERY, at_cosine, make_paper

CORES_BUSY = alongside.cores_busy


@pytest.fixture(autouse=True)
def _idle_cores(monkeypatch):
    """A quiet host, whatever else the test run keeps busy (``alongside.cores_busy``)."""
    monkeypatch.setattr(alongside, "cores_busy", lambda: False)


# --- Summary.plus ----------------------------------------------------------------------------

MARCH, APRIL = dt.date(2024, 3, 1), dt.date(2024, 4, 1)


def facet(slug: str, n: int) -> dict:
    return {"slug": slug, "name": slug.title(), "n": n}


def test_papers_found_by_meaning_alone_are_added_to_every_figure():
    keyword = Summary(
        count=3, exact=True, per_month={MARCH: 2, None: 1}, topics=[facet("a", 2)], match_ids=[3]
    )
    both = keyword.plus(
        [(7, dt.date(2024, 3, 20)), (8, dt.date(2024, 4, 2)), (9, None)],
        [facet("a", 1), facet("b", 2)],
    )
    assert both == Summary(
        count=6,
        exact=True,
        per_month={MARCH: 3, APRIL: 1, None: 2},
        topics=[facet("a", 3), facet("b", 2)],
    )
    assert both.match_ids is None  # no longer every match's id
    assert keyword.plus([], []) is keyword


def test_an_estimate_plus_exact_papers_keeps_two_significant_digits():
    keyword = Summary(count=12_000, exact=False, per_month={MARCH: 4_800}, topics=[facet("a", 950)])
    both = keyword.plus([(7, dt.date(2024, 3, 2))] * 37, [facet("a", 30)])
    assert (both.count, both.per_month, both.topics) == (12_000, {MARCH: 4_800}, [facet("a", 980)])
    assert not both.exact


def test_a_topic_beyond_a_full_facet_list_is_not_added_with_a_wrong_count():
    """The summary lists its FACET_TOPICS most frequent topics: a topic not among them may
    still hold matches, so its count beside the added papers' alone would be wrong."""
    full = [facet(f"t{i:02d}", 100 - i) for i in range(FACET_TOPICS)]
    keyword = Summary(count=500, exact=True, per_month={MARCH: 500}, topics=full)
    both = keyword.plus([(7, MARCH)], [facet("t00", 1), facet("other", 1)])
    assert [f["slug"] for f in both.topics] == [f["slug"] for f in full]
    assert both.topics[0]["n"] == 101
    short = Summary(count=5, exact=True, per_month={MARCH: 5}, topics=[facet("t00", 5)])
    assert short.plus([(7, MARCH)], [facet("other", 1)]).topics == [
        facet("t00", 5),
        facet("other", 1),
    ]


# --- the search ------------------------------------------------------------------------------


@pytest.fixture
def catalogue():
    """Three papers with the query's words (one near in meaning, one far, one undated without
    an embedding) and two near in meaning without them, in topics; a far paper without the
    words and a hidden near one match nothing."""
    vector = np.array(hybrid.query_vector(QUERY), dtype=np.float32)
    rng = np.random.default_rng(23)
    proteins = Topic.objects.create(name="Proteins", slug="proteins", query="protein")
    other = Topic.objects.create(name="Other", slug="other", query="other")

    def paper(key, title, cosine, published, *topics, **fields):
        found = make_paper(
            key,
            title,
            None if cosine is None else at_cosine(vector, cosine, rng),
            published_on=published,
            **fields,
        )
        for topic in topics:
            PaperTopic.objects.create(paper=found, topic=topic)
        return found

    paper("2403.00001", "Protein folding with graph networks", 0.9, dt.date(2024, 3, 5), proteins)
    paper("2307.00001", "Graph networks for protein folding, a survey", 0.2, dt.date(2023, 7, 1))
    paper("0000.00001", "Protein folding by graph networks revisited", None, None)
    paper("2403.00002", "Structure prediction of amino acid chains", 0.8, dt.date(2024, 3, 20),
          proteins, other)  # fmt: skip
    paper("2201.00001", "Residue contact maps", 0.6, dt.date(2022, 1, 1), other)
    paper("2201.00002", "Sparse matrices", 0.1, dt.date(2022, 1, 2))
    paper("2403.00003", "Hidden twin", 0.9, dt.date(2024, 3, 6), hidden=True)


def searched(**params) -> PaperFilter:
    return PaperFilter(QueryDict(urlencode({"q": QUERY, **params})), Paper.objects.visible())


@pytest.mark.django_db
@pytest.mark.parametrize("large", [False, True], ids=["small catalogue", "every match read"])
def test_the_summary_is_every_match_s(catalogue, settings, large):
    """The keyword matches' summary plus those found by meaning alone equals the summary of
    every match (``matches``: the words or the neighbours), whichever way the catalogue's
    size makes it counted."""
    if large:  # estimated from the sample, which finds too few: every match's id read
        settings.SUMMARY_EXACT_BELOW, settings.SUMMARY_MIN_SAMPLE_HITS = 1, 1_000
    paper_filter = searched()
    summary, results = paper_filter.summary_and_results()
    assert summary == summarise(searched().matches)
    assert (summary.count, summary.exact) == (5, True)
    assert summary.per_month == {
        dt.date(2024, 3, 1): 2,
        dt.date(2023, 7, 1): 1,
        dt.date(2022, 1, 1): 1,
        None: 1,
    }
    assert [(t["slug"], t["n"]) for t in summary.topics] == [("other", 2), ("proteins", 2)]
    first = Paper.objects.get(pk=results[0].pk)
    assert first.title == "Protein folding with graph networks"  # words and meaning


def api_answer(client, **params) -> dict:
    response = client.get(reverse("api-papers"), {"q": QUERY, "page_size": 50, **params})
    assert response.status_code == 200, response.content
    answer = response.json()
    return {
        "count": answer["count"],
        "results": [(paper["title"], paper["matched"]) for paper in answer["results"]],
    }


@pytest.fixture
def scans(monkeypatch):
    """(thread name, backend pid) of each scan for neighbours by meaning."""
    seen, scan = [], hybrid.neighbours

    def recorded(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            seen.append((threading.current_thread().name, cursor.fetchone()[0]))
        return scan(*args, **kwargs)

    monkeypatch.setattr(hybrid, "neighbours", recorded)
    return seen


def request_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_neighbours_are_found_on_another_connection_with_the_same_answer(
    catalogue, client, settings, scans
):
    request_statements = []

    def record(execute, sql, params, many, context):
        request_statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        beside = api_answer(client)
    page = client.get(reverse("paper-list"), {"q": QUERY})
    settings.SEARCH_ALONGSIDE = False
    after = api_answer(client)
    assert beside == after
    assert beside["count"] == 5
    assert [name for name, _ in scans] == ["alongside", "alongside", "MainThread"]
    assert scans[0][1] != request_pid()  # the thread's own connection, kept for the next
    assert scans[1][1] == scans[0][1]
    # Which neighbours lack the words is asked there too, after the scan.
    assert not any("has_words" in sql for sql in request_statements)
    assert any("ts_rank_cd" in sql for sql in request_statements)
    assert page.status_code == 200
    assert page.context["summary"] == summarise(searched().matches)


@contextlib.contextmanager
def scan_held_until(monkeypatch, statement):
    """The neighbours' scan held until the request's connection runs a statement of which
    ``statement(sql)`` is true (10 s at most); yields the list of whether each scan saw it."""
    seen, scan = threading.Event(), hybrid.neighbours
    waited = []

    def held_scan(*args, **kwargs):
        waited.append(seen.wait(timeout=10))
        return scan(*args, **kwargs)

    def watch(execute, sql, params, many, context):
        if statement(sql):
            seen.set()
        return execute(sql, params, many, context)

    monkeypatch.setattr(hybrid, "neighbours", held_scan)
    with connection.execute_wrapper(watch):
        yield waited
    monkeypatch.setattr(hybrid, "neighbours", scan)


@pytest.mark.django_db(transaction=True)
def test_the_keyword_ranking_is_read_while_the_neighbours_are_found(catalogue, monkeypatch):
    """The scan waits until the request's connection has ranked the keyword candidates: had
    the request awaited the neighbours first, the ranking would come only after the wait."""
    with scan_held_until(monkeypatch, lambda sql: "ts_rank_cd" in sql) as waited:
        summary, results = searched().summary_and_results()
        list(results[:10])
    assert waited == [True]
    assert summary.count == 5


@pytest.mark.django_db(transaction=True)
def test_the_candidates_similarities_are_measured_while_the_neighbours_are_found(
    catalogue, monkeypatch, settings
):
    """The scan waits until the request's connection has measured the keyword candidates'
    similarities to the query: had the request awaited the neighbours first, that statement
    would come only after the wait."""

    def similarities(sql: str) -> bool:
        return "vector <=>" in sql and "paper_id = ANY" in sql

    with scan_held_until(monkeypatch, similarities) as waited:
        summary, results = searched().summary_and_results()
        ranked = [paper.pk for paper in results[:10]]
    assert waited == [True]
    settings.SEARCH_ALONGSIDE = False  # the same search, one step after the other
    one_after_the_other = [paper.pk for paper in searched().summary_and_results()[1][:10]]
    assert ranked == one_after_the_other and summary.count == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 50])
def test_the_newest_matches_take_the_neighbours_found_beside_by_date(catalogue, scans, limit):
    """A feed's entries: the newest of the keyword matches and of the papers found by meaning
    alone, in ``newest_first``'s order (the undated last), as one statement over every match
    gives them. Newest first: by meaning (2024-03-20), both, words, by meaning (2022),
    words (undated)."""
    expected = list(searched().matches.newest_first()[:limit])
    scans.clear()
    newest = searched().newest(limit)
    assert [paper.pk for paper in newest] == [paper.pk for paper in expected]
    assert [paper.title for paper in newest] == [paper.title for paper in expected]
    assert [name for name, _ in scans] == ["alongside"]
    assert len(expected) == min(limit, 5)


@pytest.mark.django_db(transaction=True)
def test_a_feed_of_a_hybrid_search_finds_its_neighbours_beside_its_newest_words(
    catalogue, client, settings, scans
):
    titles = feed_titles(client)
    settings.SEARCH_ALONGSIDE = False
    assert feed_titles(client) == titles
    assert [name for name, _ in scans] == ["alongside", "MainThread"]
    assert titles == [
        "Structure prediction of amino acid chains",
        "Protein folding with graph networks",
        "Graph networks for protein folding, a survey",
        "Residue contact maps",
        "Protein folding by graph networks revisited",
    ]


def feed_titles(client) -> list[str]:
    response = client.get(reverse("feed"), {"q": QUERY})
    assert response.status_code == 200
    atom = {"atom": "http://www.w3.org/2005/Atom"}
    entries = ET.fromstring(response.content).findall("atom:entry", atom)
    return [entry.findtext("atom:title", namespaces=atom) for entry in entries]


@pytest.mark.django_db
def test_inside_a_transaction_the_neighbours_are_found_on_its_connection(catalogue, scans):
    """Another connection would not see the transaction's uncommitted papers."""
    with transaction.atomic():
        summary, _ = searched().summary_and_results()
    assert summary.count == 5
    assert scans == [("MainThread", request_pid())]


@pytest.mark.django_db(transaction=True)
def test_with_every_core_busy_the_neighbours_are_found_on_the_request_s_connection(
    catalogue, client, scans, monkeypatch
):
    """A second connection would have no core to run on: no hand-off, the same answer."""
    beside = api_answer(client)
    monkeypatch.setattr(alongside, "_runnable", lambda: 1 + len(os.sched_getaffinity(0)))
    monkeypatch.setattr(alongside, "cores_busy", CORES_BUSY)
    assert api_answer(client) == beside
    assert [name for name, _ in scans] == ["alongside", "MainThread"]
    assert scans[1][1] == request_pid()


# --- alongside itself ------------------------------------------------------------------------

_reads = contextvars.ContextVar("reads", default="primary")


@pytest.mark.parametrize(
    "runnable, busy", [(1, False), (2, False), (3, True), (40, True)], ids=lambda v: str(v)
)
def test_cores_are_busy_when_more_threads_are_runnable_than_cores(monkeypatch, runnable, busy):
    """Two cores, the caller runnable itself: one more thread still leaves it a core."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(alongside, "_runnable", lambda: runnable)
    assert CORES_BUSY() is busy


def test_the_runnable_threads_are_read_from_the_host_and_count_the_reader():
    assert alongside._runnable() >= 1


def test_the_work_runs_in_the_caller_s_context_and_its_error_is_raised_to_it(settings):
    settings.SEARCH_ALONGSIDE = True
    token = _reads.set("replica1")
    try:
        work = alongside.start("default", lambda: (_reads.get(), threading.current_thread().name))
        assert work.result(timeout=10) == ("replica1", "alongside")
    finally:
        _reads.reset(token)

    def broken():
        raise LookupError("no such paper")

    with pytest.raises(LookupError, match="no such paper"):
        alongside.start("default", broken).result(timeout=10)


def test_with_a_thread_beside_requests_the_interpreter_is_handed_over_sooner(settings):
    """A thread whose statement has returned waits for the interpreter while the request's
    thread runs Python: at most ``SWITCH_INTERVAL`` once a thread is started, not 5 ms."""
    settings.SEARCH_ALONGSIDE = True
    alongside.close()  # no thread yet: the next work starts one
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        assert alongside.start("default", lambda: 1).result(timeout=10) == 1
        assert sys.getswitchinterval() <= alongside.SWITCH_INTERVAL < 0.005
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.django_db(transaction=True)
def test_close_stops_the_threads_and_their_connections(settings):
    def backend() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    pid = alongside.start("default", backend).result(timeout=10)
    assert alongside.start("default", backend).result(timeout=10) == pid  # kept between
    alongside.close()
    assert not any(t.name == "alongside" for t in threading.enumerate())
    deadline = time.monotonic() + 10  # the server ends the backend just after the client goes
    while backend_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not backend_alive(pid)


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] == 1
    assert not any(t.name == "alongside" for t in threading.enumerate())
