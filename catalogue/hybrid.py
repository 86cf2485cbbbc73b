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
from django.db.models import F, Lookup, Q, QuerySet
from pgvector.django import CosineDistance

from catalogue import embedder, search, semantic
from catalogue.models import YEAR_INDEXED, Paper, PaperEmbedding


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
    key = f"query-vector:{embedder.MODEL_ID}:{hashlib.sha256(text.encode()).hexdigest()}"
    stored = cache.get(key) if seconds > 0 else None
    if isinstance(stored, bytes) and len(stored) == embedder.DIMENSIONS * 4:
        return np.frombuffer(stored, dtype=np.float32)  # (read-only: it is the bytes')
    vector = embedder.get_embedder().embed([text])[0]
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


@dataclass(frozen=True)
class YearScan:
    """Part of a date range's nearest papers: one year's, through the year's own HNSW index
    (``PaperEmbedding``), or the papers of the years ``year`` to ``last`` each measured
    (``exact``; years with few papers, or none the estimate knows of, or none indexed)."""

    year: int
    exact: bool = False
    last: int | None = None  # (an exact part's last year; None: ``year`` alone)


@dataclass(frozen=True)
class Scan:
    """How a filter's nearest papers are found (``plan_scan``): through the whole
    catalogue's HNSW index (the default), each paper of the filter measured (``exact``), or
    the date range's years each scanned (``years``) and their nearest merged."""

    exact: bool = False
    years: tuple[YearScan, ...] = ()


def neighbours(papers: QuerySet, vector, limit: int, scan: Scan = Scan()):
    """(id, similarity) of the ``limit`` papers of ``papers`` nearest ``vector``, nearest
    first. Connections scan HNSW iteratively (``catalogue.semantic``): filters do not
    starve the result. ``scan``: which way (``plan_scan``)."""
    papers = papers.order_by()
    if scan.years:
        # One statement: each part's nearest (its own LIMIT), the best of them kept below.
        parts = [_year_part(papers, part).nearest_to(vector, limit, exact=part.exact)
                 for part in scan.years]  # fmt: skip
        columns = [part.values_list("pk", "distance") for part in parts]
        nearest = columns[0].union(*columns[1:], all=True) if len(columns) > 1 else columns[0]
    else:
        nearest = papers.nearest_to(vector, limit, exact=scan.exact).values_list("pk", "distance")
    rows = sorted(nearest, key=lambda row: (row[1], row[0]))[:limit]
    return [(pk, 1.0 - distance) for pk, distance in rows]


def _year_part(papers: QuerySet, part: YearScan) -> QuerySet:
    if not part.exact:
        return papers.filter(embedding__published_year=part.year)  # the year's HNSW index
    # The years' papers, found by the date index, each measured.
    first, last = dt.date(part.year, 1, 1), dt.date(part.last or part.year, 12, 31)
    return papers.filter(published_on__gte=first, published_on__lte=last)


# What finding a filter's nearest papers costs, measured at 100,000 and 1,000,000 papers:
# the HNSW index's iterative scan ~30 µs for each entry it hands back (26-41 µs measured),
# and it hands back about ``limit`` × catalogue / filtered papers of them before ``limit``
# pass the filter; the distance of each filtered paper, without the index, ~2.1 µs a paper.
_HNSW_ENTRY_US = 30.0
_EXACT_PAPER_US = 2.1
# A year's own index costs this much more to start a scan of, beside its entries (~2.5 ms a
# year measured at a million papers, 14 years 40 ms, however few entries it hands back; in
# this model's units, where each paper measured costs 2.1). Fitted to 30 date ranges of the
# bench's searches at 100k and 1M papers: their mean cost 7.9 / 8.9 ms, against 7.9 / 8.0
# for the cheapest way of each range and 10.9 / 14.0 through the whole index alone.
_YEAR_SCAN_US = 3_000.0


def plan_scan(
    span: tuple[int, int], parts: dict[int, tuple[int, int]], catalogue: int, limit: int
) -> Scan:
    """The cheapest way to a date range's ``limit`` nearest papers (``_HNSW_ENTRY_US``,
    ``_EXACT_PAPER_US``): the whole catalogue's index, which hands back entries of every year
    until enough fall in the range; each paper of the range measured; or each year of the
    range by the cheaper of its own index and its papers measured. ``span``: the range's
    first and last years (``dt.MINYEAR``, ``dt.MAXYEAR`` for an open end); ``parts``:
    {year: (papers of the range in that year, papers of the year)}, estimated;
    ``catalogue``: every paper. Pure.

    Every year of the span is searched: one the estimate holds no paper of (a sample can
    miss a few) has its papers measured, with the years beside it that are measured too
    and those without an index of their own, in one part.

    Measured at a million papers: 10,000 papers of a few months, 130-190 ms through the
    whole index, 19 ms measured each (24,000: 250-350 ms against 45); "analysis" in
    2007-06..2010-02 (50,000 papers): the whole index 67 ms, each paper 56, the four years'
    indexes 19.5 (the full years 1.5-2.2 ms each; and 72 of the 100 nearest the same as
    measuring each, against 46 through the whole index, which relaxes its order while it
    hands back entries far outside the range)."""
    in_range = sum(papers for papers, _ in parts.values())
    whole = _index_cost(in_range, catalogue, limit)
    exact = in_range * _EXACT_PAPER_US
    years, by_year = _years_plan(span, parts, limit)
    if exact <= min(whole, by_year):
        return Scan(exact=True)
    if by_year < whole:
        return Scan(years=years)
    return Scan()


