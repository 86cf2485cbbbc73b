"""What a list page says about all of its matches: how many, per month, per topic.

At a million papers a common word matches most of the catalogue, and counting, grouping by
month and joining topics over every match cost seconds. So above a size the figures are
*estimated* from a fixed sample of the catalogue: every ``SAMPLE_EVERY``-th paper by id
(``catalogue.models.in_sample``), which has partial indexes of its own, so a query finds its
sampled matches in an index of 20,000 papers instead of probing the table:

- small catalogues, or a sample with fewer than ``MIN_SAMPLE_HITS`` matches (so the matches are
  few enough to count): exact figures, one pass over the matches;
- otherwise: the sample's figures scaled up, rounded to two significant digits and flagged
  ``exact=False`` so pages say "about".

Summaries, and relevance rankings (``CachedRanking``: the ranked ids), are cached in Redis for
``SUMMARY_CACHE_SECONDS``, keyed by the query's SQL and the catalogue's last change
(``max(updated_at)`` of the papers, ``max(computed_at)`` of their embeddings), so a hot search
computes them once; so are a search's nearest papers by meaning (``cached_neighbours``). The
catalogue's last change and its size are read in one statement, once per request
(``catalogue_state``). Other orders are read live from their indexes; whole anonymous pages
have their own cache (``catalogue.pagecache``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import NamedTuple

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import BooleanField, Count, ExpressionWrapper, F, Func, Lookup, Q, QuerySet
from django.db.models.expressions import OrderBy
from django.db.models.functions import TruncMonth

from catalogue import search
from catalogue.models import (
    SAMPLE_EVERY,
    SHOWN_REASON_VALUES,
    SHOWN_REASONS,
    Paper,
    PaperTopic,
    Topic,
    in_sample,
)
from catalogue.routers import catalogue_connection

FACET_TOPICS = 12
# The sample's size, 1 in this many papers. Only the default has the partial indexes; tests
# sample every paper (1) or every other (2) to compare estimates with exact figures.
sample_every = SAMPLE_EVERY


# Where the matches are estimated, the month from which the newest candidates are read is
# where the sample's matches number this many times those needed: with 2,000 needed and a
# sample of 1 in 50, 60 sampled matches, and fewer than 2,000 real ones in that range about
# once in a thousand searches (which then find them the other ways, ``_read_since``).
SINCE_MARGIN = 1.5


@dataclass(frozen=True)
class Reach:
    """Where a ranking's newest candidates lie in the date index (``Summary.reach``)."""

    walk: int  # papers a walk of the date index reads until enough matches passed
    since: dt.date | None = None  # the month from which the matches are enough, with margin
    span: int = 0  # papers published from ``since`` to the walk's start
    found: int = 0  # matches published from ``since`` on
    months: tuple[tuple[dt.date, int], ...] = ()  # the dated matches by month, newest first
    top: dt.date = dt.date.max  # the walk's first month
    # The entries of the words' index a read of the matches goes through: every paper that
    # holds the words, whatever the other filters keep (``search.index_entries``; 0: unknown,
    # or the words are not read from their index).
    entries: int = 0

    def walk_for(self, needed: float) -> int | None:
        """The papers a walk reads until ``needed`` matches passed; None if fewer are dated."""
        month, _ = _month_reaching(self.months, needed)
        return None if month is None else _papers_between(month, self.top)


def _month_reaching(months, needed: float) -> tuple[dt.date | None, int]:
    """(the month in which ``months``' matches, newest first, reach ``needed``, the matches
    from it on); (None, all of them) where they are fewer."""
    passed = 0
    for month, n in months:
        passed += n
        if passed >= needed:
            return month, passed
    return None, passed


@dataclass
class Summary:
    count: int
    exact: bool
    per_month: dict[dt.date | None, int] = field(default_factory=dict)  # None: undated papers
    topics: list[dict] = field(default_factory=list)  # {"slug", "name", "n"}, most first
    # Every match's id, newest first, where the summary read them all (``exact_from_ids``):
    # a sorted page slices them instead of matching again (``PagedByIds``), and a relevance
    # ranking takes its candidates from them (``match_ranks``). Only for the request that
    # computed it: not cached.
    match_ids: list[int] | None = field(default=None, compare=False, repr=False)
    # Beside ``match_ids``, where the summary was asked for them (``RankColumns``): each
    # match's (relevance rank, whether its title holds the words), so the ranking needs no
    # statement of its own (``ranked_from_summary``). Not cached either.
    match_ranks: list[tuple[float, bool]] | None = field(default=None, compare=False, repr=False)

    def __getstate__(self):
        return {**self.__dict__, "match_ids": None, "match_ranks": None}

    def reach(self, needed: int, newest: dt.date | None = None) -> Reach | None:
        """How far back from ``newest`` (the last day a filter allows, else the newest paper)
        the ``needed`` newest matches lie, in whole months, and what each way of finding them
        reads (``Reach``); None where the dated matches are fewer. A ranking asks it of the
        summary of its keyword matches alone (``PaperFilter.summary_and_results``): counted
        with the papers found by meaning alone, an exact count could fall short by them and
        the candidates be found again by a walk ("understanding" in 2016-2022 at 100,000
        papers: 1,998 of 2,000 read, 21 ms, then walked, 32).

        PostgreSQL's and the even-spread estimate (``_walk_pays``) miss words whose matches
        are mostly old: "fractions" in 15,500 of a million papers, its 2,000 newest reached
        in July 2024, a walk of 242,000 papers (265 ms) against 68 ms reading every match."""
        top = newest.replace(day=1) if newest else dt.date.max
        months = tuple(sorted(((m, n) for m, n in self.per_month.items() if m), reverse=True))
        walked_to, _ = _month_reaching(months, needed)
        if walked_to is None:
            return None
        margin = 1 if self.exact else SINCE_MARGIN
        since, found = _month_reaching(months, needed * margin)
        return Reach(
            _papers_between(walked_to, top),
            since=since,
            span=0 if since is None else _papers_between(since, top),
            found=found,
            months=months,
            top=top,
        )

    def plus(self, papers: Sequence[tuple[int, dt.date | None]], topics: list[dict]) -> Summary:
        """This summary with ``papers`` ((id, published_on) of papers it does not count) and
        their topic facets ``topics`` (``facets_of``) added: a hybrid search's keyword
        matches and the papers found by meaning alone (``PaperFilter.summary_and_results``).
        They are counted exactly; an estimate's sums keep two significant digits. Topic
        counts shown stay right: a topic outside this summary's ``FACET_TOPICS`` (when it has
        that many) is not added, as its count here is unknown. No ids: ``match_ids`` no longer
        holds every match."""
        if not papers:
            return self
        rounded = (lambda n: n) if self.exact else _about
        per_month = dict(self.per_month)
        for month, n in Counter(_month_of(published) for _, published in papers).items():
            per_month[month] = rounded(per_month.get(month, 0) + n)
        return Summary(
            count=rounded(self.count + len(papers)),
            exact=self.exact,
            per_month=per_month,
            topics=_merged_facets(self.topics, topics, rounded),
        )

    def ids_by_date(self, newest: bool) -> list[int] | None:
        """Every match's id newest first or oldest first, the undated last either way (as
        ``newest_first`` and ``oldest_first`` order papers), where the summary read them all;
        else None."""
        if self.match_ids is None:
            return None
        if newest:
            return self.match_ids
        dated = len(self.match_ids) - self.per_month.get(None, 0)
        return self.match_ids[:dated][::-1] + self.match_ids[dated:][::-1]


