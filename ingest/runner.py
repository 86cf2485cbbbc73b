"""Running one ingest: get the payloads, parse them, upsert in batches, record what happened.

Tasks and management commands both call ``execute_run``; it owns the IngestRun's life cycle so
that every way in reports the same counts, rejections and errors. A run reads one of:

- a local file (``location`` is a path),
- a URL (downloaded to a temporary file, in constant memory),
- a ``Source`` (its format's ``fetch_pages`` walks every page of the listing).

Parsing and writing overlap: a thread parses the next batch while PostgreSQL writes this one.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from catalogue.tasks import queue_embedding, tag_recent_papers
from catalogue.trending import refresh_trending
from ingest import sources
from ingest.http import Fetcher, FetchError, MemoryValidatorCache
from ingest.models import IngestRun, RejectedRecord, Source
from ingest.records import Deleted, PaperRecord, ParseError, Rejected
from ingest.upsert import mark_deleted, upsert_papers

log = logging.getLogger(__name__)
_SNIFF_BYTES = 64 * 1024
_CLOCK_MARGIN = dt.timedelta(minutes=5)


class RetryLater(Exception):
    """A transient failure (timeout, 5xx, 429) that a later attempt may get past."""

    def __init__(self, error: FetchError):
        super().__init__(str(error))
        self.error = error


def create_run(
    location: str = "",
    *,
    fmt: str | None = None,
    listed_on: dt.date | None = None,
    source: Source | None = None,
) -> IngestRun:
    options = {"format": fmt, "listed_on": listed_on.isoformat() if listed_on else None}
    return IngestRun.objects.create(
        source=source,
        format=fmt or (source.kind if source else ""),
        location=location or (source.url if source else ""),
        options=options,
    )


def execute_run(run: IngestRun, *, final_attempt: bool = True) -> IngestRun:
    """Ingest what ``run`` names; it ends succeeded, partial or failed, never half-open.

    A transient fetch failure raises ``RetryLater`` unless this is the ``final_attempt``.
    Re-executing a run (a redelivered task) starts its counts afresh: the upsert is
    idempotent, so nothing is doubled.
    """
    _start(run)
    try:
        for payload in _payloads(run):
            with payload.open() as stream:
                _consume(run, _parse(run, payload, stream))
    except FetchError as exc:
        if exc.transient and not final_attempt:
            _mark(run, status=IngestRun.Status.QUEUED, error=f"will retry: {exc}")
            raise RetryLater(exc) from exc
        return _finish(run, IngestRun.Status.FAILED, error=str(exc))
    except (OSError, ValueError, ParseError, SoftTimeLimitExceeded) as exc:
        # ValueError: an unknown format or bad source parameters; both are worth reading.
        log.warning("ingest run %s failed: %s", run.pk, exc)
        return _finish(run, IngestRun.Status.FAILED, error=_describe(exc))
    status = IngestRun.Status.PARTIAL if run.rejected else IngestRun.Status.SUCCEEDED
    _finish(run, status)
    _after_changes(run)
    return run


def _after_changes(run: IngestRun) -> None:
    """Once committed, on a worker: topics for the papers this run created or changed, fresh
    trending scores (new upvotes) and embeddings of new or changed text (a low-priority chain
    that yields the worker to the next ingest)."""
    if not (run.created or run.updated):
        return
    # A margin before the start: papers are stamped by the database's clock, not ours.
    since = (run.started_at - _CLOCK_MARGIN).isoformat()

    def enqueue():
        tag_recent_papers.delay(since)
        refresh_trending.delay()
        queue_embedding()

    transaction.on_commit(enqueue)


def _describe(exc: Exception) -> str:
    if isinstance(exc, SoftTimeLimitExceeded):
        return "stopped: the task's time limit was reached"
    return str(exc) or type(exc).__name__


# --- payloads ------------------------------------------------------------------------------


@dataclass
class Payload:
    """Bytes in memory or a file on disk, and the listing date to parse them with."""

    content: bytes = b""
    path: Path | None = None
    listed_on: dt.date | None = None
    expected: int | None = None
    temporary: bool = False

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        if self.path is None:
            import io

            yield io.BytesIO(self.content)
            return
        try:
            with open(self.path, "rb") as stream:
                yield stream
        finally:
            if self.temporary:
                self.path.unlink(missing_ok=True)


def _payloads(run: IngestRun) -> Iterator[Payload]:
    listed_on = _listed_on(run)
    if run.source_id:
        yield from _source_payloads(run, listed_on)
    elif run.location.startswith(("http://", "https://")):
        with _fetcher() as fetcher:
            result = fetcher.download(run.location, conditional=False)
        yield Payload(path=result.path, listed_on=listed_on, temporary=True)
    else:
        path = Path(run.location)
        yield Payload(path=path, listed_on=listed_on, expected=_count_lines_if_jsonl(path))


def _source_payloads(run: IngestRun, listed_on: dt.date | None) -> Iterator[Payload]:
    source = run.source
    parser = sources.get_parser(source.kind)
    # Validators are saved only after every page was written: a run that fails half-way
    # must not make the next one skip a payload it never stored.
    validators = MemoryValidatorCache()
    for url, (etag, last_modified) in source.validators.items():
        validators.set(url, etag, last_modified)
    with _fetcher(validators) as fetcher:
        for page in parser.fetch_pages(fetcher, source.url or None, source.params):
            yield Payload(
                content=page.content,
                path=page.path,
                listed_on=listed_on or page.listed_on,  # an explicit --listed-on wins
                expected=page.expected,
                temporary=page.path is not None,
            )
    source.validators = validators.as_dict()
    source.save(update_fields=["validators"])


def _fetcher(validators: MemoryValidatorCache | None = None) -> Fetcher:
    return Fetcher(
        validators=validators,
        user_agent=settings.INGEST_USER_AGENT,
        read_timeout=settings.INGEST_FETCH_TIMEOUT,
        max_attempts=settings.INGEST_FETCH_ATTEMPTS,
        backoff_base=settings.INGEST_RETRY_BACKOFF / 30,
    )


def _count_lines_if_jsonl(path: Path) -> int | None:
    """Progress for big snapshot files: one fast pass counting lines (~1 GB/s)."""
    if path.suffix not in (".jsonl", ".json") or path.stat().st_size < 10_000_000:
        return None
    lines = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 22):
            lines += chunk.count(b"\n")
    return lines


def _parse(run: IngestRun, payload: Payload, stream: BinaryIO) -> Iterator:
    fmt = run.options.get("format") or (run.source.kind if run.source_id else None)
    if not fmt:
        fmt = sources.detect_format(stream.read(_SNIFF_BYTES))
        stream.seek(0)
    if run.format != fmt or (payload.expected and run.expected != payload.expected):
        _mark(run, format=fmt, expected=payload.expected or run.expected)
    return sources.get_parser(fmt).parse(stream, listed_on=payload.listed_on)


def _listed_on(run: IngestRun) -> dt.date | None:
    value = run.options.get("listed_on")
    return dt.date.fromisoformat(value) if value else None


# --- writing -------------------------------------------------------------------------------


def _consume(run: IngestRun, results: Iterable) -> None:
    """Upsert parsed results batch by batch; each batch commits with the run's counts.

    Batches are written by ``INGEST_WRITERS`` threads, each on its own connection, so that
    PostgreSQL computes search vectors on several cores. Inside a caller's transaction (tests,
    a shell) everything is written on the caller's connection instead.
    """
    batches = _batches_parsed_ahead(results, settings.INGEST_BATCH_SIZE)
    writers = 1 if transaction.get_connection().in_atomic_block else settings.INGEST_WRITERS
    if writers <= 1:
        for batch in batches:
            _write_batch(run, batch)
        return
    with ThreadPoolExecutor(writers, thread_name_prefix="ingest-writer") as pool:
        pending: set[Future] = set()
        try:
            for batch in batches:
                pending.add(pool.submit(_write_batch_in_thread, run.pk, batch))
                if len(pending) >= writers:  # back-pressure: parse no further ahead
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    _raise_first_error(done)
        finally:
            done, _ = wait(pending)  # what was handed out is written before any error rises
        _raise_first_error(done)
    run.refresh_from_db(fields=_COUNTS)


def _raise_first_error(futures) -> None:
    for future in futures:
        future.result()


def _write_batch_in_thread(run_id: int, batch: list) -> None:
    try:
        _write_batch(IngestRun(pk=run_id), batch)
    finally:
        connections.close_all()  # this thread's connection; the pool's threads are short-lived


def _write_batch(run: IngestRun, batch: list) -> None:
    papers = [r for r in batch if isinstance(r, PaperRecord)]
    deletions = [r for r in batch if isinstance(r, Deleted)]
    rejected = [r for r in batch if isinstance(r, Rejected)]
    with transaction.atomic():
        counts = upsert_papers(papers)
        deleted = mark_deleted(deletions) if deletions else 0
        RejectedRecord.objects.bulk_create(
            RejectedRecord(run_id=run.pk, reason=r.reason, raw=r.raw, position=r.position)
            for r in rejected
        )
        # Increments, not assignments: several writers report into the same run row.
        increments = {
            "seen": len(papers) + len(deletions),
            "created": counts.created,
            "updated": counts.updated,
            "unchanged": counts.unchanged,
            "rejected": len(rejected),
            "deleted": deleted,
        }
        IngestRun.objects.filter(pk=run.pk).update(
            **{name: F(name) + value for name, value in increments.items()}
        )
    for name, value in increments.items():
        setattr(run, name, getattr(run, name) + value)


_COUNTS = ["seen", "created", "updated", "unchanged", "rejected", "deleted"]
_END = object()


def _batches_parsed_ahead(results: Iterable, size: int) -> Iterator[list]:
    """Batches of ``results``, parsed in a thread one batch ahead of the caller.

    Parsing is Python work and writing is PostgreSQL work: overlapping them uses both cores.
    A parser error surfaces after the batches before it were handed out (and written).
    """
    handoff: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce():
        batch = []
        try:
            for item in results:
                batch.append(item)
                if len(batch) == size:
                    handoff.put(batch)
                    batch = []
                    if stop.is_set():
                        return
        except BaseException as exc:  # handed to the consumer, raised there
            handoff.put(batch)  # what was parsed before the error still lands
            handoff.put(exc)
        else:
            handoff.put(batch)
        finally:
            handoff.put(_END)

    thread = threading.Thread(target=produce, name="ingest-parser", daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            if item:
                yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                handoff.get_nowait()
            except queue.Empty:
                thread.join(0.05)


# --- life cycle ----------------------------------------------------------------------------


def _start(run: IngestRun) -> None:
    fields = {name: 0 for name in _COUNTS}
    _mark(
        run,
        status=IngestRun.Status.RUNNING,
        started_at=timezone.now(),
        finished_at=None,
        error="",
        attempts=run.attempts + 1,
        **fields,
    )
    run.rejections.all().delete()


def _mark(run: IngestRun, **fields) -> None:
    for name, value in fields.items():
        setattr(run, name, value)
    run.save(update_fields=list(fields))


def _finish(run: IngestRun, status: str, error: str = "") -> IngestRun:
    _mark(run, status=status, error=error, finished_at=timezone.now())
    return run
