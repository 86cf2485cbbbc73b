"""Search by words, by meaning, or both: which papers a query finds and in what order.

``mode`` (a list page parameter) picks the retrieval:

- ``keyword``: the full-text query (``catalogue.search``): every word required, ranked by
  cover density with a phrase bonus, among the newest matches and the newest title matches.
- ``semantic``: the ``SEMANTIC_NEIGHBOURS`` papers whose MiniLM embeddings are nearest the
  query's (or, with ``like``, a paper's), through the HNSW index, every other filter honoured.
- ``hybrid`` (the default with a query): both sets, fused by score. Each keyword candidate's
  relevance is scaled to [0, 1] by the best one's, and every candidate of either set gets its
  cosine similarity to the query (keyword candidates: the ``FUSE_DEPTH`` best):
  ``score = keyword + MEANING_WEIGHT * similarity``. A paper
  that has the words keeps its lead over one that merely means something close, and among
  papers with the words the one closer in meaning comes first; when the words match nothing
  (a reworded title), meaning alone orders the results. Rank fusion (RRF) of the two lists
  measured worse than keywords alone: it throws the scores away.

Every result says why it matched (``reasons``): ``words``, ``meaning`` or both.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from pgvector import HalfVector, Vector

from catalogue import embedder, search, semantic, summary
from catalogue.models import Paper, PaperEmbedding


class Mode:
    KEYWORD = "keyword"
    SEMANTIC = "semantic"
    HYBRID = "hybrid"
    CHOICES = [(HYBRID, "Words and meaning"), (KEYWORD, "Words"), (SEMANTIC, "Meaning")]


WORDS = "words"
MEANING = "meaning"

# Cosine similarity weighs this much against the best keyword score (1.0). Tuned on the
# development sets of ``python -m tests.bench eval_search``.
MEANING_WEIGHT = 0.3
# In hybrid mode a paper without the words is a match only this similar to the query (in
# semantic mode the nearest papers are listed whatever their similarity).
MEANING_FLOOR = 0.35
# Meaning re-orders the best keyword candidates only: below these a paper's words score too
# little for its meaning to lift it onto the first pages.
FUSE_DEPTH = 200


@dataclass
class Ranking:
    """Ranked paper ids and why each matched."""

    ids: list[int]
    reasons: dict[int, tuple[str, ...]] = field(default_factory=dict)


def query_vector(text: str) -> list[float] | None:
    """The embedding of a reader's query, or None when the embedder is not installed.
    Whitespace does not matter to the tokenizer, so it does not make another entry either."""
    try:
        return _query_vector(" ".join(text.split())).tolist()
    except embedder.ModelFilesMissing:
        return None


@functools.lru_cache(maxsize=1024)
def _query_vector(text: str) -> np.ndarray:
    """The process's memo of query vectors, over the one every process shares (Redis,
    ``QUERY_VECTOR_CACHE_SECONDS``): readers repeat queries (next pages, other filters, feeds)
    and a gunicorn worker sees only some of them. Kept as arrays (1.5 kB each; a tuple of
    Python floats would take 12 kB), read-only as they are shared."""
    seconds = settings.QUERY_VECTOR_CACHE_SECONDS
    key = f"query-vector:{embedder.QUERY_MODEL_ID}:{hashlib.sha256(text.encode()).hexdigest()}"
    stored = cache.get(key) if seconds > 0 else None
    if isinstance(stored, bytes) and len(stored) == embedder.DIMENSIONS * 4:
        return np.frombuffer(stored, dtype=np.float32)  # (read-only: it is the bytes')
    vector = embedder.get_query_embedder().embed([text])[0]
    vector.flags.writeable = False
    if seconds > 0:
        cache.set(key, vector.tobytes(), seconds)
    return vector


def paper_vector(paper: Paper):
    """A paper's embedding (load it with ``select_related("embedding")``), or None."""
    try:
        return list(paper.embedding.vector)
    except PaperEmbedding.DoesNotExist:
        return None


