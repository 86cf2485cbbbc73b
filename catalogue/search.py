"""Turning a reader's query into SQL: stemmed words, exact phrases, fields, ranking, highlights.

The syntax is what readers know from search engines (and arXiv):

- ``decoupling``           the word and its inflections (stemmed: decoupled, decouples …)
- ``"linear attention"``   exactly these words, adjacent, in order, unstemmed
- ``a OR b``               either; terms are otherwise all required
- ``-word``, ``-"a b"``    exclude
- ``title:word``, ``title:"a b"``   only in titles;  ``author:name``, ``author:"Ada Lovelace"``

Two stored vectors serve this: ``search_vector`` (english: stemmed, title weight A, abstract B)
and ``author_vector`` (simple: author names as written). A word becomes a ``tsquery`` against
one of them. A quoted phrase is matched as a stemmed phrase through the index, then checked
against the text itself with a regular expression (the exact words, in order): one vector of
the text is what bulk ingest can afford. The terms' boolean structure becomes ``Q`` objects.
Words are normalised by PostgreSQL itself (one small query), so stemming and stop words match
the index.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import lru_cache, reduce
from operator import and_, or_
from typing import NamedTuple

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.search import (
    SearchQuery,
    SearchRank,
    SearchVectorExact,
    SearchVectorField,
)
from django.db.models import (
    Case,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    Lookup,
    Q,
    QuerySet,
    TextField,
    Value,
    When,
)
from django.db.models.expressions import RawSQL

from catalogue import headlines, phrases
from catalogue.routers import catalogue_connection

CONFIG = "english"
AUTHOR_CONFIG = "simple"
FIELDS = ("title", "author", "abstract")

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
class Matcher:
    """How one term is looked for: a tsquery against a vector, plus the exact words of a
    phrase as a regular expression over the text fields it may be in."""

    vector: str  # "search_vector" or "author_vector"
    tsquery: str
    pattern: str | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedQuery:
    """AND of groups, each an OR of terms; plus the tsqueries that rank and highlight."""

    groups: tuple[tuple[Term, ...], ...]
    matchers: dict  # Term -> Matcher; terms PostgreSQL drops (only stop words) are absent
    highlight_query: str  # english tsquery text of all positive terms, OR-ed
    rank_query: str = ""  # the positive groups AND-ed (each an OR of its terms)
    phrase_query: str = ""  # the positive plain words as one phrase, when there are several

    @property
    def title_query(self) -> str:
        """``rank_query`` found in titles (weight A) only."""
        return _weighted(self.rank_query, "A")

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
    normalised, phrase = _normalise(terms, _plain_words(groups))
    matchers = {}
    for term, (author, stemmed) in zip(terms, normalised, strict=True):
        matcher = _matcher(term, author, stemmed)
        if matcher:
            matchers[term] = matcher
    ranked = {
        term: _weighted(stemmed, "A") if term.field == "title" else stemmed
        for term, (_, stemmed) in zip(terms, normalised, strict=True)
        if stemmed and not term.negated and term.field != "author"
    }
    return ParsedQuery(
        groups,
        matchers,
        highlight_query=" | ".join(f"({q})" for q in ranked.values()),
        rank_query=_and_of_groups(groups, ranked),
        phrase_query=phrase,
    )


def _and_of_groups(groups, ranked: dict) -> str:
    """The groups' positive terms as tsquery text: AND of groups, OR within a group."""
    clauses = []
    for group in groups:
        alternatives = [f"({ranked[term]})" for term in group if term in ranked]
        if alternatives:
            clauses.append("(" + " | ".join(alternatives) + ")")
    return " & ".join(clauses)


def _plain_words(groups) -> str:
    """The query's plain positive words (outside quotes, fields and ORs), when there are
    several: as a phrase they earn a bonus ("visual quality" is worth more where the two
    words stand together)."""
    words = [
        group[0].text
        for group in groups
        if len(group) == 1 and not (group[0].negated or group[0].field or group[0].phrase)
    ]
    return " ".join(words) if len(words) > 1 else ""


