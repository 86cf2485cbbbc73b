"""The only writer of papers: an idempotent bulk upsert on the natural key.

One ``INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE`` per batch, inside one
transaction, so a batch lands whole or not at all and a re-run of the same listing changes
nothing. Merge rules, per column:

- popularity never goes down by replaying an old listing (``GREATEST``);
- dates keep the earliest value seen (first published, first listed; ``LEAST`` skips NULLs);
- text and links take the incoming value when it says something, else keep what we have;
- a field a curator edited (``curated_fields``) is never overwritten.

Rows whose merged values equal the stored ones are not touched (the ``WHERE … IS DISTINCT
FROM`` clause), which is how a run tells "updated" from "unchanged".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection, transaction

from ingest.records import PaperRecord

# Column -> (SQL type of the unnest array, how to merge the incoming value ``new.col`` with
# the stored ``paper.col``). Curated columns are wrapped in a CASE below.
_MERGE = {
    "title": ("text", "COALESCE(NULLIF(new.title, ''), paper.title)"),
    "abstract": ("text", "COALESCE(NULLIF(new.abstract, ''), paper.abstract)"),
    "authors": (
        "text",  # passed as a JSON array string: unnest cannot take a 2-D ragged array
        "CASE WHEN cardinality(new.authors) > 0 THEN new.authors ELSE paper.authors END",
    ),
    "author_count": ("int", "COALESCE(new.author_count, paper.author_count)"),
    "published_on": ("date", "LEAST(paper.published_on, new.published_on)"),
    "listed_on": ("date", "LEAST(paper.listed_on, new.listed_on)"),
    "upvotes": ("int", "GREATEST(paper.upvotes, new.upvotes)"),
    "code_url": ("text", "COALESCE(NULLIF(new.code_url, ''), paper.code_url)"),
}
CURATABLE = ("title", "abstract", "authors", "code_url")
_KEY_COLUMNS = {"arxiv_id": "text", "source_key": "text"}


@dataclass
class BatchCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __iadd__(self, other: BatchCounts) -> BatchCounts:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        return self


def upsert_papers(records: Iterable[PaperRecord]) -> BatchCounts:
    """Write one batch of records in one transaction; return what happened to them."""
    merged = _merge_duplicates(records)
    counts = BatchCounts()
    with transaction.atomic():
        for key_column in ("arxiv_id", "source_key"):
            batch = [r for r in merged if _key_column(r) == key_column]
            if batch:
                counts += _upsert(batch, key_column)
    return counts


def _key_column(record: PaperRecord) -> str:
    return "arxiv_id" if record.arxiv_id else "source_key"


def _merge_duplicates(records: Iterable[PaperRecord]) -> list[PaperRecord]:
    """One record per natural key: a statement may not update the same row twice."""
    by_key: dict[str, PaperRecord] = {}
    for record in records:
        seen = by_key.get(record.natural_key)
        if seen is None or (record.upvotes or 0) >= (seen.upvotes or 0):
            by_key[record.natural_key] = record
    return list(by_key.values())


def _row(record: PaperRecord) -> dict:
    import json

    return {
        "arxiv_id": record.arxiv_id,
        "source_key": None if record.arxiv_id else record.natural_key,
        "title": record.title,
        "abstract": record.abstract,
        "authors": json.dumps(list(record.authors)),
        "author_count": record.author_count,
        "published_on": record.published_on,
        "listed_on": record.listed_on,
        "upvotes": record.upvotes or 0,
        "code_url": record.code_url,
    }


def _upsert(records: list[PaperRecord], key_column: str) -> BatchCounts:
    columns = [key_column, *_MERGE]
    types = {**_KEY_COLUMNS, **{c: t for c, (t, _) in _MERGE.items()}}
    rows = [_row(r) for r in records]
    arrays = [[row[c] for row in rows] for c in columns]
    unnest = ", ".join(f"%s::{types[c]}[]" for c in columns)
    select = ", ".join(
        "ARRAY(SELECT jsonb_array_elements_text(new.authors::jsonb))" if c == "authors" else c
        for c in columns
    )
    merged = {c: _curated_guard(c, expr) for c, (_, expr) in _MERGE.items()}
    sql = f"""
        WITH new AS (SELECT * FROM unnest({unnest}) AS new({", ".join(columns)}))
        INSERT INTO catalogue_paper AS paper
            ({", ".join(columns)}, hidden, curated_fields, created_at, updated_at)
        SELECT {select}, false, '{{}}', now(), now() FROM new
        ON CONFLICT ({key_column}) DO UPDATE SET
            {", ".join(f"{c} = {_as_excluded(e)}" for c, e in merged.items())},
            updated_at = now()
        WHERE ({", ".join(f"paper.{c}" for c in merged)})
            IS DISTINCT FROM ({", ".join(_as_excluded(e) for e in merged.values())})
        RETURNING (xmax = 0) AS inserted
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)
        inserted = [row[0] for row in cursor.fetchall()]
    created = sum(inserted)
    updated = len(inserted) - created
    return BatchCounts(created, updated, len(records) - created - updated)


def _curated_guard(column: str, expression: str) -> str:
    if column not in CURATABLE:
        return expression
    curated = f"'{column}' = ANY(paper.curated_fields)"
    return f"CASE WHEN {curated} THEN paper.{column} ELSE {expression} END"


def _as_excluded(expression: str) -> str:
    """In ON CONFLICT DO UPDATE the proposed row is called EXCLUDED, not ``new``."""
    return expression.replace("new.", "EXCLUDED.")