def neighbours(
    papers: QuerySet, vector, limit: int, exact: bool = False, published=None, years=None
):
    """(id, similarity) of the ``limit`` papers of ``papers`` nearest ``vector``, nearest
    first. Connections scan HNSW iteratively (``catalogue.semantic``): filters do not
    starve the result. ``exact``: every paper of ``papers`` measured, no index
    (``exact_scan_pays``). ``published``: the date range ``papers`` are limited to, if any
    (``PaperQuerySet.nearest_to``). ``years``: that range's parts, year by year
    (``by_year``), each searched apart."""
    if years:
        rows = _nearest_by_year(papers, vector, limit, years)
    elif exact and published:
        rows = nearest_measured(papers, vector, limit, published)
    else:
        nearest = papers.order_by().nearest_to(vector, limit, exact=exact, published=published)
        rows = list(nearest.values_list("pk", "distance"))
    # Ties (the same text listed twice) newest id first, as ``fuse`` orders them, whatever
    # order the plan (the HNSW scan, or each paper measured) handed them back in.
    return sorted(((pk, 1.0 - distance) for pk, distance in rows), key=lambda r: (-r[1], -r[0]))


# The nearest papers measured read this many more than ``limit`` (and a quarter more): the
# papers' other filters (hidden papers, a topic, an author) drop some of them.
_MEASURED_SPARE = 10


def nearest_measured(papers: QuerySet, vector, limit: int, published) -> list[tuple[int, float]]:
    """(pk, distance) of the ``limit`` papers of ``papers`` nearest ``vector``, each paper of
    the date range ``published`` (first, last; either None) measured: the embeddings read by
    their own copy of the date (``embedding_published_idx``) and the nearest few of them
    looked up among ``papers`` after. Joining every paper in range first, as a plain
    ``nearest_to(exact=True)`` does, costs ~2.1 µs a paper; this way ~0.6 (at 100,000 papers,
    a range of 13,000: 34 ms against 8). Where the papers' other filters drop so many of the
    nearest that fewer than ``limit`` are left, every paper is joined as before."""
    wanted = limit + limit // 4 + _MEASURED_SPARE
    nearest = _nearest_embeddings(papers.db, vector, published, wanted)
    # The ids as one array (``summary.of_ids``): an IN list of ~135 took 0.8 ms to plan.
    ids = summary.of_ids([pk for pk, _ in nearest])
    kept = set(papers.filter(ids).values_list("pk", flat=True))
    found = [(pk, distance) for pk, distance in nearest if pk in kept]
    if len(found) >= limit or len(nearest) < wanted:
        return found[:limit]
    joined = papers.order_by().nearest_to(vector, limit, exact=True, published=published)
    return list(joined.values_list("pk", "distance"))


def _nearest_embeddings(alias: str, vector, published, limit: int) -> list[tuple[int, float]]:
    """(paper id, distance) of the ``limit`` embeddings dated within ``published`` nearest
    ``vector``, whatever their papers."""
    first, last = published
    conditions, params = ["published_on IS NOT NULL"], [HalfVector(vector).to_text()]
    if first is not None:
        conditions.append("published_on >= %s")
        params.append(first)
    if last is not None:
        conditions.append("published_on <= %s")
        params.append(last)
    table = PaperEmbedding._meta.db_table
    # Ordered by an expression of the distance, which the HNSW index cannot answer: its scan
    # would hand back entries of every date, in about their order, not these exactly.
    sql = (
        f'SELECT paper_id, (vector <=> %s::halfvec) + 0.0 AS distance FROM "{table}"'
        f" WHERE {' AND '.join(conditions)} ORDER BY 2, 1 DESC LIMIT %s"
    )
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        return cursor.fetchall()


# What finding a filter's nearest papers costs, measured at 100,000 and 1,000,000 papers:
# the HNSW index's iterative scan ~30 µs for each entry it hands back (26-41 µs measured),
# and it hands back about ``limit`` × catalogue / filtered papers of them before ``limit``
# pass the filter; each filtered paper measured by the embeddings' date (``nearest_measured``)
# ~0.6 µs a paper; joined to its paper first (a year's part, ``by_year``), ~2.1.
_HNSW_ENTRY_US = 30.0
_MEASURED_PAPER_US = 0.6
_EXACT_PAPER_US = 2.1


