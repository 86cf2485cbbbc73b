"""Topics as keyword rules: which papers a topic's query matches, and keeping its tags in step.

A topic's ``query`` uses the readers' search syntax (``catalogue.search``). Papers it matches get
a ``PaperTopic`` row with reason RULE. Staff choices are rows too (PINNED, EXCLUDED) and are
never touched here: a pinned paper keeps its topic when the rule stops matching, an excluded
one never gets it back.

Tagging is set-based: one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` adds the new matches
(the conflict leaves staff rows alone) and one ``DELETE`` drops the RULE rows that no longer
match. Both are answered from the GIN indexes of the search vectors, not row by row in Python.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import QuerySet

from catalogue import search
from catalogue.models import Paper, PaperTopic, Topic

SAMPLE_SIZE = 10


@dataclass
class Preview:
    """What a query would tag: how many papers, and the most upvoted few of them."""

    query: str
    count: int
    sample: list[Paper] = field(default_factory=list)


@dataclass
class TagCounts:
    added: int = 0
    removed: int = 0


def query_problem(query: str) -> str | None:
    """Why ``query`` cannot be a topic rule, or None when it can."""
    parsed = search.parse(query)
    if parsed.is_empty:
        return "The query has no searchable words (only stop words or punctuation)."
    if all(term.negated for term in parsed.matchers):
        # "-foo" alone would tag nearly every paper in the catalogue.
        return "The query needs at least one term that is not excluded."
    return None


def matching(query: str, papers: QuerySet | None = None) -> QuerySet:
    """The papers (of ``papers``, default all) that ``query`` matches; unranked, unordered."""
    papers = Paper.objects.all() if papers is None else papers
    if query_problem(query):
        return papers.none()
    return papers.filter(search.condition(search.parse(query)))


def preview(query: str, sample_size: int = SAMPLE_SIZE) -> Preview:
    matches = matching(query)
    sample = list(matches.order_by("-upvotes", "-id")[:sample_size])
    return Preview(query=query, count=matches.count(), sample=sample)


def retag(topic: Topic, papers: QuerySet | None = None) -> TagCounts:
    """Make ``topic``'s RULE rows (for ``papers``, default all) equal to its query's matches."""
    matches = matching(topic.query, papers)
    with transaction.atomic():
        added = _add_rule_rows(topic, matches)
        stale = PaperTopic.objects.filter(topic=topic, reason=PaperTopic.Reason.RULE)
        if papers is not None:
            stale = stale.filter(paper__in=papers.values("pk"))
        removed, _ = stale.exclude(paper__in=matches.values("pk")).delete()
    return TagCounts(added=added, removed=removed)


def retag_papers(papers: QuerySet) -> TagCounts:
    """Re-evaluate every topic for ``papers`` (new or changed ones)."""
    total = TagCounts()
    for topic in Topic.objects.order_by("pk"):
        counts = retag(topic, papers)
        total.added += counts.added
        total.removed += counts.removed
    return total


def redate_links(papers: QuerySet) -> int:
    """Give the links of ``papers`` their paper's date again where theirs differs; how many.

    Triggers keep each link's copy of its paper's date (``PaperTopic.published_on``), but
    under READ COMMITTED a link written while another transaction changes its paper's date
    keeps the old one: each trigger read the other's row before it committed. Run after
    the papers an ingest changed are tagged, when both have committed, it mends those."""
    sql, params = papers.values("pk").query.sql_with_params()
    links, table = PaperTopic._meta.db_table, Paper._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {links} AS link SET published_on = paper.published_on
            FROM {table} AS paper
            WHERE paper.id = link.paper_id AND link.paper_id IN ({sql})
            AND link.published_on IS DISTINCT FROM paper.published_on
            """,
            params,
        )
        return cursor.rowcount


def papers_changed_since(since: dt.datetime) -> QuerySet:
    """Papers the upsert created or changed since ``since`` (it sets ``updated_at``)."""
    return Paper.objects.filter(updated_at__gte=since)


def _add_rule_rows(topic: Topic, matches: QuerySet) -> int:
    sql, params = matches.values("pk").query.sql_with_params()
    table = PaperTopic._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (paper_id, topic_id, reason, created_at)
            SELECT matched.id, %s, %s, now() FROM ({sql}) AS matched (id)
            ON CONFLICT (paper_id, topic_id) DO NOTHING
            """,
            [topic.pk, PaperTopic.Reason.RULE.value, *params],
        )
        return cursor.rowcount