def _month_of(published: dt.date | None) -> dt.date | None:
    return published.replace(day=1) if published else None


def _merged_facets(facets: list[dict], added: list[dict], rounded) -> list[dict]:
    """``facets`` with ``added``'s counts (``Summary.plus``), most first; topics only in
    ``added`` join only where ``facets`` is not full (then it holds every topic it counts)."""
    counts = {facet["slug"]: dict(facet) for facet in facets}
    complete = len(facets) < FACET_TOPICS
    for facet in added:
        if facet["slug"] in counts:
            counts[facet["slug"]]["n"] = rounded(counts[facet["slug"]]["n"] + facet["n"])
        elif complete:
            counts[facet["slug"]] = dict(facet)
    merged = sorted(counts.values(), key=lambda facet: (-facet["n"], facet["name"]))
    return merged[:FACET_TOPICS]


@dataclass(frozen=True)
class RankColumns:
    """What a relevance ranking needs of each match beyond its id and date: its ``rank`` and
    whether its title holds the words (``titled``, the title pool's test), as expressions.
    A summary that reads every match computes them in the same pass (``summarise``)."""

    rank: object
    titled: object


def summarise(
    matches: QuerySet,
    *,
    topics: bool = True,
    ranks: RankColumns | None = None,
    key_text: str | None = None,
    known=None,
):
    """The (cached) summary of an unordered queryset of papers; ``topics``: with facets;
    ``ranks``: where the summary reads every match, each one's rank too (``match_ranks``).

    A word in a few thousand papers: the summary's pass read them all, then the ranking's
    statements read them again to rank them. Ranked in the summary's pass, a match costs
    ~2-3 µs more (its vector decompressed and ranked). At 100,000 papers: "system" in 3,074
    papers of a date range, the summary 15 -> 21 ms and no ranking statement (was 21 ms);
    "introduces" in 4,339, 20 -> 32 ms and none (was 15 ms): even where the matches are
    most. A phrase's ranking read its candidates by id, 12-22 µs each. Only that pass
    ranks: the sample's, for many matches, does not. A cached summary has no ids
    or ranks (they stay with the request), so the key is the same with or without them.
    ``key_text``: ``query_text(matches)``, where the caller has it already. ``known``: a
    function giving the same summary another way (``catalogue.wordmonths``), or None where
    it cannot."""
    matches = matches.order_by()
    if matches.query.is_empty():  # e.g. a search by meaning before any paper has an embedding
        return Summary(count=0, exact=True)
    kind = "summary" if topics else "count"
    key = _versioned_key(kind, key_text) if key_text else _cache_key(kind, matches)
    return _cached(key, lambda: (known and known()) or _summary(matches, topics, ranks))


def neighbours_key(papers: QuerySet, meaning: str) -> str | None:
    """The cache key of the nearest papers by meaning among ``papers``: their SQL,
    ``meaning`` (what is searched for and how many) and the catalogue's version, which a
    backfill's new embeddings change too. None where caching is off (not even the key: a
    feed reads no catalogue state otherwise). Made in the request's thread, which has read
    the catalogue's state (``catalogue_state``), not in the one that scans
    (``catalogue.alongside``)."""
    if settings.SUMMARY_CACHE_SECONDS <= 0:
        return None
    return _cache_key("nearest", papers, meaning)


def cached_neighbours(key: str | None, scan) -> list[tuple[int, float]]:
    """The nearest papers by meaning (``scan()``: (id, similarity), nearest first), cached
    under ``key`` (``neighbours_key``) like summaries."""
    return scan() if key is None else _cached(key, scan)


def _cached(key: str, compute):
    """The cached value of ``key``, else ``compute()``, cached for SUMMARY_CACHE_SECONDS.
    0 seconds turns caching off, reads included: every figure is computed afresh."""
    if settings.SUMMARY_CACHE_SECONDS <= 0:
        return compute()  # not even a set: Redis would be asked to delete the key
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, settings.SUMMARY_CACHE_SECONDS)
    return value


def _cache_key(kind: str, queryset: QuerySet, extra: str = "") -> str:
    """The query's SQL (and ``extra``) and the catalogue's latest change: a change to any
    paper (ingest, a curator's edit or action) starts new keys, and the old ones expire."""
    text = query_text(queryset)
    return _versioned_key(kind, f"{text}\x00{extra}" if extra else text)


def query_text(queryset: QuerySet) -> str:
    """What names a queryset's rows in cache keys: its SQL and parameters, selecting ``pk``
    (a compile: ~0.3-1 ms for a search's)."""
    # A UNION keeps the columns it orders by (a ranking ranked as found, by_relevance).
    keyed = queryset if queryset.query.combinator else queryset.values("pk")
    try:
        sql, params = keyed.query.sql_with_params()
    except EmptyResultSet:  # e.g. a search by meaning before any paper has an embedding
        sql, params = "EMPTY", ()
    return f"{sql}\x00{params!r}"


def _versioned_key(kind: str, text: str) -> str:
    text = f"{text}\x00{catalogue_version()}"
    return f"{kind}:" + hashlib.sha256(text.encode()).hexdigest()


def catalogue_version() -> str:
    """The latest change to any paper or to any paper's embedding (one read of each one's
    index): a backfill's new vectors change what a search finds by meaning."""
    return catalogue_state()[0]


# What one request has read of the catalogue's state (``catalogue_state``): per thread, as
# a request is; started and dropped by the request_started and request_finished signals.
_request = threading.local()


def catalogue_state() -> tuple[str, int, bool]:
    """(the latest change to any paper or embedding, the papers table's estimated rows,
    whether any paper has an embedding), in one statement.

    The page cache, the summary's and the ranking's keys and the summary's choice of method
    all need them: within a request they are read once (a page would otherwise pay three or
    four round trips for them). Outside requests (tasks, commands, tests) every call reads
    them afresh, as a change may come between two calls."""
    memo = getattr(_request, "memo", None)
    if memo is None:
        return _read_state()
    if "state" not in memo:
        memo["state"] = _read_state()
    return memo["state"]


def _read_state() -> tuple[str, int, bool]:
    # max(updated_at) and max(computed_at) read one entry of their indexes; reltuples is
    # PostgreSQL's estimate, kept by ANALYZE and autovacuum.
    with catalogue_connection().cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT max(updated_at) FROM catalogue_paper),"
            " (SELECT max(computed_at) FROM catalogue_paperembedding),"
            " (SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass)",
            [Paper._meta.db_table],
        )
        last, embedded, rows = cursor.fetchone()
    return f"{last}/{embedded}", max(rows or 0, 0), embedded is not None