def exact_scan_pays(papers: int, catalogue: int, limit: int) -> bool:
    """Whether measuring each of a filter's ``papers`` costs less than scanning the HNSW
    index until ``limit`` of them turn up: where a filter keeps few of the ``catalogue``'s
    papers (at a million papers, 10,000 of a few months: 130-190 ms scanned, 19 ms measured;
    24,000: 250-350 ms against 45). Pure."""
    if papers <= 0:
        return True
    handed_back = min(limit * catalogue / papers, semantic.MAX_SCAN_TUPLES)
    return papers * _MEASURED_PAPER_US < handed_back * _HNSW_ENTRY_US


@dataclass(frozen=True)
class YearPart:
    """One year's slice of a date range (``first`` to ``last``), its nearest papers found
    through the year's own HNSW index, or (``exact``) by measuring each of its papers."""

    first: dt.date
    last: dt.date
    exact: bool


def by_year(first: dt.date, last: dt.date, papers_between, catalogue: int, limit: int):
    """The parts (``YearPart``) in which a date range's nearest papers cost least to find,
    year by year, each year's from its own HNSW index (``semantic.INDEXED_YEARS``), or each
    of its papers measured where the range holds few of the year's; None where the whole
    range at once costs less (``exact_scan_pays``'s measures), or a year has no index.
    ``papers_between(first, last)``: about how many papers were published then. Pure.

    The whole catalogue's index hands back ~limit x catalogue / range entries before
    ``limit`` are in the range; a year's, ~limit x year / range's part of it. At a million
    papers, "baselines" in 2011-08-21..2013-01-09 (37,903 papers): 55 ms through the whole
    index, 57 measured, 10 year by year (2011 scanned, 2012 scanned, nine days of 2013
    measured)."""
    years = range(first.year, last.year + 1)
    if not all(year in semantic.INDEXED_YEARS for year in years):
        return None
    in_range = papers_between(first, last)
    whole = min(in_range * _MEASURED_PAPER_US, _scan_us(limit, catalogue, in_range))
    parts, cost = [], 0.0
    for year in years:
        start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
        low, high = max(first, start), min(last, end)
        in_part = papers_between(low, high)
        measured = in_part * _EXACT_PAPER_US
        scanned = _scan_us(limit, papers_between(start, end), in_part)
        parts.append(YearPart(low, high, exact=measured <= scanned))
        cost += min(measured, scanned)
        if cost * _BY_YEAR_MARGIN >= whole:
            return None  # (a long range: no need to price its other years)
    return parts


# Year by year only where it costs at most half the whole range's way, as estimated: each
# year's scan starts afresh (~2-4 ms for its first ``limit`` entries), where the whole index's
# further entries cost ~15-25 µs each. Measured (in-process, ms, whole range / year by year):
# at a million papers 2011-08-21..2013-01-09 57 / 20, 2013-12-21..2015-11-08 36 / 11,
# 2011-07-23..2014-02-07 34 / 19, 2016-03-07..2017-08-23 32 / 8 (estimated a fifth to a half);
# but 2014-11-19..2017-11-19 14 / 17, and at 100,000 2017-07-30..2020-10-18 9 / 14
# (estimated three quarters).
_BY_YEAR_MARGIN = 2.0


def _scan_us(limit: int, indexed: int, kept: int) -> float:
    """What an HNSW scan of an index of ``indexed`` papers costs until ``limit`` of the
    ``kept`` ones turn up."""
    if kept <= 0:
        return semantic.MAX_SCAN_TUPLES * _HNSW_ENTRY_US
    return min(limit * max(indexed, kept) / kept, semantic.MAX_SCAN_TUPLES) * _HNSW_ENTRY_US


def _nearest_by_year(papers: QuerySet, vector, limit: int, years) -> list[tuple[int, float]]:
    """(pk, distance) of the ``limit`` papers nearest ``vector``, found in each year's part
    (``by_year``), in one statement: each part's nearest, then the nearest of them all. A
    scanned part names its year's whole span, as its index's condition does, so that
    PostgreSQL knows the index holds its papers."""
    statements, params = [], []
    for part in years:
        # The papers' own dates too: a part measured each reads its papers by the date index
        # (else those of the whole range, each looked up to test its embedding's date).
        found = papers.order_by().filter(published_on__range=(part.first, part.last))
        if not part.exact:
            year = part.first.year
            found = found.filter(
                embedding__published_on__gte=dt.date(year, 1, 1),
                embedding__published_on__lt=dt.date(year + 1, 1, 1),
            )
        nearest = found.nearest_to(
            vector, limit, exact=part.exact, published=(part.first, part.last)
        )
        sql, part_params = nearest.values_list("pk", "distance").query.sql_with_params()
        statements.append(f"({sql})")
        params += part_params
    sql = f"SELECT * FROM ({' UNION ALL '.join(statements)}) AS nearest ORDER BY 2, 1 DESC LIMIT %s"
    with connections[papers.db].cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        return cursor.fetchall()