def _years_plan(span, parts, limit) -> tuple[tuple[YearScan, ...], float]:
    """Each year of ``span`` the cheaper way (``plan_scan``), consecutive measured years in
    one part; and what it all costs (µs)."""
    first, last = span
    planned: list[YearScan] = []
    cost = 0.0

    def measure(year: int, through: int) -> None:
        previous = planned[-1] if planned else None
        if previous and previous.exact and previous.last + 1 == year:
            planned[-1] = YearScan(previous.year, exact=True, last=through)
        else:
            planned.append(YearScan(year, exact=True, last=through))

    if first < YEAR_INDEXED[0]:  # years without an index of their own: each paper measured
        measure(first, min(last, YEAR_INDEXED[0] - 1))
    for year in range(max(first, YEAR_INDEXED[0]), min(last, YEAR_INDEXED[-1]) + 1):
        papers, of_year = parts.get(year, (0, 0))
        measured = papers * _EXACT_PAPER_US
        indexed = _YEAR_SCAN_US + _index_cost(papers, of_year, limit) if papers else float("inf")
        if indexed < measured:
            planned.append(YearScan(year))
        else:
            measure(year, year)
        cost += min(measured, indexed)
    if last > YEAR_INDEXED[-1]:
        measure(max(first, YEAR_INDEXED[-1] + 1), last)
    unindexed = [papers for year, (papers, _) in parts.items() if year not in YEAR_INDEXED]
    return tuple(planned), cost + sum(unindexed) * _EXACT_PAPER_US


def _index_cost(papers: int, indexed: int, limit: int) -> float:
    """µs to find ``limit`` of ``papers`` through an HNSW index of ``indexed`` papers."""
    if papers <= 0:
        return 0.0
    handed_back = min(limit * max(indexed, papers) / papers, semantic.MAX_SCAN_TUPLES)
    return handed_back * _HNSW_ENTRY_US


def similarities(ids: list[int], vector) -> dict[int, float]:
    """Cosine similarity of these papers to ``vector`` (papers without embeddings left out)."""
    if not ids:
        return {}
    rows = PaperEmbedding.objects.filter(paper_id__in=ids).annotate(
        distance=CosineDistance("vector", vector)
    )
    return {pk: 1.0 - distance for pk, distance in rows.values_list("paper_id", "distance")}


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


class AnyOfIds(Lookup):
    """``id = ANY(ids)``, the array handed over by an InitPlan rather than as a constant.

    A constant array of up to 100 elements in an OR (here: the neighbours' ids OR the words)
    is unfolded by PostgreSQL's planner, element by element, while it proves which partial
    indexes the query may use: with the summary sample's indexes (``in_sample``) that costs
    4-5 ms of planning for 100 ids (0.3 ms for 101). The InitPlan's array is not a constant,
    so nothing is unfolded; the ids are still found through the primary key's index."""

    lookup_name = "any_of_ids"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        array = "{" + ",".join(str(int(pk)) for pk in self.rhs) + "}"
        return f"{lhs} = ANY((SELECT %s::bigint[])::bigint[])", [*params, array]


def matches_of(filtered: QuerySet, keyword_condition: Q | None, neighbour_ids: list[int]):
    """The papers of ``filtered`` a search finds: keyword matches, semantic neighbours, or
    both (either condition may be absent)."""
    condition = Q(AnyOfIds(F("pk"), neighbour_ids)) if neighbour_ids else None
    if keyword_condition is not None:
        condition = keyword_condition if condition is None else condition | keyword_condition
    return filtered.filter(condition) if condition is not None else filtered.none()


def query_text_for_meaning(parsed: search.ParsedQuery) -> str:
    """What of a query is embedded: its positive words and phrases (not authors, not
    exclusions, not the syntax)."""
    return " ".join(
        term.text
        for group in parsed.groups
        for term in group
        if not term.negated and term.field != "author"
    )
