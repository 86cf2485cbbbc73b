"""Turning a reader's query into SQL: stemmed words, exact phrases, ranking, highlights.

Queries use PostgreSQL's websearch syntax, which readers already know from search engines:
``decoupling`` (stemmed, so it also finds decoupled/decouples), ``"linear attention"`` (the
words adjacent, in order), ``OR`` and ``-word``. The ``english`` configuration stems words and
drops stop words, in the stored vector and in the query alike.
"""

from __future__ import annotations

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank
from django.db.models import F, QuerySet

CONFIG = "english"

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


def to_tsquery(text: str) -> SearchQuery:
    return SearchQuery(text, search_type="websearch", config=CONFIG)


def apply(queryset: QuerySet, text: str) -> QuerySet:
    """Keep the papers matching ``text`` and annotate each with its ``rank``."""
    query = to_tsquery(text)
    return queryset.filter(search_vector=query).annotate(rank=SearchRank(F("search_vector"), query))


def highlight(queryset: QuerySet, text: str) -> QuerySet:
    """Annotate ``title_html`` and ``excerpt_html`` with matches in <mark>.

    Headlines re-parse the documents, so apply this to the displayed page only.
    """
    query = to_tsquery(text)
    return queryset.annotate(
        title_html=SearchHeadline("title", query, config=CONFIG, **_HEADLINE_OPTIONS),
        excerpt_html=SearchHeadline("abstract", query, config=CONFIG, **_EXCERPT_OPTIONS),
    )