def similarities(ids: list[int], vector) -> dict[int, float]:
    """Cosine similarity of these papers to ``vector`` (papers without embeddings left out).
    Written as SQL: the ORM took ~0.5 ms of every ranked search to build and compile the
    same statement (tests/catalogue/test_hybrid_search.py compares)."""
    if not ids:
        return {}
    alias = PaperEmbedding.objects.all().db  # the router's choice, a replica's included
    table = PaperEmbedding._meta.db_table
    sql = f'SELECT paper_id, vector <=> %s FROM "{table}" WHERE paper_id = ANY(%s)'
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, [Vector(vector).to_text(), list(ids)])
        return {pk: 1.0 - distance for pk, distance in cursor.fetchall()}


def fuse(
    keyword: list[tuple[int, float]],
    meaning: list[tuple[int, float]],
    similarity: dict[int, float],
    weight: float = MEANING_WEIGHT,
) -> Ranking:
    """One ranking of keyword candidates (id, relevance) and semantic neighbours (id,
    similarity); ``similarity`` holds the keyword candidates' similarities. Pure."""
    best = max((score for _, score in keyword), default=0.0) or 1.0
    scores: dict[int, float] = {}
    reasons: dict[int, tuple[str, ...]] = {}
    for pk, score in keyword:
        sim = similarity.get(pk, 0.0)
        scores[pk] = score / best + weight * sim
        reasons[pk] = (WORDS, MEANING) if sim >= MEANING_FLOOR else (WORDS,)
    for pk, sim in meaning:
        if pk not in scores:
            scores[pk] = weight * sim
            reasons[pk] = (MEANING,)
    ids = sorted(scores, key=lambda pk: (-scores[pk], -pk))
    return Ranking(ids, reasons)


def semantic_ranking(meaning: list[tuple[int, float]]) -> Ranking:
    return Ranking([pk for pk, _ in meaning], {pk: (MEANING,) for pk, _ in meaning})


def keyword_ranking(keyword: list[tuple[int, float]]) -> Ranking:
    return Ranking([pk for pk, _ in keyword], {pk: (WORDS,) for pk, _ in keyword})


def matches_of(filtered: QuerySet, keyword_condition: Q | None, neighbour_ids: list[int]):
    """The papers of ``filtered`` a search finds: keyword matches, semantic neighbours, or
    both (either condition may be absent)."""
    condition = summary.of_ids(neighbour_ids) if neighbour_ids else None
    if keyword_condition is not None:
        condition = keyword_condition if condition is None else condition | keyword_condition
    return filtered.filter(condition) if condition is not None else filtered.none()


def near_enough(nearest: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The nearest papers that count as hybrid matches beside the words: ``MEANING_FLOOR``."""
    return [(pk, similarity) for pk, similarity in nearest if similarity >= MEANING_FLOOR]


def without_words(ids: list[int], words: Q) -> list[tuple[int, dt.date | None]]:
    """(id, published_on) of the papers ``ids`` (a hybrid search's neighbours by meaning)
    that do not meet ``words`` (its keyword condition): its matches by meaning alone, which
    the summary of its keyword matches does not count, in one statement."""
    if not ids:
        return []
    has_words = ExpressionWrapper(words, output_field=BooleanField())
    rows = Paper.objects.filter(summary.of_ids(ids)).annotate(has_words=has_words)
    return [
        (pk, published)
        for pk, published, has in rows.values_list("pk", "published_on", "has_words")
        if not has
    ]


def query_text_for_meaning(parsed: search.ParsedQuery) -> str:
    """What of a query is embedded: its positive words and phrases (not authors, not
    exclusions, not the syntax)."""
    return " ".join(
        term.text
        for group in parsed.groups
        for term in group
        if not term.negated and term.field != "author"
    )