def any_embedding() -> bool:
    """Whether any paper has an embedding (``catalogue_state``: read once per request)."""
    return catalogue_state()[2]


def start_request_memo(**kwargs) -> None:
    """``request_started`` receiver: this request reads the catalogue's state once."""
    _request.memo = {}


def end_request_memo(**kwargs) -> None:
    """``request_finished`` receiver: what follows (another request, a task) reads afresh."""
    _request.memo = None


def is_large() -> bool:
    """Whether the catalogue is large enough (SUMMARY_EXACT_BELOW) that summaries are
    estimated from the sample, and the ways of reading matches differ by much."""
    return catalogue_size() >= max(settings.SUMMARY_EXACT_BELOW, 1)


def _summary(matches: QuerySet, topics: bool, ranks: RankColumns | None = None) -> Summary:
    if not is_large():
        return _exact(matches, topics)  # a small catalogue: counting everything is cheap
    every = sample_every
    months, every_match = _sampled_ids_by_month(matches, every, ranks)
    if every_match is not None:
        # Few matches (~5,000 at most): exact figures, the matches read once for all of them.
        return exact_from_ids(every_match, topics)
    hits = sum(len(matched.ids) for matched in months.values())
    sampled_ids = chain.from_iterable(matched.ids for matched in months.values())
    facets = _sample_facets(sampled_ids, every) if topics else []
    return Summary(
        count=_about(hits * every),
        exact=False,
        per_month={month: _about(len(matched.ids) * every) for month, matched in months.items()},
        topics=[{**t, "n": _about(t["n"] * every)} for t in facets],
    )


def _exact(matches: QuerySet, topics: bool) -> Summary:
    """Exact figures by two aggregate passes (a small catalogue's matches may be most of it)."""
    per_month = _per_month(matches)
    return Summary(
        count=sum(per_month.values()),
        exact=True,
        per_month=per_month,
        topics=_topics(PaperTopic.objects.filter(paper__in=matches.values("pk"))) if topics else [],
    )


def exact_from_ids(months: dict[dt.date | None, MonthMatches], topics: bool) -> Summary:
    """Exact figures from the matches' ids (and ranks, where read): the query's conditions
    (for a phrase, a pattern over every candidate's abstract, ~100 ms at a million papers)
    are not evaluated again for the topic facets."""
    per_month = {month: len(matched.ids) for month, matched in months.items()}
    # Each month's ids are newest first (``_IDS_BY_MONTH``); so are the months, the
    # undated last, as ``newest_first`` orders papers.
    order = sorted((month for month in months if month is not None), reverse=True)
    order += [None] if None in months else []
    match_ids = [pk for month in order for pk in months[month].ids]
    ranked = all(months[month].ranks is not None for month in order)
    return Summary(
        count=sum(per_month.values()),
        exact=True,
        per_month=per_month,
        topics=facets_of(match_ids) if topics else [],
        match_ids=match_ids,
        match_ranks=[
            (rank, bool(titled))
            for month in order
            for rank, titled in zip(months[month].ranks, months[month].titled, strict=True)
        ]
        if ranked
        else None,
    )


# ``column = ANY_OF_IDS`` with an ``id_array`` parameter: the array reaches the planner from
# an InitPlan, not as a constant, whose every element it would estimate against the column's
# statistics (2.7 ms of planning for 3,834 ids; in an OR it unfolds up to 100, 4-5 ms).
ANY_OF_IDS = "ANY((SELECT %s::bigint[])::bigint[])"


class AnyOfIds(Lookup):
    """``column = ANY(ids)``, the ids one array parameter handed over by an InitPlan.

    One parameter: thousands of ids as as many cost the ORM milliseconds to compile and
    PostgreSQL to parse. ``= ANY``, not ``IN (SELECT unnest(…))``: the primary key's index is
    then read once, in key order, the ids sorted first (several on one leaf page found in one
    descent), where the semi-join looked each id up from the root in hash order: 3,131 ids
    (a date range's papers with code) 9.4 -> 5.1 ms, 9,393 -> 3,023 buffers. An InitPlan's
    array is not a constant, so the planner does not estimate, or in an OR unfold, each
    element (``ANY_OF_IDS``: 4-5 ms of planning for 100 ids beside the sample's partial
    indexes)."""

    lookup_name = "any_of_ids"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} = {ANY_OF_IDS}", [*params, id_array(self.rhs)]


def of_ids(ids: Sequence[int], field: str = "pk") -> Q:
    """The condition ``field`` is one of ``ids`` (``AnyOfIds``)."""
    return Q(AnyOfIds(F(field), ids))


def id_array(ids: Sequence[int]) -> str:
    """``ids`` as one PostgreSQL array literal, for a ``%s::bigint[]`` parameter."""
    return "{" + ",".join(map(str, ids)) + "}"


class MonthMatches(NamedTuple):
    """One month's matches as a summary's pass reads them (``_sampled_ids_by_month``): their
    ids, newest first, and where asked (``RankColumns``) each one's rank and title flag."""

    ids: list[int]
    ranks: list[float] | None = None
    titled: list[bool] | None = None


def _sampled_ids_by_month(
    matches: QuerySet, every: int, ranks: RankColumns | None = None
) -> tuple[dict, dict | None]:
    """The sample's matches' ids by month and, if the sample finds fewer than
    ``SUMMARY_MIN_SAMPLE_HITS``, every match's ids by month (else None), as ``MonthMatches``
    (with ``ranks``, the pass over every match ranks them too): one statement.

    The pass over every match runs only then: its condition, a sum over the sample's rows,
    is evaluated once before it, and PostgreSQL skips a branch whose one-time filter is false.

    The matches are compiled once, and both passes written around them: PostgreSQL pulls the
    plain subquery up, so the sample's condition stands beside the matches' own and its
    partial indexes serve (two statements built and compiled by the ORM took ~1.2-1.8 ms).
    The sample's pass does not compute the rank columns, which it does not select.
    """
    columns = ["pk", "published_on"]
    if ranks is not None:
        matches = matches.annotate(rank=ranks.rank, titled=ranks.titled)
        columns += ["rank", "titled"]
    try:
        compiled = matches.values_list(*columns).query.sql_with_params()
    except EmptyResultSet:  # nothing can match
        return {}, {}
    matches_sql, matches_params = compiled
    names = "m(id, published_on, rank, titled)" if ranks else "m(id, published_on)"
    ranked = _RANKS_BY_MONTH if ranks else ""
    # The sample's condition as the partial indexes' own (``in_sample``): MOD(id, every) = 0.
    sample = _IDS_BY_MONTH.format(
        matches=matches_sql, names=names, where="WHERE MOD(m.id, %s) = 0", order="", ranked=""
    )
    # Ranked, the matches are a subquery of their own (OFFSET 0): pulled up, each match's
    # whole search vector (~1.6 KB) was carried through the sort by month and ranked after it
    # (a word in 3,000 papers at 100,000: 21 ms against 13 unranked; apart, 15).
    every_match = _IDS_BY_MONTH.format(
        matches=f"{matches_sql} OFFSET 0" if ranks else matches_sql,
        names=names,
        where="",
        order=_NEWEST_FIRST,
        ranked=ranked,
    )
    unranked = ", NULL, NULL" if ranks else ""
    sql = (
        f"WITH sample AS MATERIALIZED ({sample}) "
        f"SELECT true AS sampled, *{unranked} FROM sample UNION ALL "
        f"SELECT false, * FROM ({every_match}) AS every_match "
        "WHERE (SELECT coalesce(sum(cardinality(ids)), 0) FROM sample) < %s"
    )
    params = (*matches_params, every, *matches_params, settings.SUMMARY_MIN_SAMPLE_HITS)
    rows = _fetch(matches.db, sql, params, _without_index_scans(sql))
    months = {month: MonthMatches(ids) for sampled, month, ids, *_ in rows if sampled}
    if sum(len(matched.ids) for matched in months.values()) >= settings.SUMMARY_MIN_SAMPLE_HITS:
        return months, None  # the pass over every match did not run
    return months, {month: MonthMatches(*found) for sampled, month, *found in rows if not sampled}


