"""Merging duplicate papers into one canonical paper, and finding where a merged paper went.

Different listings can produce the same paper twice (a Hugging Face card has no arXiv id, the
arXiv feed has one; a title is spelled two ways). A merge keeps everything worth keeping:

- the canonical paper's fields win; blanks are filled from the duplicates, popularity takes the
  higher value, dates the earliest first publication and listing;
- topics, sightings (provenance), popularity snapshots and sent alerts move to the canonical
  paper; where both have a row, the rows are combined (per day, the higher upvotes);
- every key the duplicate was known by becomes a ``PaperAlias`` of the canonical paper: its
  natural keys, so that ingest updates the canonical paper instead of recreating the duplicate
  (``ingest.upsert``), and its URL slug, so that its old URL redirects (``canonical_paper``).

A canonical paper without an arXiv id takes over a duplicate's: the arXiv id is the better
natural key (arXiv feeds then update it directly) and gives the paper its arXiv links. Its old
URL (its catalogue number) becomes an alias too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import connection, models, transaction

from catalogue.models import (
    AlertDelivery,
    Paper,
    PaperAlias,
    PaperTopic,
    PopularitySnapshot,
    Sighting,
)

# A paper without an arXiv id is at /papers/<pk>/. Natural keys never start with "#", so these
# aliases serve old URLs only and never match an ingested record.
NUMBER_PREFIX = "#"

# More than this at once is not "duplicates" but a mistake in the selection.
MAX_MERGE = 10
# Possible duplicates: each of the newest papers is compared with the older papers whose
# normalised titles start with the same characters (an index range scan, at most
# DUPLICATE_GROUP of them), and pairs at least this similar by trigrams are listed, best first.
DUPLICATE_CANDIDATES = 2000
DUPLICATE_GROUP = 20
TITLE_KEY_LENGTH = 32  # the length paper_title_key_idx is built on (migration 0008)
SIMILARITY_THRESHOLD = 0.6
DUPLICATE_PAIRS_SHOWN = 100

# Fields combined by a rule; every other editable field keeps the canonical value unless blank.
_HIGHER = ("upvotes", "comments", "github_stars", "version", "trending_score", "updated_on")
_EARLIER = ("published_on", "listed_on")
_EITHER = ("withdrawn", "featured")
_OWN = ("id", "arxiv_id", "source_key", "hidden", "curated_fields", "created_at", "updated_at")


@dataclass
class MergeResult:
    canonical: Paper
    merged: list[tuple[int, str]]  # (id, title) of each paper merged away
    aliases: list[str]


def merge(canonical: Paper, duplicates: Iterable[Paper]) -> MergeResult:
    """Merge ``duplicates`` into ``canonical`` and delete them; one transaction."""
    duplicate_ids = sorted({d.pk for d in duplicates} - {canonical.pk})
    if not duplicate_ids:
        raise ValueError("choose at least one other paper to merge into the canonical one")
    with transaction.atomic():
        # Locked in id order, like the upsert, so a concurrent ingest cannot deadlock with us.
        locked = Paper.objects.select_for_update().filter(pk__in=[canonical.pk, *duplicate_ids])
        papers = {p.pk: p for p in locked.order_by("pk")}
        if len(papers) != len(duplicate_ids) + 1:
            raise ValueError("some of these papers no longer exist (merged or deleted meanwhile)")
        canonical = papers[canonical.pk]
        duplicates = [papers[pk] for pk in duplicate_ids]
        _move_related_rows(canonical, duplicate_ids)
        PaperAlias.objects.filter(paper_id__in=duplicate_ids).update(paper=canonical)
        old_slug = canonical.slug
        _combine_fields(canonical, duplicates)
        keys = _alias_keys(canonical, duplicates, old_slug)
        merged = [(d.pk, d.title) for d in duplicates]
        # Deleted before the canonical row is saved: it may take over a duplicate's arXiv id.
        Paper.objects.filter(pk__in=duplicate_ids).delete()
        canonical.save()
        _point_aliases(keys, canonical)
    return MergeResult(canonical=canonical, merged=merged, aliases=keys)


def canonical_paper(slug: str, papers: models.QuerySet | None = None) -> Paper | None:
    """The paper a merged-away URL slug (arXiv id or catalogue number) now lives at."""
    papers = Paper.objects.all() if papers is None else papers
    key = f"{NUMBER_PREFIX}{slug}" if slug.isdigit() else slug
    return papers.filter(aliases__key=key).first()


def suggested_canonical(papers: Iterable[Paper]) -> Paper:
    """The best default choice: has an arXiv id, then most upvotes, then the oldest row."""
    return min(papers, key=lambda p: (p.arxiv_id is None, -p.upvotes, p.pk))


@dataclass
class PossibleDuplicate:
    newer: Paper
    older: Paper
    similarity: float
    same_title: bool  # the same words, ignoring case and punctuation


def possible_duplicates(
    candidates: int = DUPLICATE_CANDIDATES,
    threshold: float = SIMILARITY_THRESHOLD,
    limit: int = DUPLICATE_PAIRS_SHOWN,
) -> list[PossibleDuplicate]:
    """Pairs of papers whose titles are alike: the same words, or trigram similarity ≥ threshold.

    Bounded work whatever the catalogue's size: ``candidates`` newest papers, each one range
    scan of ``paper_title_key_idx`` returning at most ``DUPLICATE_GROUP`` older papers whose
    normalised titles share the first characters; a pair is found from its newer paper.
    """
    with connection.cursor() as cursor:
        cursor.execute(_DUPLICATES_SQL, [candidates, DUPLICATE_GROUP, threshold, limit])
        rows = cursor.fetchall()
    papers = Paper.objects.defer("search_vector", "author_vector").in_bulk(
        {paper_id for row in rows for paper_id in row[:2]}
    )
    return [
        PossibleDuplicate(papers[newer], papers[older], score, same)
        for newer, older, score, same in rows
        if newer in papers and older in papers
    ]


_DUPLICATES_SQL = f"""
    WITH newest AS (
        SELECT id, title, catalogue_title_key(title) AS key
        FROM catalogue_paper ORDER BY id DESC LIMIT %s
    )
    SELECT newest.id, older.id, similarity(newest.title, older.title) AS score,
        newest.key = catalogue_title_key(older.title) AS same_title
    FROM newest CROSS JOIN LATERAL (
        SELECT id, title FROM catalogue_paper AS paper
        WHERE left(catalogue_title_key(paper.title), {TITLE_KEY_LENGTH})
            = left(newest.key, {TITLE_KEY_LENGTH})
          AND paper.id < newest.id
        ORDER BY left(catalogue_title_key(paper.title), {TITLE_KEY_LENGTH}) DESC, paper.id DESC
        LIMIT %s
    ) AS older
    WHERE similarity(newest.title, older.title) >= %s
    ORDER BY same_title DESC, score DESC, newest.id DESC
    LIMIT %s
