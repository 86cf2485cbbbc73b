"""Phrases found from an index of adjacent word pairs, not by testing every paper with the words.

PostgreSQL's index of search vectors knows which papers hold a word, not where: a phrase is
found by testing each paper that holds all of its words. For two common words that seldom
stand together that is most of the work of a search: "improvement multi" at a million papers
tested the 89,180 papers holding both words to find none (280 ms). So each paper's search
vector also gives its pairs of adjacent lexemes (``catalogue_phrase_pairs``, migration 0022),
hashed, in ``PhrasePairs`` with a GIN index; a phrase's ``<->`` neighbours must all be among a
matching paper's pairs, so that index finds the few papers worth testing (0.7 ms).

The pairs are computed by a background task (``pair_pending``, run by
``catalogue.tasks.pair_phrases`` after each ingest), not by ingest: kept by every insert, the
index made ingest 38 % slower (docs/benchmarks.md, thirteenth pass). Until a paper is paired,
and again after its text changes, it is in ``PhrasePending`` (database triggers put it there),
and a phrase search tests every pending paper as well, so nothing is ever missed.

Used only where it pays (``pairs_pay``): a phrase whose rarest pair is in few papers, while
few papers are pending. A common phrase ("language models") is found faster the old way, by
walking the date index, than by comparing each walked paper with an array of 300,000 ids.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Lookup

from catalogue.routers import catalogue_connection

# A phrase is read from the pairs' index where its rarest pair is in at most this many papers
# (PostgreSQL's statistics of the pairs), and while at most PENDING_LIMIT papers wait to be
# paired: every one of those is tested too.
PAIRED_LIMIT = 20_000
PENDING_LIMIT = 5_000
# Papers paired per statement of the background task.
PAIR_BATCH = 2_000
# The pairs' GIN index takes new entries into a pending list, merged into the index whenever
# the list outgrows ``gin_pending_list_limit`` (4 MB by default): each merge rewrites posting
# lists all over a large index. While more than PENDING_LIMIT papers wait, no search reads
# the index (``pairs_pay``), so the pairing lets the list grow to this much and merges it in
# fewer, larger passes: at a million papers, 20,000 papers paired in 300-346 µs each instead
# of 436-470 (docs/benchmarks.md, twenty-sixth pass). With PENDING_LIMIT or fewer waiting
# the server's own setting is back, and the next pairing's first insert merges what the
# larger list held: a search reading the index scans no larger list than before (unless its
# process's pending count, up to STATE_SECONDS old, predates a new backlog).
BACKLOG_PENDING_LIST = "64MB"
# How long a process keeps the pairs' statistics and the pending count it read.
STATE_SECONDS = 10

_TSQUERY_TOKEN = re.compile(r"\s*(?:'((?:[^'\\]|'')*)'(:[A-D*]+)?|<(\d+|-)>)")


def pair_hash(first: str, second: str) -> int:
    """The int4 a pair of lexemes is stored as: the first 4 bytes of the md5 of "first second",
    signed, as ``catalogue_phrase_pairs`` computes it in SQL. Pure."""
    digest = hashlib.md5(f"{first} {second}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def required_pairs(tsquery: str) -> tuple[int, ...]:
    """The hashed pairs every paper matching a phrase's tsquery holds: the lexemes joined by
    ``<->`` (adjacent positions) in a chain such as ``'gpt' <-> '-4' <-> 'model'``. Empty where
    the text is anything else (a prefix, OR, a lexeme with a quote or backslash, whose text
    form is escaped): then the phrase is found the old way. Pure."""
    lexemes: list[str | None] = []
    operators: list[str] = []
    position = 0
    while position < len(tsquery.rstrip()):
        token = _TSQUERY_TOKEN.match(tsquery, position)
        if token is None:
            return ()
        position = token.end()
        lexeme, flags, distance = token.groups()
        if distance is not None:
            operators.append(distance)
        elif "'" in lexeme or "*" in (flags or ""):
            lexemes.append(None)  # not comparable with the stored pairs
        else:
            lexemes.append(lexeme)
    if len(operators) != len(lexemes) - 1:
        return ()
    pairs = {
        pair_hash(first, second)
        for first, second, distance in zip(lexemes, lexemes[1:], operators, strict=False)
        if first is not None and second is not None and distance in ("-", "1")
    }
    return tuple(sorted(pairs))


class PairedOrPending(Lookup):
    """``id = ANY(ARRAY(papers holding every pair, and every pending paper))``: an array made
    once per statement, so it is a bitmap of the primary key wherever the phrase is (also in
    an OR, beside a search's neighbours by meaning), never a test of each row. The pairs are
    necessary, not sufficient: the phrase's own test stays beside it."""

    lookup_name = "paired_or_pending"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        array = "{" + ",".join(str(int(pair)) for pair in self.rhs) + "}"
        return (
            f"{lhs} = ANY(ARRAY(SELECT paper_id FROM catalogue_phrasepairs"
            " WHERE pairs @> %s::integer[]"
            " UNION ALL SELECT paper_id FROM catalogue_phrasepending))",
            [*params, array],
        )


@dataclass(frozen=True)
class PairState:
    shares: dict[str, float]  # hash (as text) -> share of papers, the commonest pairs'
    rare: float  # the share assumed for a pair the statistics do not list
    analysed: bool  # whether the pairs' table has statistics at all
    papers: int  # PostgreSQL's estimate of the papers
    pending: int  # papers waiting to be paired (counted up to PENDING_LIMIT + 1)


_state: list = [-STATE_SECONDS, None]


def pairs_pay(pairs: tuple[int, ...]) -> bool:
    """Whether a phrase with these pairs is read cheaper from the pairs' index than by testing
    every paper with its words (see the module's docstring)."""
    if not pairs:
        return False
    state = pair_state()
    if state.pending > PENDING_LIMIT:
        return False
    if not state.analysed:
        # No statistics yet (a new table): every pair looks rare; trust that only while the
        # whole catalogue is smaller than the limit.
        return state.papers <= PAIRED_LIMIT
    share = min(state.shares.get(str(pair), state.rare) for pair in pairs)
    return share * state.papers <= PAIRED_LIMIT


def pair_state() -> PairState:
    """The pairs' statistics and the pending count, read at most every STATE_SECONDS."""
    now = time.monotonic()
    if now - _state[0] >= STATE_SECONDS or _state[1] is None:
        _state[:] = [now, _read_state()]
    return _state[1]


def forget_state() -> None:
    """Read the state afresh next time (tests, and the task after it paired papers)."""
    _state[:] = [-STATE_SECONDS, None]


# How many papers wait to be paired, counted up to its parameter (PENDING_LIMIT + 1: whether
# more than the limit wait is all that is asked).
_WAITING = "(SELECT count(*) FROM (SELECT 1 FROM catalogue_phrasepending LIMIT %s) AS p)"


def _read_state() -> PairState:
    with catalogue_connection().cursor() as cursor:
        cursor.execute(
            "SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs,"
            " s.attname IS NOT NULL,"
            " (SELECT reltuples::bigint FROM pg_class WHERE oid = 'catalogue_paper'::regclass),"
            f" {_WAITING}"
            " FROM (SELECT 1) AS one LEFT JOIN pg_stats s ON s.schemaname = current_schema()"
            " AND s.tablename = 'catalogue_phrasepairs' AND s.attname = 'pairs'",
            [PENDING_LIMIT + 1],
        )
        pairs, shares, analysed, papers, pending = cursor.fetchone()
    pairs, shares = (pairs, shares) if pairs else ([], [])
    # After the elements' own shares come the least and most of them and the null share; a
    # pair the list lacks is rarer than the least (PostgreSQL assumes half of it).
    rare = shares[len(pairs)] / 2 if len(shares) > len(pairs) else 0.0
    common = dict(zip(pairs, shares, strict=False))
    return PairState(common, rare, analysed, max(papers, 0), pending)


def pair_pending(batch: int = PAIR_BATCH) -> int:
    """Pair up to ``batch`` pending papers, in one transaction; how many were taken from the
    pending (0: none left). Concurrent calls take different papers (SKIP LOCKED). A paper being
    changed meanwhile is read as changed (FOR SHARE waits for the change), or, changed after,
    is pending again (its trigger's insert waits for this transaction)."""
    with transaction.atomic(), connection.cursor() as cursor:
        _grow_pending_list_in_backlog(cursor)
        cursor.execute(
            """
            WITH picked AS (
                SELECT paper_id FROM catalogue_phrasepending
                ORDER BY paper_id LIMIT %s FOR UPDATE SKIP LOCKED
            ), paired AS (
                INSERT INTO catalogue_phrasepairs (paper_id, pairs)
                SELECT id, catalogue_phrase_pairs(search_vector) FROM catalogue_paper
                WHERE id IN (SELECT paper_id FROM picked) AND search_vector IS NOT NULL
                FOR SHARE
                ON CONFLICT (paper_id) DO UPDATE SET pairs = EXCLUDED.pairs
            )
            DELETE FROM catalogue_phrasepending WHERE paper_id IN (SELECT paper_id FROM picked)
            """,
            [batch],
        )
        return cursor.rowcount


def _grow_pending_list_in_backlog(cursor) -> None:
    """For this transaction, ``BACKLOG_PENDING_LIST`` as the GIN pending list's limit where
    more than PENDING_LIMIT papers wait to be paired (no search reads the index then)."""
    cursor.execute(
        f"SELECT set_config('gin_pending_list_limit', %s, true) WHERE {_WAITING} > %s",
        [BACKLOG_PENDING_LIST, PENDING_LIMIT + 1, PENDING_LIMIT],
    )


def pair_all(batch: int = PAIR_BATCH) -> int:
    """Pair every pending paper, then refresh the pairs' statistics; how many were paired."""
    done = 0
    while paired := pair_pending(batch):
        done += paired
    if done:
        analyse()
    return done


def analyse() -> None:
    """Fresh statistics of the pairs (which pairs are common), as ``pairs_pay`` reads them."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_phrasepairs")
    forget_state()
