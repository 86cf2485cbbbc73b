"""Turning a reader's query into SQL: stemmed words, exact phrases, fields, ranking, highlights.

The syntax is what readers know from search engines (and arXiv):

- ``decoupling``           the word and its inflections (stemmed: decoupled, decouples …)
- ``"linear attention"``   exactly these words, adjacent, in order, unstemmed
- ``a OR b``               either; terms are otherwise all required
- ``-word``, ``-"a b"``    exclude
- ``title:word``, ``title:"a b"``   only in titles;  ``author:name``, ``author:"Ada Lovelace"``

Two stored vectors serve this: ``search_vector`` (english: stemmed, title weight A, abstract B)
and ``exact_vector`` (simple: unstemmed, with author names as weight C). Each term becomes a
``tsquery`` against one of them; the terms' boolean structure becomes ``Q`` objects. Words are
normalised by PostgreSQL itself (one small query), so stemming and stop words match the index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache, reduce
from operator import and_, or_

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank
from django.db import connection
from django.db.models import F, Q, QuerySet

CONFIG = "english"
EXACT_CONFIG = "simple"
FIELDS = ("title", "author", "abstract")

# Highlights: <mark> around matches, short fragments for abstract excerpts.
_HEADLINE_OPTIONS = {"start_sel": "<mark>", "stop_sel": "</mark>", "highlight_all": True}
_EXCERPT_OPTIONS = {
    "start_sel": "<mark>",
    "stop_sel": "</mark>",
    "max_words": 45,
    "min_words": 25,
    "max_fragments": 2,
    "fragment_delimiter": " … ",
}

_TOKEN = re.compile(
    r'(?P<neg>-)?(?:(?P<field>title|author|abstract):)?(?:"(?P<phrase>[^"]*)"?|(?P<word>[^\s"]+))',
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Term:
    text: str
    field: str | None = None
    phrase: bool = False
    negated: bool = False


@dataclass(frozen=True)
class ParsedQuery:
    """AND of groups, each an OR of terms; plus the tsqueries that rank and highlight."""

    groups: tuple[tuple[Term, ...], ...]
    matchers: dict  # Term -> (vector field, tsquery text); terms PostgreSQL drops are absent
    rank_query: str  # english tsquery text of all positive terms, OR-ed

    @property
    def is_empty(self) -> bool:
        return not self.matchers


def tokenize(text: str) -> tuple[tuple[Term, ...], ...]:
    """Split a query into AND-ed groups of OR-ed terms."""
    groups: list[list[Term]] = []
    join_next = False
    for match in _TOKEN.finditer(text.replace("\x00", " ")):
        word = match.group("word")
        if word == "OR" and not match.group("neg") and not match.group("field"):
            join_next = bool(groups)
            continue
        phrase = match.group("phrase")
        body = (phrase if phrase is not None else word or "").strip()
        if not body:
            continue
        term = Term(
            text=body,
            field=(match.group("field") or "").lower() or None,
            phrase=phrase is not None,
            negated=bool(match.group("neg")),
        )
        if join_next and not term.negated:
            groups[-1].append(term)
        else:
            groups.append([term])
        join_next = False
    return tuple(tuple(group) for group in groups)


@lru_cache(maxsize=2048)
def parse(text: str) -> ParsedQuery:
    """Parse and normalise a query. Cached: a page parses its query several times (filter,
    sort, highlights), and PostgreSQL's stemming of a given text never changes."""
    groups = tokenize(text)
    terms = [term for group in groups for term in group]
    normalised = _normalise(terms)
    matchers = {}
    for term, (exact, stemmed) in zip(terms, normalised, strict=True):
        matcher = _matcher(term, exact, stemmed)
        if matcher:
            matchers[term] = matcher
    ranked = [stemmed for term, (_, stemmed) in zip(terms, normalised, strict=True)]
    positives = [
        _weighted(q, "A") if term.field == "title" else q
        for term, q in zip(terms, ranked, strict=True)
        if q and not term.negated and term.field != "author"
    ]
    return ParsedQuery(groups, matchers, " | ".join(f"({q})" for q in positives))