# One pass over the matches (their SQL, selecting id and published_on, and with ``ranked``
# their rank and title flag, as ``names``): their ids by month (the sample's: 20,000 ids at
# most), grouped and aggregated into arrays by PostgreSQL: the ORM would spend ~50 ms making
# 20,000 rows into Python tuples. ``order``: each month's ids in ``newest_first`` order
# (``Summary.match_ids``), and their ranks in the same order.
_IDS_BY_MONTH = (
    "SELECT date_trunc('month', m.published_on)::date AS month, array_agg(m.id{order}) AS ids"
    "{ranked} FROM ({matches}) AS {names} {where} GROUP BY 1"
)
_NEWEST_FIRST = " ORDER BY m.published_on DESC NULLS LAST, m.id DESC"
_RANKS_BY_MONTH = (
    f", array_agg(m.rank{_NEWEST_FIRST}) AS ranks, array_agg(m.titled{_NEWEST_FIRST}) AS titled"
)


def _without_index_scans(sql: str) -> tuple[str, ...]:
    """A search is answered from the sample's GIN indexes. PostgreSQL does not know that
    testing a search vector costs microseconds, so for a common word it would rather walk
    every sampled row by the sample's btree and test each vector (~200 ms at a million
    papers, against ~40 ms through the GIN index): plain index scans are off for a statement
    with a full-text condition ("@@"). Other filters (topics, dates, upvotes) keep the btree,
    read index-only."""
    return ("enable_indexscan",) if "@@" in sql else ()


def rows_without(rows: QuerySet, *planner_settings: str) -> list:
    """The rows of ``rows`` (a ``values_list``), read by a statement for which PostgreSQL
    must not choose the plan kinds ``planner_settings``.

    One round trip: ``SET LOCAL …; SELECT …; RESET …`` in one execute. Outside a transaction
    the three run in one implicit transaction, so the settings end with it; inside one, the
    RESET ends them, and on an error the rollback the error forces (of the transaction or of
    an enclosing savepoint) undoes them, while the statement's own error is what is raised.
    """
    compiler = rows.query.get_compiler(using=rows.db)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        return []
    return _converted(compiler, _fetch(rows.db, sql, params, planner_settings))


def _fetch(alias: str, sql: str, params, planner_settings: Sequence[str]) -> list[tuple]:
    """The rows of ``sql``, run under ``planner_settings`` (``rows_without``): one execute."""
    return _fetch_each(alias, [(sql, params, planner_settings)])[0]


def _fetch_each(alias: str, statements) -> list[list[tuple]]:
    """The rows of each (sql, params, planner settings) of ``statements``, each run under its
    own settings, all in one execute: ``SELECT …; SET LOCAL …; SELECT …; RESET …``.
    (Several commands in one execute need Django's default client-side parameter binding.)"""
    commands, values, selects = [], [], set()
    for sql, params, planner_settings in statements:
        commands += [f"SET LOCAL {setting} = off" for setting in planner_settings]
        selects.add(len(commands))
        commands.append(sql)
        values += params
        commands += [f"RESET {setting}" for setting in planner_settings]
    results = []
    with connections[alias].cursor() as cursor:
        cursor.execute("; ".join(commands), values)
        for index in range(len(commands)):
            if index in selects:
                results.append(cursor.fetchall())
            cursor.nextset()  # past a SET's or RESET's result, or to the next SELECT's
    return results


def _converted(compiler, results: list[tuple]) -> list[tuple]:
    """Raw rows of ``compiler``'s query with the ORM's conversions (dates, arrays), as tuples,
    as iterating its queryset would give them."""
    if compiler.has_extra_select:  # columns only ORDER BY needs, as Django's own execute trims
        results = [row[: compiler.col_count] for row in results]
    return list(compiler.results_iter(results=[results], tuple_expected=True))


def _sample_facets(ids: Iterable[int], every: int) -> list[dict]:
    """Topic facets of the sample's matches ``ids``, from the sample's topic links."""
    topic_names, links = _sample_topic_links(every)
    counts = Counter(topic for pk in ids for topic in links.get(pk, ()))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], topic_names[item[0]][1]))
    return [
        {"slug": topic_names[topic][0], "name": topic_names[topic][1], "n": n}
        for topic, n in ranked[:FACET_TOPICS]
    ]


def _sample_topic_links(every: int) -> tuple[dict, dict]:
    """({topic id: (slug, name)}, {sampled paper id: [topic ids]}), kept (``_kept``).

    Every estimate reads the same sample, so its topic links are read once per change of the
    catalogue and shared by all queries, instead of joined again for each new query's
    matches: 25 ms at a million papers (26,000 links), then nothing.
    """
    return _kept("sample-topics", every, _read_links)


def catalogue_months() -> dict[dt.date, int]:
    """{month: papers} of the visible dated papers, estimated from the sample, kept
    (``_kept``): how far walking the date index goes (``Summary.reach``)."""
    return _kept("sample-months", sample_every, _read_months)


def papers_published_between(first: dt.date | None, last: dt.date | None) -> int:
    """About how many visible papers were published from ``first`` to ``last`` (None: no
    bound), in whole months (``catalogue_months``)."""
    first = first.replace(day=1) if first else dt.date.min
    return _papers_between(first, last or dt.date.max)


def _papers_between(first: dt.date, last: dt.date) -> int:
    """The visible dated papers of the months from ``first`` to ``last`` (``catalogue_months``)."""
    return sum(n for month, n in catalogue_months().items() if first <= month <= last)


def _kept(name: str, every: int, read):
    """``read(every)``, kept in the process until the catalogue changes or
    SAMPLE_CACHE_SECONDS pass (a curator's change to a topic's papers does not change the
    catalogue's version); 0 seconds: read every time. Not in Redis, where each request would
    fetch and unpickle them."""
    seconds = settings.SAMPLE_CACHE_SECONDS
    if seconds <= 0:
        return read(every)
    key, now = _versioned_key(name, repr(every)), time.monotonic()
    kept = _kept_values.get(name)
    if kept is None or kept[0] != key or now - kept[1] >= seconds:
        kept = _kept_values[name] = (key, now, read(every))
    return kept[2]