def _normalise(terms: list[Term], phrase: str) -> tuple[list[tuple[str, str]], str]:
    """(author tsquery, stemmed tsquery) text of each term, as PostgreSQL parses them, and
    the stemmed tsquery of ``phrase``: one round trip."""
    if not terms:
        return [], ""
    selects = ", ".join(
        f"phraseto_tsquery('{AUTHOR_CONFIG}', %s)::text, phraseto_tsquery('{CONFIG}', %s)::text"
        for _ in terms
    )
    params = [value for term in terms for value in (term.text, term.text)]
    with catalogue_connection().cursor() as cursor:
        cursor.execute(
            f"SELECT {selects}, phraseto_tsquery('{CONFIG}', %s)::text", [*params, phrase]
        )
        row = cursor.fetchone()
    pairs = [(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
    return pairs, row[-1] if phrase else ""


_TEXT_FIELDS = {None: ("title", "abstract"), "title": ("title",), "abstract": ("abstract",)}


def _matcher(term: Term, author: str, stemmed: str) -> Matcher | None:
    """Which vector a term is matched against, with what tsquery text (and for a phrase,
    with what exact pattern over which fields)."""
    if term.field == "author":
        return Matcher("author_vector", author) if author else None
    if not stemmed:
        return None  # only stop words: nothing to look for
    if term.field == "title":
        stemmed = _weighted(stemmed, "A")
    elif term.field == "abstract":
        stemmed = _weighted(stemmed, "B")
    if not term.phrase:
        return Matcher("search_vector", stemmed)
    return Matcher("search_vector", stemmed, exact_pattern(term.text), _TEXT_FIELDS[term.field])


_WORD = re.compile(r"[^\W_]+")


def exact_pattern(phrase: str) -> str:
    """A PostgreSQL regular expression (for ``~*``) of a phrase's words, in order, each a
    whole word, separated by anything but letters and digits: ``"GPT-4 models"`` matches
    "GPT-4 models" and "gpt 4, models" but not "GPT-4 modelsets" or "GPT-4 model"."""
    words = _WORD.findall(phrase)
    return "(?<![[:alnum:]])" + "[^[:alnum:]]+".join(words) + "(?![[:alnum:]])"


# A lexeme with the weights (or prefix mark) it is already restricted to, if any: "'attent':A";
# group 1 the lexeme (quotes doubled), group 2 those flags.
_LEXEME = re.compile(r"'((?:[^']|'')*)'(:[A-D*]+)?")


def _weighted(tsquery: str, weight: str) -> str:
    """Restrict every lexeme of a tsquery to one weight (A title, B abstract, C authors),
    in place of any it had: ``title:`` terms are weighted once more for ``title_query``,
    and "'attent':A:A" is a syntax error."""
    return _LEXEME.sub(lambda m: f"'{m.group(1)}':{weight}", tsquery)


def unweighted(tsquery: str) -> str:
    """A tsquery without weight restrictions: "'attent':A" becomes "'attent'"."""
    return _LEXEME.sub(lambda m: f"'{m.group(1)}'", tsquery)


class RawTsQuery(SearchQuery):
    """An already-normalised tsquery: cast, not re-parsed (re-stemming a stem can change it)."""

    def __init__(self, tsquery: str):
        super().__init__(tsquery, search_type="raw")
        self.tsquery = tsquery

    def as_sql(self, compiler, connection, **extra):
        return "%s::tsquery", [self.tsquery]


def titles_imply_match(parsed: ParsedQuery) -> bool:
    """Whether a title holding ``title_query`` is a match whatever the rest of the paper: every
    term a plain word (or ``title:`` word) that must be there. Not with a phrase (its exact
    pattern is tested on the text), an excluded term, an author or an abstract term."""
    return all(
        not term.negated and not matcher.pattern and term.field in (None, "title")
        for term, matcher in parsed.matchers.items()
    )


def condition(parsed: ParsedQuery, *, unindexed: bool = False) -> Q:
    """The WHERE clause of a parsed query; ``unindexed``: its words tested on each paper the
    other conditions leave, never found from the search vector's index (``UNINDEXED_VECTOR``)."""
    clauses = []
    for group in parsed.groups:
        alternatives = [
            _term_q(term, parsed, unindexed) for term in group if term in parsed.matchers
        ]
        if alternatives:
            clauses.append(reduce(or_, alternatives))
    return reduce(and_, clauses) if clauses else Q()


def _term_q(term: Term, parsed: ParsedQuery, unindexed: bool = False) -> Q:
    matcher = parsed.matchers[term]
    pairs = () if term.negated or not matcher.pattern else phrases.required_pairs(matcher.tsquery)
    if pairs and phrases.pairs_pay(pairs):
        # The papers that may hold the phrase, from the index of word pairs; the phrase is
        # then tested on those alone, never through the words' index (``catalogue.phrases``).
        q = Q(phrases.PairedOrPending(F("pk"), pairs))
        q &= Q(SearchVectorExact(UNINDEXED_VECTOR, RawTsQuery(matcher.tsquery)))
    elif unindexed and matcher.vector == "search_vector":
        q = Q(SearchVectorExact(UNINDEXED_VECTOR, RawTsQuery(matcher.tsquery)))
    else:
        q = Q(**{matcher.vector: RawTsQuery(matcher.tsquery)})
    if matcher.pattern:
        # After the vector test, so the index narrows the rows the pattern is tried on.
        q &= reduce(or_, (Q(MatchesPattern(F(f), matcher.pattern)) for f in matcher.fields))
    return ~q if term.negated else q


class MatchesPattern(Lookup):
    """``field ~* pattern`` (Django's ``iregex``), the pattern handed over by an InitPlan
    rather than as a constant. A constant pattern is tried by the planner on the column's
    statistics (a hundred abstracts) to estimate how many rows match: a phrase's summary,
    which tests the pattern on title and abstract in two parts, spent 3.7-5.0 ms planning
    and 1.1-1.5 executing at 100,000 papers; so handed over, 0.3 planning. The estimate is
    then PostgreSQL's default for a pattern (0.5 %): a phrase is rare; the plans are the
    same (tests/catalogue/test_query_plans.py)."""

    lookup_name = "matches_pattern"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs}::text ~* (SELECT %s::text)", [*params, self.rhs]


# Relevance: cover density (``ts_rank_cd``: the query's words near each other score more than
# the same words scattered), normalised by the log of the document's length, plus a bonus for
# the query's words as a phrase. Title words (A) weigh more than abstract words (B). Tuned on
# the development set of ``python -m tests.bench eval_search`` (docs/benchmarks.md has the figures).
RANK_WEIGHTS = [0.1, 0.2, 0.7, 1.0]  # D, C, B (abstract), A (title)
RANK_NORMALIZATION = 1  # divide by 1 + log(document length)
PHRASE_WEIGHT = 3.0
# The above as a ranking's cache key holds them (``summary.ranking_text``): changed, they
# start new keys.
RANKING_SETTINGS = repr((RANK_WEIGHTS, RANK_NORMALIZATION, PHRASE_WEIGHT))


def relevance(parsed: ParsedQuery):
    """The relevance expression of a parsed query (needs ``rank_query``)."""
    score = _cover_density(parsed.rank_query)
    if parsed.phrase_query:
        score = score + _phrase_bonus(parsed.phrase_query)
    return ReadAsFloat(score, output_field=FloatField())


class ReadAsFloat(ExpressionWrapper):
    """A float PostgreSQL computes, read as psycopg gives it (a Python float already), without
    the ORM's ``float()`` of every row: a ranking reads 2,000 rows (~1 ms a ranked page)."""

    @property
    def convert_value(self):
        return self._convert_value_noop


def _phrase_bonus(phrase: str) -> Case:
    """``PHRASE_WEIGHT`` x the cover density of the words as a phrase, computed only for
    papers that hold the phrase (elsewhere it is 0): most candidates of several words do not,
    and the test of the words' positions costs a fraction of a second cover density pass
    (2,000 candidates of "ranging language" at 100,000 papers: 11.1 -> 7.3 ms)."""
    return Case(
        When(
            SearchVectorExact(F("search_vector"), RawTsQuery(phrase)),
            then=PHRASE_WEIGHT * _cover_density(phrase),
        ),
        default=Value(0.0),
        output_field=FloatField(),
    )


def _cover_density(tsquery: str) -> SearchRank:
    return SearchRank(
        F("search_vector"),
        RawTsQuery(tsquery),
        weights=RANK_WEIGHTS,
        normalization=RANK_NORMALIZATION,
        cover_density=True,
    )


def apply(queryset: QuerySet, text: str, *, unindexed: bool = False) -> QuerySet:
    """Keep the papers matching ``text`` and annotate each with its ``rank``; ``unindexed``:
    as ``condition``."""
    parsed = parse(text)
    if parsed.is_empty:
        return queryset
    queryset = queryset.filter(condition(parsed, unindexed=unindexed))
    if parsed.rank_query:
        return queryset.annotate(rank=relevance(parsed))
    return queryset


def highlight(queryset: QuerySet, text: str) -> QuerySet:
    """Annotate ``marked_words``: the words of a paper's title and abstract that hold a term of
    the query, as PostgreSQL stems them (lower case, each once), for ``headlines`` to mark.

    Only the words beginning like a term are stemmed (``headlines.candidate_pattern``), and
    only for papers holding a term (their search vector matches the terms OR-ed, a lookup): a
    paper found by meaning alone has nothing to mark. Its annotation is NULL; its card shows
    the title and the abstract's first words. Apply this to the displayed page only.
    """
    parsed = parse(text)
    lexemes = query_lexemes(parsed.highlight_query)
    pattern = headlines.candidate_pattern(lexemes)
    if pattern is None:
        return queryset
    return queryset.annotate(
        marked_words=_marked_words(parsed.highlight_query, pattern, _any_of(lexemes))
    )


def query_lexemes(tsquery: str) -> list[str]:
    """The lexemes of a tsquery's text ("'linear' <-> 'attent':A" gives linear, attent)."""
    return [m.group(1).replace("''", "'") for m in _LEXEME.finditer(tsquery)]


def _any_of(lexemes: list[str]) -> str:
    """A tsquery's text of any of ``lexemes``, without weights: a word is marked wherever it
    stands, and a lone word's vector has no weight and no neighbour for a phrase's ``<->``."""
    return " | ".join("'{}'".format(lexeme.replace("'", "''")) for lexeme in lexemes)


def _marked_words(tsquery: str, pattern: str, word_query: str) -> RawSQL:
    """The words of title and abstract matching ``pattern`` that hold a lexeme of
    ``word_query``, where the paper's search vector holds a term of ``tsquery``. Written as
    SQL: no ORM expression says it."""
    table = PAPERS_TABLE
    words = f'regexp_matches("{table}"."title" || \' \' || "{table}"."abstract", %s, \'gi\')'
    sql = (
        f'CASE WHEN "{table}"."search_vector" @@ (%s::tsquery) THEN ARRAY('
        f"SELECT DISTINCT lower(w.m[1]) FROM {words} AS w(m)"
        " WHERE to_tsvector(%s::regconfig, w.m[1]) @@ (%s::tsquery)"
        ") ELSE NULL END"
    )
    params = (tsquery, pattern, CONFIG, word_query)
    return RawSQL(sql, params, output_field=ArrayField(TextField()))


def rank(query: SearchQuery) -> SearchRank:
    return SearchRank(F("search_vector"), query)


# A paper's title words: its search vector's weight-A lexemes. An index of its own
# (``paper_title_gin``) answers title-only queries exactly, where the whole vector's GIN
# index knows no weights and every match of a word anywhere is read to check it.
TITLE_VECTOR = Func(
    F("search_vector"), Value("{a}"), function="ts_filter", output_field=SearchVectorField()
)
TITLE_INDEX = "paper_title_gin"


def in_title(title_query: str) -> SearchVectorExact:
    """Whether a paper's title holds ``title_query`` (without weights: the title vector has
    only title words), as the title index (``TITLE_INDEX``) answers it: the title pool's
    condition where the pool is read from that index (``relevance_pools``)."""
    return SearchVectorExact(TITLE_VECTOR, RawTsQuery(unweighted(title_query)))


def in_title_by_weight(title_query: str) -> SearchVectorExact:
    """The same test (``in_title``) on a paper in hand: its whole vector's title-weighted
    lexemes against ``title_query``'s own weights. ``ts_filter`` copies every paper's vector
    (~1.2 KB) to test its title words, which cost as much as ranking the paper: over 4,235
    matches of two words at 100,000 papers, ~4 ms; by weight, nothing measurable."""
    return SearchVectorExact(F("search_vector"), RawTsQuery(title_query))


PAPERS_TABLE = "catalogue_paper"


def title_words(title: str) -> list[tuple[str, float]]:
    """A title's stemmed words (stop words dropped) as tsquery terms, each with the share of
    titles that hold it, rarest first (``title_frequencies``; 0 when not known)."""
    with catalogue_connection().cursor() as cursor:
        cursor.execute(
            f"SELECT array_to_tsvector(ARRAY[w])::text, w"
            f" FROM unnest(tsvector_to_array(to_tsvector('{CONFIG}', %s))) AS w",
            [title],
        )
        rows = cursor.fetchall()
    stats = title_frequencies()
    words = [(term, stats.shares.get(lexeme, stats.rare)) for term, lexeme in rows]
    return sorted(words, key=lambda word: (word[1], -len(word[0]), word[0]))


class TitleStats(NamedTuple):
    shares: dict[str, float]  # {lexeme: share of titles} of the commonest title words
    rare: float  # the share assumed for any other word
    titles: int  # the papers table's estimated rows (0: never analysed)


_STATS_SECONDS = 600
_stats: dict = {}  # {(relation, column): (when read, TitleStats)}


def title_frequencies() -> TitleStats:
    """How common title words are, from PostgreSQL's statistics of the title index (ANALYZE
    keeps them; a table never analysed has none: every word counts as rare), and how many
    titles there are. Read once every ten minutes per process: the view costs a few
    milliseconds, and the figures change only slowly."""
    return _lexeme_stats(TITLE_INDEX, None)


# The search vector as no index answers it (``coalesce`` returns the stored value as it is):
# a common word in a few months' papers is tested on each of them (~3 µs a paper) instead of
# intersecting the word's whole index entry with them (~0.25 µs an entry, priced as nearly
# free by PostgreSQL): "capability", in 247,000 of a million papers, in a range of 4,669
# papers: 76 ms through the index, 14 ms testing each.
UNINDEXED_VECTOR = Func(
    F("search_vector"),
    template="coalesce(%(expressions)s, ''::tsvector)",
    output_field=SearchVectorField(),
)


def index_entries(parsed: ParsedQuery) -> float:
    """About how many entries of the search vector's index the query's condition reads
    (``vector_frequencies``): the fewest of its AND-ed groups', a group reading each of its
    OR-ed terms', a term its rarest word's (GIN skips through the commoner ones of an AND).
    0 where a term is not a plain test of the search vector (an author, a prefix): such a
    query keeps its index. Excluded terms read none."""
    stats = vector_frequencies()
    groups = []
    for group in parsed.groups:
        terms = [term for term in group if term in parsed.matchers]
        if not terms or any(term.negated for term in terms):
            continue  # nothing to read, or not from the index
        entries = 0.0
        for term in terms:
            matcher = parsed.matchers[term]
            lexemes = _LEXEME.findall(matcher.tsquery)
            if matcher.vector != "search_vector" or not lexemes:
                return 0.0
            if any("*" in flags for _, flags in lexemes):
                return 0.0
            shares = (stats.shares.get(word.replace("''", "'"), stats.rare) for word, _ in lexemes)
            entries += min(shares)
        groups.append(entries * stats.titles)
    return min(groups, default=0.0)


def vector_frequencies() -> TitleStats:
    """How common words are in the whole search vectors (its column's statistics), as
    ``title_frequencies``."""
    return _lexeme_stats(PAPERS_TABLE, "search_vector")


def _lexeme_stats(relation: str, column: str | None) -> TitleStats:
    now = time.monotonic()
    read, stats = _stats.get((relation, column), (-_STATS_SECONDS, None))
    if now - read >= _STATS_SECONDS:
        stats = _read_lexeme_stats(relation, column)
        _stats[(relation, column)] = (now, stats)
    return stats


def _read_lexeme_stats(relation: str, column: str | None) -> TitleStats:
    with catalogue_connection().cursor() as cursor:
        cursor.execute(
            "SELECT most_common_elems::text::text[], most_common_elem_freqs,"
            " (SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass)"
            " FROM (SELECT 1) AS one LEFT JOIN pg_stats"
            " ON schemaname = current_schema() AND tablename = %s"
            " AND (%s::text IS NULL OR attname = %s)",
            [PAPERS_TABLE, relation, column, column],
        )
        lexemes, shares, rows = cursor.fetchone()
    lexemes, shares = (lexemes, shares) if lexemes else ([], [])
    # After the lexemes' own shares come the least and most of them and the null share;
    # a word the list lacks is rarer than the least (PostgreSQL assumes half of it).
    least = shares[len(lexemes)] / 2 if len(shares) > len(lexemes) else 0.0
    return TitleStats(dict(zip(lexemes, shares, strict=False)), least, max(rows or 0, 0))
