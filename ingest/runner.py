"""Running one ingest: read a payload, parse it, upsert in batches, record what happened.

Tasks and management commands both call ``execute_run``; it owns the IngestRun's life cycle so
that every way in reports the same counts, rejections and errors.
"""

from __future__ import annotations

import datetime as dt
import logging
from itertools import islice

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ingest import sources
from ingest.models import IngestRun, RejectedRecord
from ingest.records import Deleted, PaperRecord, ParseError, Rejected
from ingest.upsert import upsert_papers

log = logging.getLogger(__name__)
_SNIFF_BYTES = 64 * 1024


def create_run(
    location: str, *, fmt: str | None = None, listed_on: dt.date | None = None
) -> IngestRun:
    options = {"format": fmt, "listed_on": listed_on.isoformat() if listed_on else None}
    return IngestRun.objects.create(source=fmt or "auto", location=location, options=options)


def execute_run(run: IngestRun) -> IngestRun:
    """Ingest ``run.location``; the run ends succeeded, partial or failed, never half-open."""
    _mark(run, status=IngestRun.Status.RUNNING, started_at=timezone.now(), error="")
    try:
        with open(run.location, "rb") as stream:
            fmt = run.options.get("format") or sources.detect_format(stream.read(_SNIFF_BYTES))
            stream.seek(0)
            run.source = fmt
            parser = sources.get_parser(fmt)
            _consume(run, parser.parse(stream, listed_on=_listed_on(run)))
    except (OSError, ParseError, sources.UnknownFormat) as exc:
        log.warning("ingest run %s failed: %s", run.pk, exc)
        return _finish(run, IngestRun.Status.FAILED, error=str(exc))
    status = IngestRun.Status.PARTIAL if run.rejected else IngestRun.Status.SUCCEEDED
    return _finish(run, status)


def _listed_on(run: IngestRun) -> dt.date | None:
    value = run.options.get("listed_on")
    return dt.date.fromisoformat(value) if value else None


def _consume(run: IngestRun, results) -> None:
    """Upsert parsed records batch by batch; store rejections; save counts after each batch."""
    batch_size = settings.INGEST_BATCH_SIZE
    results = iter(results)
    while batch := list(islice(results, batch_size)):
        papers = [r for r in batch if isinstance(r, PaperRecord)]
        rejected = [r for r in batch if isinstance(r, Rejected)]
        with transaction.atomic():
            counts = upsert_papers(papers)
            RejectedRecord.objects.bulk_create(
                RejectedRecord(run=run, reason=r.reason, raw=r.raw, position=r.position)
                for r in rejected
            )
            run.seen += len(papers) + sum(isinstance(r, Deleted) for r in batch)
            run.created += counts.created
            run.updated += counts.updated
            run.unchanged += counts.unchanged
            run.rejected += len(rejected)
            run.save(
                update_fields=["source", "seen", "created", "updated", "unchanged", "rejected"]
            )


def _mark(run: IngestRun, **fields) -> None:
    for name, value in fields.items():
        setattr(run, name, value)
    run.save(update_fields=list(fields))


def _finish(run: IngestRun, status: str, error: str = "") -> IngestRun:
    _mark(run, source=run.source, status=status, error=error, finished_at=timezone.now())
    return run