"""


# --- fields --------------------------------------------------------------------------------


def _combine_fields(canonical: Paper, duplicates: list[Paper]) -> None:
    for name in _HIGHER:
        _set_best(canonical, duplicates, name, max)
    for name in _EARLIER:
        _set_best(canonical, duplicates, name, min)
    for name in _EITHER:
        setattr(canonical, name, any(getattr(p, name) for p in [canonical, *duplicates]))
    for name in _blank_fillable_fields():
        _fill_blank(canonical, duplicates, name)
    if canonical.arxiv_id is None:
        canonical.arxiv_id = next((d.arxiv_id for d in duplicates if d.arxiv_id), None)


def _set_best(canonical: Paper, duplicates: list[Paper], name: str, pick: Callable) -> None:
    values = [getattr(p, name) for p in [canonical, *duplicates] if getattr(p, name) is not None]
    if values:
        setattr(canonical, name, pick(values))


def _fill_blank(canonical: Paper, duplicates: list[Paper], name: str) -> None:
    """A blank canonical field takes the first duplicate's value, and its curation with it."""
    if getattr(canonical, name) not in (None, "", []):
        return
    for duplicate in duplicates:
        value = getattr(duplicate, name)
        if value not in (None, "", []):
            setattr(canonical, name, value)
            if name in duplicate.curated_fields and name not in canonical.curated_fields:
                canonical.curated_fields = [*canonical.curated_fields, name]
            return