def _normalise(terms: list[Term]) -> list[tuple[str, str]]:
    """(exact tsquery, stemmed tsquery) text of each term, as PostgreSQL parses them."""
    if not terms:
        return []
    selects = ", ".join(
        f"phraseto_tsquery('{EXACT_CONFIG}', %s)::text, phraseto_tsquery('{CONFIG}', %s)::text"
        for _ in terms
    )
    params = [value for term in terms for value in (term.text, term.text)]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {selects}", params)
        row = cursor.fetchone()
    return [(row[i], row[i + 1]) for i in range(0, len(row), 2)]


def _matcher(term: Term, exact: str, stemmed: str) -> tuple[str, str] | None:
    """Which vector a term is matched against, and with what tsquery text."""
    if term.field == "author":
        return ("exact_vector", _weighted(exact, "C")) if exact else None
    query = exact if term.phrase else stemmed
    if not query:
        return None  # only stop words: nothing to look for
    if term.field == "title":
        query = _weighted(query, "A")
    elif term.field == "abstract":
        query = _weighted(query, "B")
    return ("exact_vector" if term.phrase else "search_vector", query)


_LEXEME = re.compile(r"'((?:[^']|'')*)'")


def _weighted(tsquery: str, weight: str) -> str:
    """Restrict every lexeme of a tsquery to one weight (A title, B abstract, C authors)."""
    return _LEXEME.sub(lambda m: f"'{m.group(1)}':{weight}", tsquery)


class RawTsQuery(SearchQuery):
    """An already-normalised tsquery: cast, not re-parsed (re-stemming a stem can change it)."""

    def __init__(self, tsquery: str):
        super().__init__(tsquery, search_type="raw")
        self.tsquery = tsquery

    def as_sql(self, compiler, connection, **extra):
        return "%s::tsquery", [self.tsquery]


def condition(parsed: ParsedQuery) -> Q:
    """The WHERE clause of a parsed query."""
    clauses = []
    for group in parsed.groups:
        alternatives = [_term_q(term, parsed) for term in group if term in parsed.matchers]
        if alternatives:
            clauses.append(reduce(or_, alternatives))
    return reduce(and_, clauses) if clauses else Q()


def _term_q(term: Term, parsed: ParsedQuery) -> Q:
    field, tsquery = parsed.matchers[term]
    q = Q(**{field: RawTsQuery(tsquery)})
    return ~q if term.negated else q


def apply(queryset: QuerySet, text: str) -> QuerySet:
    """Keep the papers matching ``text`` and annotate each with its ``rank``."""
    parsed = parse(text)
    if parsed.is_empty:
        return queryset
    queryset = queryset.filter(condition(parsed))
    if parsed.rank_query:
        return queryset.annotate(rank=SearchRank(F("search_vector"), RawTsQuery(parsed.rank_query)))
    return queryset


def highlight(queryset: QuerySet, text: str) -> QuerySet:
    """Annotate ``title_html`` and ``excerpt_html`` with matches in <mark>.

    Headlines re-parse the documents, so apply this to the displayed page only.
    """
    parsed = parse(text)
    if not parsed.rank_query:
        return queryset
    query = RawTsQuery(parsed.rank_query)
    return queryset.annotate(
        title_html=SearchHeadline("title", query, config=CONFIG, **_HEADLINE_OPTIONS),
        excerpt_html=SearchHeadline("abstract", query, config=CONFIG, **_EXCERPT_OPTIONS),
    )


def rank(query: SearchQuery) -> SearchRank:
    return SearchRank(F("search_vector"), query)


def title_lexemes_query(title: str) -> str:
    """An OR of a title's stemmed words (stop words dropped), as tsquery text."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT replace(strip(to_tsvector('{CONFIG}', %s))::text, ' ', ' | ')", [title]
        )
        return cursor.fetchone()[0]