# {name: (versioned key, when read, value)}
_kept_values: dict[str, tuple[str, float, object]] = {}


def _read_months(every: int) -> dict[dt.date, int]:
    sampled = Paper.objects.visible().filter(in_sample(every), published_on__isnull=False)
    rows = sampled.annotate(month=TruncMonth("published_on")).values_list("month")
    return {month: n * every for month, n in rows.annotate(n=Count("id")).order_by()}


def _read_links(every: int) -> tuple[dict, dict]:
    rows = PaperTopic.objects.filter(
        in_sample(every, field="paper_id"), reason__in=SHOWN_REASONS
    ).values_list("paper_id", "topic_id", "topic__slug", "topic__name")
    topic_names, links = {}, {}
    for paper_id, topic_id, slug, name in rows:
        topic_names[topic_id] = (slug, name)
        links.setdefault(paper_id, []).append(topic_id)
    return topic_names, links


def catalogue_size() -> int:
    """PostgreSQL's estimate of the papers table's rows (kept by ANALYZE and autovacuum),
    read once per request (``catalogue_state``)."""
    return catalogue_state()[1]


def _per_month(matches: QuerySet) -> dict[dt.date | None, int]:
    rows = matches.annotate(month=TruncMonth("published_on")).values_list("month")
    return dict(rows.annotate(n=Count("id")))


def _topics(links: QuerySet) -> list[dict]:
    """Topic facets of some papers' topic ``links``, counted exactly."""
    rows = (
        links.filter(reason__in=SHOWN_REASONS)
        .values("topic__slug", "topic__name")
        .annotate(n=Count("paper"))
        .order_by("-n", "topic__name")[:FACET_TOPICS]
    )
    return [{"slug": r["topic__slug"], "name": r["topic__name"], "n": r["n"]} for r in rows]


def facets_of(ids: Sequence[int], limit: int | None = FACET_TOPICS) -> list[dict]:
    """``_topics`` of the papers ``ids`` (``limit``: the most; None: every one), written as
    SQL: the ORM took ~0.5 ms of every search of few matches to build and compile the same
    statement (tests/catalogue/test_summary.py compares).

    The ids reach the planner from an InitPlan (``ANY_OF_IDS``): as a constant array, 2.7 ms
    of planning for a word's 3,834 matches at 100,000 papers (executing took 3.6); so, 0.8."""
    if not ids:
        return []
    links, topics = PaperTopic._meta.db_table, Topic._meta.db_table
    sql = (
        f'SELECT t.slug, t.name, count(l.paper_id) AS n FROM "{links}" l'
        f' JOIN "{topics}" t ON t.id = l.topic_id'
        f" WHERE l.paper_id = {ANY_OF_IDS} AND l.reason = ANY(%s)"
        " GROUP BY t.slug, t.name ORDER BY n DESC, t.name LIMIT %s"
    )
    with connections[PaperTopic.objects.all().db].cursor() as cursor:
        cursor.execute(sql, [id_array(ids), SHOWN_REASON_VALUES, limit])  # NULL: no limit
        return [{"slug": slug, "name": name, "n": n} for slug, name, n in cursor.fetchall()]


def _about(value: float) -> int:
    """Two significant digits: an estimate should not look more precise than it is."""
    if value < 1:
        return 0
    digits = int(math.floor(math.log10(value))) - 1
    return int(round(value, -digits)) if digits > 0 else int(round(value))


def cached_ranking(
    ranked: QuerySet | None,
    matches: int | None,
    build,
    extra=None,
    fields=("rank",),
    pools=(),
    known=None,
    reach: Reach | None = None,
    key_text: str | None = None,
):
    """``build(rows)`` of the keyword candidates' (id, *fields) rows, most relevant first,
    cached like summaries: by the ranked query's SQL (and ``extra``, e.g. the semantic
    neighbours fused in) and the catalogue's version. ``pools``: ``ranked``'s candidate pools
    (``PaperQuerySet.relevance_pools``), read apart where the newest are not every match;
    ``reach``: where the newest matches lie (``Summary.reach``), where known.
    ``known``: where the matches are known already, a function giving the same rows from
    them (``ranked_from_summary``), used instead of matching again.
    ``key_text``: what names the ranking in place of ``ranked``'s SQL (``ranking_text``),
    whose compile costs as much again as the matches' own; ``ranked`` may then be None
    where ``known`` is given: nothing else reads it.

    Relevance is the one order that cannot come from an index: the candidates' vectors are all
    read and ranked, which for a phrase costs hundreds of milliseconds at a million papers. A
    hot search pays it once per change of the catalogue.
    """
    kind = f"ranking:{hash_of(extra)}"
    key = _versioned_key(kind, key_text) if key_text else _cache_key(kind, ranked)
    if known is not None:
        return _cached(key, lambda: build(known()))
    return _cached(key, lambda: build(ranked_rows(ranked, matches, pools, reach, fields)))


def ranked_rows(ranked: QuerySet, matches: int | None, pools=(), reach=None, fields=("rank",)):
    """The keyword candidates' (id, *fields) rows, most relevant first, read from their
    statements (``_ranked_rows``)."""
    return _ranked_rows(ranked.values_list("pk", *fields), matches, pools, reach)


def ranking_text(matches_text: str, parsed) -> str:
    """What names a relevance ranking of keyword matches in its cache key (``cached_ranking``),
    without compiling its statements: the matches' ``query_text`` (every filter and the
    words' condition), the terms it ranks by (``search.ParsedQuery``) and what else decides
    its candidates and their order (the newest ``SEARCH_RANK_CANDIDATES``, a tenth as many
    title matches; ``search.relevance``'s weights)."""
    terms = (parsed.rank_query, parsed.phrase_query, settings.SEARCH_RANK_CANDIDATES)
    return f"{matches_text}\x00{terms!r}\x00{search.RANKING_SETTINGS}"


def hash_of(value) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16] if value else ""


class CachedRanking(Sequence):
    """A ranking's ids (``catalogue.hybrid.Ranking``); a slice loads just those papers
    (through ``loader``), in rank order, each with its ``match_reasons``."""

    def __init__(self, ranking, loader: QuerySet):
        self.ids = ranking.ids
        self.reasons = ranking.reasons
        self.loader = loader

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        for start in range(0, len(self.ids), 500):
            yield from self[start : start + 500]

    def __getitem__(self, index):
        if isinstance(index, int):
            return self[index : index + 1][0]
        ids = self.ids[index]
        by_id = {paper.pk: paper for paper in self.loader.filter(pk__in=ids)}
        papers = [by_id[pk] for pk in ids if pk in by_id]
        for paper in papers:
            paper.match_reasons = self.reasons.get(paper.pk, ())
        return papers


