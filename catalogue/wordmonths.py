"""A common word's newest matches, with their ranks, read from month rows instead of found.

A search for one common word ranks its newest ``SEARCH_RANK_CANDIDATES`` matches (and its
newest title matches, a tenth as many). Found today, they are the papers a walk of the date
index tests until enough hold the word, then each one's vector is read again to rank it: at
a million papers "efficiency" in three years walked and ranked its 2,000 newest in 50-80 ms
of a 90-110 ms page (docs/benchmarks.md, twenty-ninth pass). Here the same rows are read
from ``catalogue_wordmonth`` (migration 0025): per common lexeme and month, the month's
matches newest first as parallel arrays of ids, ranks for the word alone (``ts_rank_cd``
with the ranking's weights, computed when the month was built: the same value a search
computes), days of the month and title flags. A range's newest 2,000 are a few rows.

A search for several plain words, each common ("sample physical"), reads the same rows for
its newest matches: each word's ids in the months where the summary says the newest lie,
intersected (``newest_with_all``). Their ranks are not in the rows (a paper's rank for the
words together counts how near they stand), so those 2,000 are ranked by id; at a million
papers that replaced reading every match's row from the words' index (8,676 for "sample
physical": 31 ms) with ~5 ms of rows and ~14 ms of ranking.

What is common is decided by ``recount``: the lexemes in at least ``COMMON_SHARE`` of the
papers (and ``COMMON_MIN`` papers); rarer words are ranked from the summary's pass over
every match, which costs no more. Kept apart from ingest, like the phrase pairs: triggers log
each month whose papers changed (``catalogue_wordmonthchange``) and a background task
(``catalogue.tasks.build_word_months``, after each ingest) rebuilds those months. A search
whose range holds a logged month, or a word not counted common, or any filter but dates,
ranks the way it always did (``PaperFilter._cached_ranking``): never a stale row.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence

import numpy as np
from django.db import connection, transaction
from django.db.models import Lookup

from catalogue import search, summary
from catalogue.routers import catalogue_connection

# A lexeme is common in at least this share of the papers, and at least COMMON_MIN of them.
COMMON_SHARE = 0.005
COMMON_MIN = 1_000
# Below this many papers nothing is counted common: the summary ranks every match.
MIN_PAPERS = 20_000
# Counted again once the catalogue has grown by this factor since the last count.
RECOUNT_GROWTH = 2.0
# The month of undated papers: last in a newest-first order, as NULL dates are.
UNDATED = dt.date(1, 1, 1)
FIRST_DATED = dt.date(1, 2, 1)
LAST_MONTH = dt.date(9999, 12, 1)
# How long a process trusts its list of common lexemes (``is_common``): a word counted common
# since is read the old way meanwhile; one no longer common is refused by the read itself.
COMMON_SECONDS = 60

_common: list = [-COMMON_SECONDS, frozenset()]


def ranking_settings() -> str:
    return search.RANKING_SETTINGS


def single_lexeme(parsed: search.ParsedQuery) -> str | None:
    """The one lexeme a query searches for and ranks by, where it is a single plain word
    (``rank_query`` "(('model'))"): no phrase, field, exclusion, OR, prefix or weight."""
    if len(parsed.groups) != 1 or len(parsed.groups[0]) != 1 or parsed.phrase_query:
        return None
    return _plain_lexeme(parsed, parsed.groups[0][0])


def plain_lexemes(parsed: search.ParsedQuery) -> tuple[str, ...] | None:
    """The lexemes a query requires, where each of its words is a plain one (as
    ``single_lexeme``'s) and every one is required: its matches are the papers holding them
    all ("sample physical"; a stop word, which PostgreSQL drops, requires nothing); else
    None. Ranked by more than each word alone (their nearness, the phrase's bonus), so
    their month rows give the matches, not the ranks."""
    lexemes = []
    for group in parsed.groups:
        if not any(term in parsed.matchers for term in group):
            continue  # only stop words: no condition
        lexeme = _plain_lexeme(parsed, group[0]) if len(group) == 1 else None
        if lexeme is None:
            return None  # an OR, a phrase, a field, an exclusion...
        lexemes.append(lexeme)
    return tuple(dict.fromkeys(lexemes)) or None


def _plain_lexeme(parsed: search.ParsedQuery, term) -> str | None:
    matcher = parsed.matchers.get(term)
    if term.negated or term.field or term.phrase or matcher is None or matcher.pattern:
        return None
    if matcher.vector != "search_vector":
        return None
    lexemes = search.query_lexemes(matcher.tsquery)
    if len(lexemes) != 1 or matcher.tsquery.strip() != f"'{lexemes[0]}'":
        return None  # several lexemes ("gpt-4"), or flags
    return lexemes[0]


def is_common(lexeme: str) -> bool:
    """Whether ``lexeme`` has month rows, as this process last read (``COMMON_SECONDS``)."""
    now = time.monotonic()
    if now - _common[0] >= COMMON_SECONDS:
        with catalogue_connection().cursor() as cursor:
            cursor.execute("SELECT lexeme FROM catalogue_commonword")
            _common[:] = [now, frozenset(row[0] for row in cursor.fetchall())]
    return lexeme in _common[1]


def forget_common() -> None:
    _common[:] = [-COMMON_SECONDS, frozenset()]


def date_bounds(queryset) -> tuple[dt.date | None, dt.date | None] | None:
    """(first, last) published day a queryset of papers keeps, where it filters by nothing
    but ``hidden=False`` and published dates; None where it filters by anything else (or
    keeps hidden papers), which the month rows cannot tell."""
    where = queryset.query.where
    if where.connector != "AND" or where.negated:
        return None
    first, last, visible = None, None, False
    for child in where.children:
        if not isinstance(child, Lookup) or getattr(child.lhs, "target", None) is None:
            return None
        name, kind, value = child.lhs.target.name, child.lookup_name, child.rhs
        if name == "hidden" and kind == "exact" and value is False:
            visible = True
        elif name == "published_on" and kind in ("gte", "lte", "range", "exact"):
            low, high = {"gte": (value, None), "lte": (None, value)}.get(kind, (value, value))
            if kind == "range":
                low, high = value
            if not all(isinstance(day, (dt.date, type(None))) for day in (low, high)):
                return None
            first = max(first, low) if first and low else first or low
            last = min(last, high) if last and high else last or high
        else:
            return None
    return (first, last) if visible else None


def _month(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _month_bounds(first: dt.date | None, last: dt.date | None) -> tuple[dt.date, dt.date]:
    """The first and last month rows a date range reads (no first day: from the undated on,
    unless there is a last day, which the undated are not before)."""
    return (
        _month(first) if first else (FIRST_DATED if last else UNDATED),
        _month(last) if last else LAST_MONTH,
    )


# Whether a word's month rows in a range may be read: the word is counted common, no month
# of the range changed since it was built, and the ranks were computed with the ranking's
# settings. Read in the statement that reads the rows: one snapshot.
_USABLE = """
WITH usable AS (
    SELECT EXISTS (SELECT 1 FROM catalogue_commonword WHERE lexeme = %(lexeme)s)
       AND NOT EXISTS (SELECT 1 FROM catalogue_wordmonthchange
                       WHERE month BETWEEN %(first)s AND %(last)s)
       AND EXISTS (SELECT 1 FROM catalogue_wordmonthsettings WHERE ranking = %(ranking)s)
       AS ok
)"""
# The months of a range newest first, each with how many of its rows and title rows come
# before it (not counting the newest month's, whose days may lie past the range), as far as
# the candidates reach.
_READ = (
    _USABLE
    + """, months AS (
    SELECT month, ids, ranks, days, in_title,
           sum(n) OVER newest - n - first_value(n) OVER newest AS before,
           sum(titled) OVER newest - titled - first_value(titled) OVER newest AS titled_before
    FROM catalogue_wordmonth
    WHERE lexeme = %(lexeme)s AND month BETWEEN %(first)s AND %(last)s
      AND (SELECT ok FROM usable)
    WINDOW newest AS (ORDER BY month DESC)
)
SELECT (SELECT ok FROM usable), month, ids, ranks, days, in_title FROM months
WHERE before < %(candidates)s OR titled_before < %(titles)s
UNION ALL SELECT ok, NULL, NULL, NULL, NULL, NULL FROM usable
ORDER BY 2 DESC NULLS LAST
"""
)
# Every month of a range, newest first, where its rows number at most %(limit)s (else they
# are not to be read).
_EVERY_MONTH = (
    _USABLE
    + """, few AS (
    SELECT ok AND coalesce((SELECT sum(n) FROM catalogue_wordmonth
                            WHERE lexeme = %(lexeme)s AND month BETWEEN %(first)s AND %(last)s),
                           0) <= %(limit)s AS ok
    FROM usable
)
SELECT (SELECT ok FROM few), month, ids, ranks, days, in_title FROM catalogue_wordmonth
WHERE lexeme = %(lexeme)s AND month BETWEEN %(first)s AND %(last)s AND (SELECT ok FROM few)
UNION ALL SELECT ok, NULL, NULL, NULL, NULL, NULL FROM few
ORDER BY 2 DESC NULLS LAST
"""
)


def _read(statement: str, lexeme: str, first, last, **values) -> list[tuple] | None:
    """The month rows a statement reads of a word in a date range, newest first, each
    (month, ids, ranks, days, in_title) with the rows outside the range cut; None where they
    may not be read (``_USABLE``)."""
    low, high = _month_bounds(first, last)
    with catalogue_connection().cursor() as cursor:
        cursor.execute(
            statement,
            {"lexeme": lexeme, "first": low, "last": high, "ranking": ranking_settings()} | values,
        )
        rows = cursor.fetchall()
    if not rows or not rows[0][0]:
        return None
    months = []
    for _, month, ids, ranks, days, in_title in rows:
        if month is None:
            break
        kept = _within(month, days, first, last)
        if kept is not None:
            ids, ranks, in_title = ids[kept], ranks[kept], in_title[kept]
        months.append((month, ids, ranks, in_title))
    return months


def every_month(
    lexeme: str, first: dt.date | None, last: dt.date | None, limit: int, *, ranked: bool = True
) -> dict[dt.date | None, summary.MonthMatches] | None:
    """Every match of a one-word query in a date range, by month (None: undated), each
    month's newest first with their ranks and title flags, as a summary's pass over every
    match reads them (``summary.exact_from_ids``; ranks only where ``ranked``, as it reads
    them only where asked); None where the rows may not be read or
    the months hold more than ``limit`` matches (the summary estimates from its sample)."""
    months = _read(_EVERY_MONTH, lexeme, first, last, limit=limit)
    if months is None:
        return None
    return {
        (None if month == UNDATED else month): (
            summary.MonthMatches(ids, ranks, in_title) if ranked else summary.MonthMatches(ids)
        )
        for month, ids, ranks, in_title in months
        if ids
    }


def ranked_rows(
    lexeme: str, first: dt.date | None, last: dt.date | None, candidates: int, *, titles: bool
) -> list[tuple[int, float]] | None:
    """(pk, rank) rows, most relevant first, of ``by_relevance``'s pools for a one-word query
    in a date range: the ``candidates`` newest matches and, with ``titles``, the newest
    ``candidates / 10`` title matches; None where the month rows may not be read (the
    caller ranks the old way)."""
    title_limit = max(candidates // 10, 1) if titles else 0
    months = _read(_READ, lexeme, first, last, candidates=candidates, titles=title_limit)
    if months is None:
        return None
    # The months read reach the candidates: ranked as a summary's every match would be.
    ids = [pk for _, month_ids, _, _ in months for pk in month_ids]
    ranks = [
        (rank, flag)
        for _, _, month_ranks, in_title in months
        for rank, flag in zip(month_ranks, in_title, strict=True)
    ]
    return summary.ranked_from_summary(ids, ranks, candidates, titles=titles)


def newest_ids(
    lexeme: str, first: dt.date | None, last: dt.date | None, limit: int
) -> list[int] | None:
    """The ids of a one-word query's ``limit`` newest matches in a date range, newest first
    as ``newest_first`` orders them (undated last): a feed's entries, read from the month rows
    instead of every match found in the papers and sorted by date (at a million papers a
    word in 1 % of them took 34 ms of its feed that way); None where the rows may not be
    read."""
    months = _read(_READ, lexeme, first, last, candidates=limit, titles=0)
    if months is None:
        return None
    return [pk for _, ids, _, _ in months for pk in ids][:limit]


def newest_with_all(
    lexemes: Sequence[str],
    first: dt.date | None,
    last: dt.date | None,
    limit: int,
    *,
    since: dt.date,
) -> list[int] | None:
    """The ids of the ``limit`` newest papers holding every one of ``lexemes`` (all common)
    in a date range, newest first as ``newest_first`` orders them (undated last): the words'
    month rows intersected. None where the rows may not be read (a word not counted common,
    a month of the range changed since it was built).

    ``since``: the month from which they are likely enough (``Summary.reach``); the months
    before it are read only where those after fall short. Common words are common: at a
    million papers "sample" is in 136,000 papers and "physical" in 83,000, and the 2,000
    newest papers with both lie among 120,000 of their ids since 2021. Found in the papers
    instead, from the words' index and each match's date, they took 31 ms (all 8,676
    matches' rows read)."""
    if not all(is_common(lexeme) for lexeme in lexemes):
        return None
    low, high = _month_bounds(first, last)
    start = max(low, min(since, high))  # (a month past the range: the range's last)
    reads = [(start, high)] + ([(low, start - dt.timedelta(days=1))] if start > low else [])
    found: list[int] = []
    for read_low, read_high in reads:
        words = _read_all_of(lexemes, (low, high), (read_low, read_high), first, last)
        if words is None:
            return None
        found += _held_by_all(words)
        if len(found) >= limit:
            break
    return found[:limit]


# Every word's month rows from ``read_low`` to ``read_high``, newest month first, where each
# word is counted common and no month of the whole range (``low`` to ``high``) changed since
# it was built (``_USABLE``, for several words). The ids in PostgreSQL's binary form
# (``array_send``): as text, parsing 120,000 of them took 10 ms, as bytes 5 (``_ids_of``).
# The days only of the range's first and last months, the only ones cut by day.
_READ_ALL_OF = """
WITH usable AS (
    SELECT (SELECT count(*) FROM catalogue_commonword WHERE lexeme = ANY(%(lexemes)s))
               = cardinality(%(lexemes)s::text[])
       AND NOT EXISTS (SELECT 1 FROM catalogue_wordmonthchange
                       WHERE month BETWEEN %(low)s AND %(high)s)
       AND EXISTS (SELECT 1 FROM catalogue_wordmonthsettings WHERE ranking = %(ranking)s)
       AS ok
)
SELECT (SELECT ok FROM usable), month, lexeme, array_send(ids),
       CASE WHEN month IN (%(first_month)s, %(last_month)s) THEN days END
FROM catalogue_wordmonth
WHERE lexeme = ANY(%(lexemes)s) AND month BETWEEN %(read_low)s AND %(read_high)s
  AND (SELECT ok FROM usable)
UNION ALL SELECT ok, NULL, NULL, NULL, NULL FROM usable
ORDER BY 2 DESC NULLS LAST
"""


def _read_all_of(lexemes: Sequence[str], whole: tuple, read: tuple, first, last):
    """{lexeme: its ids in the months read, newest first (an array)} of ``_READ_ALL_OF``,
    those of the range's first and last months cut by day; None where the rows may not be
    read."""
    with catalogue_connection().cursor() as cursor:
        cursor.execute(
            _READ_ALL_OF,
            {
                "lexemes": list(lexemes),
                "low": whole[0],
                "high": whole[1],
                "read_low": read[0],
                "read_high": read[1],
                "first_month": _month(first) if first else None,
                "last_month": _month(last) if last else None,
                "ranking": ranking_settings(),
            },
        )
        rows = cursor.fetchall()
    if not rows or not rows[0][0]:
        return None
    words: dict[str, list] = {lexeme: [] for lexeme in lexemes}
    for _, month, lexeme, sent, days in rows:
        if month is None:
            continue
        ids = _ids_of(sent)
        cut = _within(month, days, first, last) if days is not None else None
        words[lexeme].append(ids if cut is None else ids[cut])
    return {lexeme: np.concatenate(parts or [_NO_IDS]) for lexeme, parts in words.items()}


_NO_IDS = np.empty(0, dtype=">i4")


def _ids_of(sent: bytes) -> np.ndarray:
    """An integer array's elements from its binary form (``array_send``: dimensions, flags
    and element type, each dimension's length and lower bound, then each element's length
    and value, big-endian)."""
    if int.from_bytes(sent[:4], "big") == 0:
        return _NO_IDS  # no dimension: empty
    return np.frombuffer(sent, dtype=">i4", offset=20)[1::2]


def _held_by_all(words: dict[str, np.ndarray]) -> list[int]:
    """The ids every word's array holds, in the order of the fewest's (each word's ids are
    in the same order: month by month, newest first; a paper is in one month)."""
    fewest, *others = sorted(words.values(), key=len)
    for other in others:
        fewest = fewest[np.isin(fewest, other, assume_unique=True)]
    return fewest.tolist()


def _within(
    month: dt.date, days: Sequence[int], first: dt.date | None, last: dt.date | None
) -> slice | None:
    """The slice of a month's rows (newest first) published within the range; None: all."""
    start, stop = 0, len(days)
    if last and month == _month(last):
        while start < stop and days[start] > last.day:
            start += 1
    if first and month == _month(first):
        while stop > start and days[stop - 1] < first.day:
            stop -= 1
    return None if (start, stop) == (0, len(days)) else slice(start, stop)


# --- building ------------------------------------------------------------------------------


def recount(share: float | None = None, minimum: int | None = None) -> int:
    """Count again which lexemes are common, drop every month row and log every month as
    changed (the background task builds them again); how many lexemes are common. Lexemes
    holding a quote or a backslash are left out: their tsquery text is escaped."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM catalogue_paper WHERE NOT hidden")
        (papers,) = cursor.fetchone()
        cursor.execute("TRUNCATE catalogue_commonword, catalogue_wordmonth")
        cursor.execute(
            "INSERT INTO catalogue_commonword (lexeme) SELECT word FROM ts_stat("
            "'SELECT search_vector FROM catalogue_paper WHERE NOT hidden')"
            " WHERE ndoc >= %s AND word !~ '[''\\\\]'",
            [
                max(
                    COMMON_MIN if minimum is None else minimum,
                    (COMMON_SHARE if share is None else share) * papers,
                )
            ],
        )
        common = cursor.rowcount
        cursor.execute("DELETE FROM catalogue_wordmonthsettings")
        cursor.execute(
            "INSERT INTO catalogue_wordmonthsettings (ranking, papers) VALUES (%s, %s)",
            [ranking_settings(), papers],
        )
        cursor.execute("TRUNCATE catalogue_wordmonthchange")
        if common:
            cursor.execute(
                "INSERT INTO catalogue_wordmonthchange (month)"
                " SELECT DISTINCT catalogue_word_month(published_on) FROM catalogue_paper"
            )
    forget_common()
    return common


def needs_recount(min_papers: int | None = None) -> bool:
    """Whether the catalogue is large enough and no count was made, or it has grown
    ``RECOUNT_GROWTH`` times since (or the ranking's settings changed)."""
    minimum = MIN_PAPERS if min_papers is None else min_papers
    with catalogue_connection().cursor() as cursor:
        cursor.execute(_SIZE_AND_COUNT, {"minimum": minimum})
        papers, ranking, counted = cursor.fetchone()
    if papers < minimum:
        return False
    return ranking != ranking_settings() or papers > RECOUNT_GROWTH * (counted or 0)


def count_if_needed() -> int | None:
    """``recount`` where ``needs_recount``: how many lexemes are common, None where the count
    stands (what the task, the command and the benchmarks do before building)."""
    return recount() if needs_recount() else None


# The catalogue's size as the statistics know it, and the last count's settings. A catalogue
# just loaded in bulk is not analysed yet (its reltuples is 0 until autovacuum comes by, after
# the task that follows the ingest has run): the statistics' live rows count inserts as they
# are committed, and below the minimum the papers are counted, up to the minimum only.
_SIZE_AND_COUNT = """
SELECT CASE WHEN known >= %(minimum)s THEN known ELSE (
           SELECT count(*) FROM (SELECT FROM catalogue_paper LIMIT %(minimum)s) AS first)
       END,
       ranking, counted
FROM (SELECT greatest(
          (SELECT reltuples FROM pg_class WHERE oid = 'catalogue_paper'::regclass),
          (SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'catalogue_paper'::regclass),
          0) AS known) AS size
LEFT JOIN (SELECT ranking, papers AS counted FROM catalogue_wordmonthsettings) AS s ON true
"""


# Each month's rows from its papers, for the common lexemes: ranks by ``ts_rank_cd`` of the
# lexeme alone, as a one-word search ranks it; each paper's vector read once (MATERIALIZED:
# inlined, PostgreSQL re-read it for every lexeme).
_BUILD = """
INSERT INTO catalogue_wordmonth (lexeme, month, n, titled, ids, ranks, days, in_title)
WITH papers AS MATERIALIZED (
    SELECT id, published_on, search_vector AS vector FROM catalogue_paper
    WHERE NOT hidden AND search_vector IS NOT NULL AND {in_month}
)
SELECT entry.lexeme, %(month)s, count(*), count(*) FILTER (WHERE 'A' = ANY(entry.weights)),
    array_agg(papers.id::integer ORDER BY papers.published_on DESC NULLS LAST, papers.id DESC),
    array_agg(ts_rank_cd(%(weights)s::real[], papers.vector,
                         ('''' || entry.lexeme || '''')::tsquery, %(normalization)s)
              ORDER BY papers.published_on DESC NULLS LAST, papers.id DESC),
    array_agg(coalesce(extract(day FROM papers.published_on), 0)::smallint
              ORDER BY papers.published_on DESC NULLS LAST, papers.id DESC),
    array_agg('A' = ANY(entry.weights)
              ORDER BY papers.published_on DESC NULLS LAST, papers.id DESC)
FROM papers CROSS JOIN LATERAL unnest(papers.vector) AS entry
WHERE entry.lexeme IN (SELECT lexeme FROM catalogue_commonword)
GROUP BY entry.lexeme
"""


def build_changed_month() -> dt.date | None:
    """Build the newest logged month's rows again, in one transaction; which month (None:
    none left, or each taken by another builder).

    Repeatable read: the papers are read in the snapshot in which the month's log entries
    are deleted, so an entry logged after it (a paper changed meanwhile) is not deleted and
    the month is built again. Builders take different months (an advisory lock each).
    Nothing logged, it starts no transaction (a task run inside another one, as tests run
    tasks eagerly, is then no error)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM catalogue_wordmonthchange)")
        if not cursor.fetchone()[0]:
            return None
    if connection.in_atomic_block:
        raise RuntimeError("a month is built in a repeatable-read transaction of its own")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("SELECT DISTINCT month FROM catalogue_wordmonthchange ORDER BY month DESC")
        for (month,) in cursor.fetchall():
            cursor.execute(
                "SELECT pg_try_advisory_xact_lock(hashtext('catalogue_wordmonth'), %s)",
                [month.year * 12 + month.month],
            )
            if cursor.fetchone()[0]:
                _build(cursor, month)
                return month
    return None


def _build(cursor, month: dt.date) -> None:
    cursor.execute("DELETE FROM catalogue_wordmonth WHERE month = %s", [month])
    # A range of the date index (the undated: its NULLs), not the month of every paper.
    in_month = (
        "published_on IS NULL"
        if month == UNDATED
        else "published_on >= %(month)s AND published_on < %(next)s"
    )
    following = (month + dt.timedelta(days=32)).replace(day=1)
    cursor.execute(
        _BUILD.format(in_month=in_month),
        {
            "month": month,
            "next": following,
            "weights": search.RANK_WEIGHTS,
            "normalization": search.RANK_NORMALIZATION,
        },
    )
    cursor.execute("DELETE FROM catalogue_wordmonthchange WHERE month = %s", [month])


def build_all() -> int:
    """Build every logged month; how many (``manage.py`` and the benchmarks)."""
    built = 0
    while build_changed_month() is not None:
        built += 1
    return built