def _blank_fillable_fields() -> list[str]:
    taken = {*_HIGHER, *_EARLIER, *_EITHER, *_OWN}
    return [
        f.name
        for f in Paper._meta.concrete_fields
        if f.editable and not f.generated and f.name not in taken
    ]


# --- related rows --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Related:
    """How one related table merges: rows with the same ``key`` become one row."""

    model: type[models.Model]
    key: str
    # rows (the canonical paper's first) -> the merged row's values; None: the first row wins
    combine: Callable[[list], dict] | None


def _seen_earliest_and_latest(rows) -> dict:
    return {
        "first_seen_at": min(r.first_seen_at for r in rows),
        "last_seen_at": max(r.last_seen_at for r in rows),
        "listed_on": min((r.listed_on for r in rows if r.listed_on), default=None),
    }


def _higher_popularity(rows) -> dict:
    return {
        "upvotes": max((r.upvotes for r in rows if r.upvotes is not None), default=None),
        "github_stars": max(
            (r.github_stars for r in rows if r.github_stars is not None), default=None
        ),
    }


def _staff_choice_first(rows) -> dict:
    """A staff choice (pinned, excluded) beats a rule match; the canonical's beats others'."""
    chosen = next((r for r in rows if r.reason != PaperTopic.Reason.RULE), rows[0])
    return {"reason": chosen.reason}


_RELATED = (
    _Related(PaperTopic, "topic_id", _staff_choice_first),
    _Related(Sighting, "source", _seen_earliest_and_latest),
    _Related(PopularitySnapshot, "observed_on", _higher_popularity),
    # A paper already emailed for a saved search must not be emailed again under a new id.
    _Related(AlertDelivery, "saved_search_id", None),
)


def _move_related_rows(canonical: Paper, duplicate_ids: list[int]) -> None:
    for related in _RELATED:
        _move_rows(related, canonical, duplicate_ids)


def _move_rows(related: _Related, canonical: Paper, duplicate_ids: list[int]) -> None:
    """Combine the rows of all the papers per key and write them as the canonical paper's."""
    rows = related.model.objects.filter(paper_id__in=[canonical.pk, *duplicate_ids])
    groups: dict = {}
    for row in sorted(rows, key=lambda r: (r.paper_id != canonical.pk, r.pk)):
        groups.setdefault(getattr(row, related.key), []).append(row)
    if not groups:
        return
    combine = related.combine or (lambda rows: {})
    values = {key: combine(group) for key, group in groups.items()}
    merged = [
        related.model(paper_id=canonical.pk, **{related.key: key}, **fields)
        for key, fields in values.items()
    ]
    related.model.objects.filter(paper_id__in=duplicate_ids).delete()
    if related.combine is None:
        related.model.objects.bulk_create(merged, ignore_conflicts=True)
        return
    related.model.objects.bulk_create(
        merged,
        update_conflicts=True,
        unique_fields=["paper", related.key.removesuffix("_id")],
        update_fields=list(next(iter(values.values()))),
    )


# --- aliases -------------------------------------------------------------------------------


def _alias_keys(canonical: Paper, duplicates: list[Paper], old_slug: str) -> list[str]:
    keys = []
    for duplicate in duplicates:
        if duplicate.arxiv_id and duplicate.arxiv_id != canonical.arxiv_id:
            keys.append(duplicate.arxiv_id)
        if duplicate.source_key:
            keys.append(duplicate.source_key)
        if not duplicate.arxiv_id:
            keys.append(f"{NUMBER_PREFIX}{duplicate.pk}")
    if canonical.slug != old_slug:  # took over an arXiv id: its catalogue-number URL moved
        keys.append(f"{NUMBER_PREFIX}{old_slug}")
    return keys


def _point_aliases(keys: list[str], canonical: Paper) -> None:
    PaperAlias.objects.bulk_create(
        [PaperAlias(key=key, paper=canonical) for key in keys],
        update_conflicts=True,
        unique_fields=["key"],
        update_fields=["paper"],
    )