class PagedByIds(Sequence):
    """An ordered queryset of papers whose slices are read in two steps of one statement: the
    slice's ids in that order, then those papers' columns through ``loader``.

    PostgreSQL computes a row's selected columns before OFFSET discards it, so a deep page
    read in one step paid the cards' extras (each paper's topics, a search's headlines) for
    every row it skipped: page 360 of a sort by upvotes ran the topics subquery 9,000 times
    (48 ms of 50 at 100,000 papers). The ids alone are read from the order's index only
    (its ``hidden`` and date columns included), without visiting the papers skipped.

    Where the summary read every match's id (``Summary.match_ids``: a few thousand at most),
    the ids are not looked for again: ``ids``, every match's id in this order, are sliced;
    ``among``, in another order, are what a sorted page sorts.
    A topic's 3,000 papers of a million in a date range, newest first: the walk of the date
    index passed 113,000 papers to find 25 of them (80 ms), as their dates are not spread
    evenly; the slice costs nothing.
    """

    def __init__(
        self,
        in_order: QuerySet,
        loader: QuerySet,
        matches: int | None = None,
        *,
        ids: Sequence[int] | None = None,
        among: Sequence[int] | None = None,
    ):
        self.in_order = in_order  # not "ordered": Paginator reads that attribute as a flag
        self.loader = loader
        self.matches = matches  # the summary's count, when known
        self.ids = ids
        self.among = among

    def __len__(self) -> int:
        return self.in_order.count()  # pages are told their count (KnownCountPaginator)

    def __iter__(self):
        return iter(self[:])

    def __getitem__(self, index):
        if isinstance(index, int):
            return self[index : index + 1][0]
        ids = self.ids[index] if self.ids is not None else self._ids(index)
        return list(self.loader.filter(pk__in=ids).order_by(*self.in_order.query.order_by))

    def _ids(self, index: slice) -> QuerySet:
        ids = self.in_order
        if self.among is not None:
            # The matches known (a few thousand at most): sorting them costs a few ms, bounded,
            # where a walk of the order's index priced as if they were spread evenly over it
            # may pass most of the catalogue (trending, with code, in 2010-2011: 914,000
            # papers passed, 967 ms at a million papers).
            ids = Paper.objects.filter(of_ids(self.among))
            ids = ids.order_by(*unindexed(self.in_order.query.order_by))
        elif collects_before_sorting(self.matches, index.stop):
            ids = ids.order_by(*unindexed(self.in_order.query.order_by))
        return ids.values("pk")[index]  # a subquery keeps its order when sliced


def collects_before_sorting(matches: int | None, stop: int | None) -> bool:
    """Whether a page's ids should come from all the matches, sorted, rather than from walking
    the order's index until ``stop`` of them passed: where few matches are spread over many
    papers (the ranking's rule, ``walks_date_index``, with the page's end for its candidates).

    PostgreSQL prices the walk as if the matches were spread evenly over the order. A topic
    is not: linear attention's 5,784 papers of 1,000,000 are mostly from 2020 on, and its
    newest 25 from 2013-2018 took a walk of 120 ms through that range's 78,000 papers, joining
    each one's topics; sorting its 850 matches there took 22 ms. Words in the index's key
    (the dates of newest and oldest) walk only their range and need no rule: their matches
    are many."""
    if matches is None or stop is None:
        return False
    return not _walk_pays(matches, stop)


def unindexed(order_by) -> list:
    """``order_by`` with its first key computed (``key + 0``), so no index gives that order
    and PostgreSQL reads the matches and sorts them (the same order: adding 0 to a date, a
    count or a score changes nothing)."""
    first, *rest = order_by
    if isinstance(first, str):
        first = F(first.lstrip("-")).desc() if first.startswith("-") else F(first).asc()
    column = first.expression
    field = Paper._meta.get_field(column.name)
    plus_zero = Func(column, template="(%(expressions)s + 0)", output_field=field)
    return [
        OrderBy(
            plus_zero,
            descending=first.descending,
            nulls_first=first.nulls_first,
            nulls_last=first.nulls_last,
        ),
        *rest,
    ]


def _ranked_rows(rows: QuerySet, matches: int | None, pools=(), reach=None) -> list[tuple]:
    """The ranking's rows (a ``values_list``). Its candidates are the newest matches: with many
    matches (the summary's count says), found where they lie (``reach``): the matches
    published since a month (``_read_since``), or by walking the date index and testing
    papers until enough match; never by testing every match the GIN index gives and sorting
    them by date when either costs less.

    Walking reads ~candidates x catalogue / matches papers, most rejected by one lexeme
    lookup (~1 µs); the GIN way tests each match fully (a phrase's positions and pattern:
    ~12 µs). PostgreSQL prices both tests as free, so for a common phrase it may pick the GIN
    way: 0.6 s at 100,000 papers, seconds at a million, against ~80 ms walking.
    """
    reads = reach.walk if reach else None
    if pools and reads_since_pays(matches, reach):
        found = _read_since(reach, matches, *pools)
        if found is not None:
            return found
    if not walks_date_index(matches, reads):
        return list(rows)  # every match is a candidate, or few enough to test them all
    if len(pools) > 1:
        return _walked_pools(*pools, matches=matches, reach=reach)
    # Nor a sequential scan: it tests every paper (a title match of a phrase seemed rare
    # enough to PostgreSQL to scan the whole table for: 200 ms at 100,000 papers).
    return rows_without(rows, *_WALK)


_WALK = ("enable_bitmapscan", "enable_seqscan")
# The newest matches since a month, and a title pool read whole (``_pool_walk_pays``): from
# the bitmaps of the words' index entries (and of the date range), never by walking the date
# index, which PostgreSQL would choose for the ORDER BY ... LIMIT, pricing each paper's test
# as free ("non" in titles since 2016 at a million papers: 46,660 papers walked, 102 ms,
# where the rule read the range's 4,962 title matches, ~20 ms).
_BITMAPS = ("enable_indexscan", "enable_seqscan")


def _read_since(reach: Reach, matches: int, newest: QuerySet, *titled: QuerySet):
    """(pk, rank) rows, most relevant first, of the newest matches read from those published
    since ``reach.since`` and of the title pools (``by_relevance``'s UNION, its parts read apart);
    None where fewer than the candidates were published since then (the sample's estimate
    overshot), so the caller finds them another way.

    "probabilities", in 32,500 of a million papers, its 2,000 newest in the last 9 months:
    walking the date index read 83,000 papers (132 ms); reading every match, 141 ms; the
    3,000 matches since 13 months back, from the bitmaps of the word's 32,500 index entries
    and the range's 120,000 papers, 32 ms."""
    newest_since = _published_since(newest, reach.since)
    enough = newest.query.high_mark - newest.query.low_mark
    parts = _newest_then_titles(newest_since, _BITMAPS, titled, matches, reach, enough=enough)
    return None if parts is None else _most_relevant_first(parts)


def _published_since(pool: QuerySet, since: dt.date) -> QuerySet:
    """``pool`` (a sliced queryset) among the papers published on or after ``since``."""
    return _unsliced(pool, lambda papers: papers.filter(published_on__gte=since))


def _unsliced(pool: QuerySet, change) -> QuerySet:
    """``change(pool)`` applied to ``pool`` (a sliced queryset) without its slice, sliced again."""
    unsliced = pool.all()
    low, high = unsliced.query.low_mark, unsliced.query.high_mark
    unsliced.query.clear_limits()
    return change(unsliced)[low:high]


def _walked_pools(newest: QuerySet, *titled: QuerySet, matches=None, reach=None) -> list[tuple]:
    """(pk, rank) rows of the newest matches, walked from the date index, and of the title
    pools, most relevant first: ``by_relevance``'s UNION, its parts read apart
    (``_newest_then_titles``)."""
    return _most_relevant_first(_newest_then_titles(newest, _WALK, titled, matches, reach))


def _newest_then_titles(
    newest: QuerySet, planner_settings, titled=(), matches=None, reach=None, *, enough=0
) -> list[list[tuple]] | None:
    """The rows of the newest pool, read under ``planner_settings``, then those of the title
    pools it does not hold already (``_title_statements``), each pool's rows as
    ``_read_apart`` gives them; None, the title pools unread, where the newest pool has fewer
    than ``enough`` rows.

    A title pool (the newest matches with the query in their title) adds nothing where the
    newest pool holds at least as many title matches: a title match is a match, and the
    newest pool holds every match from its oldest row on, so the title pool's rows are its
    first title matches. Each newest row says whether it is one: the title pool's condition
    (``in_title``, the title words by weight) tested on the row in hand, which costs nothing
    measurable beside the row's rank. Topical words have it so: "distillation" in 2015-2021
    at a million papers, 510 title matches among its 2,000 newest, whose title pool cost
    59 ms read apart (13 ms walked). Where the title matches are fewer, the title pools are
    read in a second round trip (~0.2 ms)."""
    (rows,) = _read_apart([_statement(_flagged(newest, titled), planner_settings)])
    if len(rows) < enough:
        return None
    width = len(rows[0]) - len(titled) if rows else 0
    in_titles = [sum(1 for row in rows if row[width + index]) for index in range(len(titled))]
    unheld = [
        part
        for part, held in zip(titled, in_titles, strict=True)
        if part.query.high_mark - part.query.low_mark > held
    ]
    parts = [[row[:width] for row in rows]]
    if unheld:
        parts += _read_apart(_title_statements(unheld, matches, reach))
    return parts


def _flagged(newest: QuerySet, titled: Sequence[QuerySet]) -> QuerySet:
    """``newest`` (a sliced pool) with a column per title pool after its own: whether the row
    is one of that pool's title matches (its ``in_title`` condition)."""
    flags = {
        f"_in_title_{index}": ExpressionWrapper(part.in_title, output_field=BooleanField())
        for index, part in enumerate(titled)
    }
    return _unsliced(newest, lambda pool: pool.annotate(**flags)) if flags else newest


def _most_relevant_first(parts: list[list[tuple]]) -> list[tuple]:
    """The union of the pools' (pk, rank) rows, most relevant first (a paper in several pools
    has the same rank in each)."""
    return sorted(set().union(*parts), key=lambda row: (-row[1], -row[0]))


def _read_apart(statements: list[tuple]) -> list[list[tuple]]:
    """Each (compiler, sql, params, planner settings off) statement's rows, converted as the
    ORM would, all in one round trip (``_fetch_each``)."""
    alias = statements[0][0].using
    fetched = _fetch_each(alias, [statement[1:] for statement in statements])
    return [
        _converted(compiler, raw) for (compiler, *_), raw in zip(statements, fetched, strict=True)
    ]


def ranked_from_summary(
    match_ids: Sequence[int], match_ranks: Sequence[tuple[float, bool]], limit: int, *, titles
) -> list[tuple]:
    """(pk, rank) rows, most relevant first, of ``by_relevance``'s UNION, with no statement:
    from a summary that ranked every match (``Summary.match_ids`` newest first,
    ``match_ranks``). The newest pool is the first ``limit`` matches; with ``titles`` (the
    query has title words), the title pool is the newest ``limit / 10`` of those whose title
    holds them (a title match is a match), wherever they are."""
    rows = [(pk, rank) for pk, (rank, _) in zip(match_ids, match_ranks, strict=True)]
    pools = set(rows[:limit])
    if titles:
        titled = (row for row, (_, in_title) in zip(rows, match_ranks, strict=True) if in_title)
        pools.update(islice(titled, max(limit // 10, 1)))
    return sorted(pools, key=lambda row: (-row[1], -row[0]))


def ranked_known_newest(newest: QuerySet, titled=(), matches=None, reach=None) -> list[tuple]:
    """(pk, rank) rows, most relevant first, of ``by_relevance``'s UNION where the newest
    pool's papers are known already (``newest``: those papers, by id, with ``rank``; e.g.
    from word months, ``catalogue.wordmonths.newest_with_all``): its rows, then those of the
    title pools it does not hold (``_newest_then_titles``)."""
    return _most_relevant_first(_newest_then_titles(newest, (), titled, matches, reach))


def walk_statements(newest: QuerySet, *titled: QuerySet, matches=None, reach=None) -> list:
    """(compiler, sql, params, planner settings off) of each pool of a walked ranking. The
    newest matches walk the date index; a title pool walks it only where its matches are
    many (``_walk_pays`` of PostgreSQL's own estimate of them, ``estimated_rows``). Under the
    walk's settings a title pool of few matches walked it too, testing papers until enough
    titles matched (96 ms for a word in 8 % of 100,000 papers, against 3 ms from the title
    index); from the title index, a pool of many read each match to sort them by date
    ("task" in 18,000 titles of a million: 150 ms, walking 15). The title pools are read
    only where the newest matches do not hold them (``_newest_then_titles``)."""
    newest_statement = _statement(_flagged(newest, titled), _WALK)
    return [newest_statement, *_title_statements(titled, matches, reach)]


def _title_statements(titled: Sequence[QuerySet], matches=None, reach=None) -> list[tuple]:
    """The title pools' statements (``walk_statements``): walked (each pool's ``walked()`` form,
    ``relevance_pools``: title words tested by weight), or read whole from the title index."""
    return [
        _statement(part.walked(), _WALK)
        if _pool_walk_pays(part, matches, reach)
        else _statement(part, _BITMAPS)
        for part in titled
    ]


# A title pool's walk tests each paper's title words (``ts_filter``): 1.8 µs a paper walked
# at a million papers, against 1.2-1.6 for a word of the whole vector (``_WALKED``).
_TITLE_WALKED = 1.5


def _pool_walk_pays(part: QuerySet, matches: int | None = None, reach=None) -> bool:
    """Whether a pool (a sliced queryset of the newest matches) is read cheaper by walking the
    date index than by reading its every match. PostgreSQL's estimate multiplies the title
    condition's share by the words' own, though one implies the other: low, so the rule
    errs towards reading every match (walking for few matches is the costly mistake).

    Where the matches' months are known (``reach``), the walk's length is counted from them,
    the titles taken as spread over time as the matches are: "spins" in 31,000 of a million
    papers' words, mostly old physics, walked 132,000 papers for its 200 newest titles
    (236 ms), as the even spread would have met them within 30,000."""
    needed = part.query.high_mark - part.query.low_mark
    titles = estimated_rows(part)
    if not (matches and reach and reach.months and titles):
        return _walk_pays(titles, needed)
    reads = reach.walk_for(needed * max(matches / titles, 1))
    return reads is not None and titles * _READ > reads * _TITLE_WALKED


def estimated_rows(part: QuerySet) -> int:
    """PostgreSQL's estimate of how many rows ``part`` has without its slice (a plan, no
    execution: ~0.5 ms)."""
    unsliced = part.all()
    unsliced.query.clear_limits()
    compiler = unsliced.query.get_compiler(using=unsliced.db)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        return 0
    with connections[unsliced.db].cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        (plan,) = cursor.fetchone()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


def _statement(part: QuerySet, planner_settings: tuple[str, ...] = ()) -> tuple:
    """(compiler, sql, params, planner settings off) of ``part``, for ``_read_apart``."""
    compiler = part.query.get_compiler(using=part.db)
    sql, params = compiler.as_sql()
    return (compiler, sql, list(params), planner_settings)


def walks_date_index(matches: int | None, reads: int | None = None) -> bool:
    """Whether a ranking of this many matches finds its newest candidates by walking the
    date index (see ``_ranked_rows``): more matches than candidates, too many to test all.
    ``reads``: how many papers the walk reads, where known (``Summary.reach``)."""
    candidates = settings.SEARCH_RANK_CANDIDATES
    if matches is None or matches <= candidates:
        return False
    return _walk_pays(matches, candidates, reads)


def _walk_pays(matches: int, needed: int, reads: int | None = None) -> bool:
    """Whether walking an order's index until ``needed`` of ``matches`` passed beats reading
    every match. Without ``reads``: the walk reads ~needed x catalogue / matches papers (the
    matches spread evenly), each test cheap, and reading a match fully costs 10 times more
    (a phrase's positions and pattern). With ``reads``, the papers the walk reads counted
    by month (``Summary.reach``, for words): measured at a million papers, a paper
    walked costs 0.9-1.3 µs and a word's match read fully 2.5-3.4 µs ("recognizer", 12,000
    matches whose newest 2,000 reach back 120,000 papers: walking 154 ms, reading 36)."""
    if reads is None:
        return matches * matches * 10 > needed * catalogue_size()
    return matches * _READ > reads * _WALKED


def ranks_in_scan(matches: int | None, reach: Reach | None = None) -> bool:
    """Whether the pass finding a ranking's candidates should rank them too
    (``PaperQuerySet.by_relevance``): when it meets only candidates, or not many more than
    ``RANKED_IN_SCAN_UP_TO`` times as many."""
    if matches is None:
        return False  # unknown: the pass may meet every match
    if matches <= settings.SEARCH_RANK_CANDIDATES * RANKED_IN_SCAN_UP_TO:
        return True
    if reads_since_pays(matches, reach):
        return True
    return walks_date_index(matches, reach.walk if reach else None)


# A match ranked by the pass that finds it costs ~1.4 µs (its vector ranked where the scan
# holds its row); a candidate ranked after the pass, read again by its id, 4-8 µs (100,000
# papers, warm: "converg" in 3,000 papers ranked in 9.5 ms as found, 19 ms read again). So
# the pass ranks what it finds up to a few times the candidates; beyond, only the newest.
RANKED_IN_SCAN_UP_TO = 3


# What reading a ranking's newest candidates costs (``reads_since_pays``), relative to a paper
# walked in the date index (measured at a million papers, µs: a paper walked 0.9-1.6, a
# word's match read 2.5-4.3, an entry of the word's GIN bitmap 0.2, a paper of a date range's
# btree bitmap 0.13-0.17).
_WALKED, _READ, _ENTRY, _SPAN = 1.0, 3.0, 0.15, 0.12


# A search tested on each paper of a date range instead of read from the words' index
# (``tests_range_pays``), µs: a paper of the range tested ~3 (1.3-2.9 measured), an entry of
# the words' index read whole into a bitmap ~0.25 (0.21-0.29), where PostgreSQL prices it as
# nearly free. (``_ENTRY`` above is the same entry in the walk's units, where the since-month
# way reads a word's entry beside a date range's.)
_RANGE_PAPER_TESTED_US, _INDEX_ENTRY_READ_US = 3.0, 0.25


def tests_range_pays(papers: int, entries: float) -> bool:
    """Whether testing a search on each of a date range's ``papers`` costs less than reading
    the ``entries`` of its words' index (``search.index_entries``) to intersect with them."""
    return papers * _RANGE_PAPER_TESTED_US < entries * _INDEX_ENTRY_READ_US


def reads_since_pays(matches: int | None, reach: Reach | None) -> bool:
    """Whether reading the matches published since ``reach.since`` (``_read_since``) costs
    less than walking the date index and than reading every match: where the matches are
    neither so common that a short walk finds enough (a word in most papers) nor so few
    that reading them all is cheap."""
    if matches is None or reach is None or reach.since is None:
        return False
    if matches <= settings.SEARCH_RANK_CANDIDATES:
        return False  # every match is a candidate
    # The words' bitmap holds every paper with them, not only the filters' matches: a word
    # in 238,000 of a million papers, 11,000 of them in the date range, read since a month
    # in 68 ms, where walking the date index for its 2,000 newest took 18.
    since = max(matches, reach.entries) * _ENTRY + reach.span * _SPAN + reach.found * _READ
    return since < min(reach.walk * _WALKED, matches * _READ)


def reachable(results, count: int, limit: int) -> int:
    """How many of ``count`` matches pages can reach: at most ``limit``, and a cached
    ranking's own length (its candidates)."""
    reachable = min(count, limit)
    return min(reachable, len(results)) if isinstance(results, CachedRanking) else reachable


class KnownCountPaginator(Paginator):
    """A paginator told its count, so it does not run its own count(*) over the matches."""

    def __init__(self, object_list, per_page, *, count: int):
        super().__init__(object_list, per_page)
        self.__dict__["count"] = count  # Paginator.count is a cached_property

    def past_the_end(self, number: str | int | None) -> bool:
        """Whether ``number`` is a page number past the last page (pages stop at
        LIST_MAX_RESULTS results, or a ranking's candidates): such a page is an error that
        says so, not the last page again under endless URLs a crawler would follow."""
        try:
            return int(number) > self.num_pages
        except (TypeError, ValueError):
            return False  # no number, or not one: the paginator's first page

    def past_the_end_message(self) -> str:
        pages = f"{self.num_pages:,} page{'s' if self.num_pages != 1 else ''}"
        return (
            f"There {'are' if self.num_pages != 1 else 'is'} {pages}, reaching {self.count:,} "
            "results. To see others, narrow the search: a date range, a topic, more words."
        )
