"""Running one ingest: get the payloads, parse them, upsert in batches, record what happened.

Tasks and management commands both call ``execute_run``; it owns the IngestRun's life cycle so
that every way in reports the same counts, rejections and errors. A run reads one of:

- a local file (``location`` is a path),
- a URL (downloaded to a temporary file, in constant memory),
- a ``Source`` (its format's ``fetch_pages`` walks every page of the listing).

Parsing and writing overlap: a thread parses the next batch while PostgreSQL writes this one.

A run cannot wedge. It is executed only under its lease (``ingest.lease``): a second delivery of
its task finds the lease taken and does nothing. Each batch commits with the run's counts and
checkpoint, so a run whose worker died is resumed (``requeue_orphaned_runs``, the reaper) from
what was written, with exact counts. A record the database refuses (a NUL, a number out of
range) becomes a rejection and the rest of its batch lands. Any other error ends the run
failed, with the error's type and message; transient ones (network, lost database connection)
are retried first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import json
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import psycopg
from celery.exceptions import SoftTimeLimitExceeded
from django import db
from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import F, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from catalogue.tasks import (
    PAIR_PRIORITY,
    build_word_months,
    pair_phrases,
    queue_embedding,
    tag_recent_papers,
)
from catalogue.trending import refresh_trending
from ingest import chunks, deferral, sources
from ingest.http import (
    Fetcher,
    FetchError,
    HostThrottle,
    MemoryValidatorCache,
    RedisHostThrottle,
)
from ingest.lease import run_lease
from ingest.models import IngestRun, RejectedRecord, Source, checkpoint_after
from ingest.records import Deleted, PaperRecord, ParseError, Rejected
from ingest.sources._params import date_param
from ingest.upsert import BatchCounts, mark_deleted, upsert_papers

log = logging.getLogger(__name__)
_SNIFF_BYTES = 64 * 1024
_CLOCK_MARGIN = dt.timedelta(minutes=5)
# A run started this many times is given up: a payload that kills its worker every time (by
# exhausting memory, say) must not be resumed for ever.
MAX_ATTEMPTS = 10

# Errors of one record, not of the batch or the database: the batch is split to find the
# record, which becomes a rejection. Django wraps the errors of its cursors; the upsert's COPY
# raises psycopg's own. psycopg refuses to encode a lone surrogate before sending anything.
RECORD_ERRORS = (
    db.DataError,
    db.IntegrityError,
    psycopg.DataError,
    psycopg.IntegrityError,
    UnicodeEncodeError,
)
# Errors a later attempt may get past: the connection was lost, the server restarts, a
# deadlock or serialization failure. Bad data is never retried.
TRANSIENT_DB_ERRORS = (
    db.OperationalError,
    db.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


class RetryLater(Exception):
    """A transient failure (timeout, 5xx, 429, a lost database) a later attempt may get past."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class LeaseLost(Exception):
    """Another process executes this run now (this one lost its database session)."""


def create_run(
    location: str = "",
    *,
    fmt: str | None = None,
    listed_on: dt.date | None = None,
    source: Source | None = None,
    chunks: int | None = None,
) -> IngestRun:
    """A queued run; with ``chunks``, one split into that many chunk runs (``ingest.chunks``)."""
    options = {"format": fmt, "listed_on": listed_on.isoformat() if listed_on else None}
    if chunks:
        options["chunks"] = chunks
    return IngestRun.objects.create(
        source=source,
        format=fmt or (source.kind if source else ""),
        location=location or (source.url if source else ""),
        options=options,
    )


def execute_run(
    run: IngestRun,
    *,
    final_attempt: bool = True,
    results: Iterable | None = None,
    enqueue: Callable[[int], object] | None = None,
    worker: str | None = None,
) -> IngestRun:
    """Ingest what ``run`` names; it ends succeeded, partial or failed, never half-open.

    Without the run's lease (another process executes it) this does nothing. A run already
    under way resumes after its last written batch. A transient failure raises ``RetryLater``
    unless this is the ``final_attempt``; any other error fails the run with its reason.
    ``results`` are records parsed already, written instead of reading the run's location.

    A split run (the ``chunks`` option) is planned here: its chunk runs are created and each
    sent by ``enqueue(run_id)`` to any worker, or, without ``enqueue``, executed here one
    after the other. It stays running until its last chunk finishes it (``_close_split_run``).

    ``worker`` names the executor in the run's ``worker`` field (a Celery task passes its
    worker's node name, e.g. ``celery@work1``; default: this host's name), with the pid.
    """
    with run_lease(run.pk) as leased:
        if not leased:
            log.info("ingest run %s is executed elsewhere: nothing to do here", run.pk)
            run.refresh_from_db()
            return run
        try:
            executor = f"{worker or socket.gethostname()} pid {os.getpid()}"
            return _execute_leased(run, final_attempt, results, enqueue, executor)
        except LeaseLost:
            log.warning("ingest run %s was taken over by another process; stopped", run.pk)
            return run


def _execute_leased(
    run: IngestRun,
    final_attempt: bool,
    results: Iterable | None,
    enqueue: Callable[[int], object] | None,
    executor: str,
) -> IngestRun:
    if not _start(run, executor):
        return run
    numbers = itertools.count()  # batches are numbered across the run's payloads
    try:
        deferral.restore_abandoned()
        if run.is_split and results is None:
            _split(run, enqueue)
            return run
        _consume_all(run, _parsed_payloads(run) if results is None else [results], numbers)
    except LeaseLost:
        raise
    except FetchError as exc:
        if exc.transient and not final_attempt:
            _mark(run, status=IngestRun.Status.QUEUED, error=f"will retry: {exc}")
            raise RetryLater(str(exc), exc.retry_after) from exc
        return _finish(run, IngestRun.Status.FAILED, error=str(exc))
    except TRANSIENT_DB_ERRORS as exc:
        log.warning("ingest run %s: database error, %s", run.pk, _describe(exc))
        _reconnect_if_broken()
        if not final_attempt:
            _mark(run, status=IngestRun.Status.QUEUED, error=f"will retry: {_describe(exc)}")
            raise RetryLater(_describe(exc)) from exc
        return _finish(run, IngestRun.Status.FAILED, error=_describe(exc))
    except (ParseError, OSError, ValueError, SoftTimeLimitExceeded) as exc:
        # Expected ends: a truncated file, a missing one, an unknown format, bad parameters.
        log.warning("ingest run %s failed: %s", run.pk, _describe(exc))
        return _finish(run, IngestRun.Status.FAILED, error=_describe(exc))
    except Exception as exc:
        # Unexpected: still the run's end, never a run left "running".
        log.exception("ingest run %s failed", run.pk)
        _reconnect_if_broken()
        return _finish(run, IngestRun.Status.FAILED, error=_describe(exc))
    status = IngestRun.Status.PARTIAL if run.rejected else IngestRun.Status.SUCCEEDED
    _finish(run, status)
    _after_changes(run)
    return run


def requeue_orphaned_runs(
    enqueue: Callable[[int], object], resend_queued_before: dt.datetime | None = None
) -> list[int]:
    """The reaper: runs said to be running whose worker died get queued again, to resume.

    ``enqueue(run_id)`` sends the task. It is sent before the run is marked queued: were this
    process to die in between, the run stays orphaned and the next reaper sends it again. A
    duplicate task finds the lease taken (or the run finished) and does nothing.
    ``resend_queued_before``: also send again runs queued before then and never started
    (``_resend_never_started``), however recently.
    """
    requeued = []
    for run in IngestRun.objects.orphaned().only("pk", "attempts"):
        enqueue(run.pk)
        IngestRun.objects.filter(
            pk=run.pk, status=IngestRun.Status.RUNNING, attempts=run.attempts
        ).update(status=IngestRun.Status.QUEUED, error="resuming: its worker stopped mid-run")
        log.warning("ingest run %s lost its worker; queued to resume", run.pk)
        requeued.append(run.pk)
    return requeued + _resend_never_started(enqueue, resend_queued_before)


def _resend_never_started(
    enqueue: Callable[[int], object], queued_before: dt.datetime | None = None
) -> list[int]:
    """Send again the task of each run queued long ago and never started, at most once per
    ``INGEST_RESEND_QUEUED_AFTER``: its message may be held by a worker that was lost after
    taking it. A run that is merely waiting its turn gets a second message that finds it
    leased or finished and does nothing. Runs retried after an error (attempts > 0) wait for
    their retry's countdown (a server's Retry-After) and are not touched. ``queued_before``
    (a worker's start, see ``ingest.tasks``) resends sooner: every run queued before it."""
    now = timezone.now()
    before = now - dt.timedelta(seconds=settings.INGEST_RESEND_QUEUED_AFTER)
    if queued_before is not None:
        before = max(before, queued_before)
    resent = []
    for pk in IngestRun.objects.never_started(before).values_list("pk", flat=True):
        enqueue(pk)
        IngestRun.objects.filter(pk=pk).update(queued_at=now)
        log.warning("ingest run %s was queued before %s and never started; sent again", pk, before)
        resent.append(pk)
    return resent


def _after_changes(run: IngestRun) -> None:
    """Once committed, on a worker: topics for the papers this run created or changed, fresh
    trending scores (new upvotes), the word pairs of new or changed text (for phrases) and
    its embeddings (low-priority chains that yield the worker to the next ingest)."""
    if run.parent_id or not (run.created or run.updated):
        return  # a chunk: its split run does this once, for all its chunks
    # A margin before the start: papers are stamped by the database's clock, not ours.
    since = (run.started_at - _CLOCK_MARGIN).isoformat()

    def enqueue():
        tag_recent_papers.delay(since)
        refresh_trending.delay()
        pair_phrases.apply_async(priority=PAIR_PRIORITY)
        build_word_months.apply_async(priority=PAIR_PRIORITY)
        queue_embedding()

    transaction.on_commit(enqueue)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SoftTimeLimitExceeded):
        return "stopped: the task's time limit was reached"
    if isinstance(exc, (ParseError, FetchError)):
        return str(exc)  # they say what and where already
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _reconnect_if_broken() -> None:
    """After a database error outside any transaction, drop a connection that no longer
    works, so the run's status can still be written (Django reconnects on next use)."""
    if connection.in_atomic_block or connection.connection is None:
        return
    if not connection.is_usable():
        connection.close()


# --- payloads ------------------------------------------------------------------------------


def _parsed_payloads(run: IngestRun) -> Iterator[Iterator]:
    """Each payload's parse results, read while its file is open."""
    for payload in _payloads(run):
        with payload.open() as stream:
            yield _parse(run, payload, stream)


@dataclass
class Payload:
    """Bytes in memory or a file on disk, and the listing date to parse them with."""

    content: bytes = b""
    path: Path | None = None
    listed_on: dt.date | None = None
    expected: int | None = None
    temporary: bool = False
    # A chunk's share of a line-per-record file: the lines starting in [start, end) of the
    # whole file, of which ``path`` holds the bytes from ``offset`` on.
    byte_range: tuple[int, int] | None = None
    offset: int = 0

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        if self.path is None:
            import io

            yield io.BytesIO(self.content)
            return
        try:
            with open(self.path, "rb") as stream:
                if self.byte_range is None:
                    yield stream
                else:
                    start, end = (bound - self.offset for bound in self.byte_range)
                    yield chunks.line_range_stream(stream, start, end)
        finally:
            if self.temporary:
                self.path.unlink(missing_ok=True)


def _payloads(run: IngestRun) -> Iterator[Payload]:
    listed_on = _listed_on(run)
    if byte_range := run.options.get("byte_range"):
        yield _range_payload(run.location, *byte_range, listed_on)
    elif run.source_id:
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
    params = {**source.params, **run.options.get("params", {})}  # a chunk's date window
    # Validators are saved only after every page was written: a run that fails half-way
    # must not make the next one skip a payload it never stored.
    validators = MemoryValidatorCache()
    for url, (etag, last_modified) in source.validators.items():
        validators.set(url, etag, last_modified)
    with _fetcher(validators) as fetcher:
        for page in parser.fetch_pages(fetcher, source.url or None, params):
            yield Payload(
                content=page.content,
                path=page.path,
                listed_on=listed_on or page.listed_on,  # an explicit --listed-on wins
                expected=page.expected,
                temporary=page.path is not None,
            )
    if run.parent_id is None:  # a chunk's harvest is one window, not the listing's state
        source.validators = validators.as_dict()
        source.save(update_fields=["validators"])


def _fetcher(validators: MemoryValidatorCache | None = None) -> Fetcher:
    return Fetcher(
        validators=validators,
        user_agent=settings.INGEST_USER_AGENT,
        read_timeout=settings.INGEST_FETCH_TIMEOUT,
        max_attempts=settings.INGEST_FETCH_ATTEMPTS,
        backoff_base=settings.INGEST_RETRY_BACKOFF / 30,
        min_interval=settings.INGEST_MIN_INTERVAL,
        throttle=_throttle(),
    )


def _throttle() -> HostThrottle | None:
    """The cluster-wide throttle (INGEST_SHARED_THROTTLE), or None: the fetcher's own."""
    if not settings.INGEST_SHARED_THROTTLE:
        return None
    return _shared_throttle(
        settings.REDIS_URL, settings.INGEST_THROTTLE_PREFIX, settings.INGEST_MIN_INTERVAL
    )


@functools.lru_cache(maxsize=4)
def _shared_throttle(redis_url: str, prefix: str, min_interval: float) -> RedisHostThrottle:
    """One per process, built on first use (after a worker forks): the runs in a process
    share its Redis connections and take their turns in it first."""
    return RedisHostThrottle(redis_url, min_interval, prefix=prefix)


# Files counted before their ingest: large enough for the count to matter (a progress bar, the
# indexes deferred: INGEST_DEFER_INDEXES_FROM records are hundreds of MB of snapshot).
COUNT_LINES_FROM_BYTES = 10_000_000


def _count_lines_if_jsonl(path: Path) -> int | None:
    """Progress for big snapshot files: one fast pass counting lines (~1 GB/s)."""
    if path.suffix not in (".jsonl", ".json") or path.stat().st_size < COUNT_LINES_FROM_BYTES:
        return None
    return _count_lines(path)


def _count_lines(path: Path) -> int:
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


@dataclass
class _Batch:
    run_id: int
    attempt: int  # the run's attempts when this execution started: the writer's fence
    number: int
    first: int  # 1-based number of its first result in the run, for rejections' positions
    results: list
    where: str = ""  # a chunk's place in its run, before its rejections' positions


def _consume_all(run: IngestRun, payloads: Iterable[Iterable], numbers: Iterator[int]) -> None:
    """``_consume`` each payload's results. A large run (its first payload tells its size:
    a snapshot's lines, a harvest's complete list) loads without the papers' secondary
    indexes and builds them once at its end, failed or not (``ingest.deferral``)."""
    try:
        for number, results in enumerate(payloads):
            if number == 0 and deferral.worth_deferring(run):
                deferral.defer(run)
            _consume(run, results, numbers)
    except BaseException:
        deferral.restore_quietly(run)
        raise
    deferral.restore_for(run)  # also those dropped before a resumed run's worker stopped


def _consume(run: IngestRun, results: Iterable, numbers: Iterator[int]) -> None:
    """Upsert parsed results batch by batch; each batch commits with the run's counts.

    Batches are numbered across the run's payloads; a batch the run wrote before (it resumes)
    is parsed again but not written. They are written by ``INGEST_WRITERS`` threads, each on
    its own connection, so that PostgreSQL computes search vectors on several cores. Inside a
    caller's transaction (tests, a shell) everything is written on the caller's connection.
    """
    batches = _batches_parsed_ahead(results, run.batch_size)
    writers = 1 if transaction.get_connection().in_atomic_block else settings.INGEST_WRITERS
    if writers <= 1:
        for batch in _to_write(run, batches, numbers):
            _write_batch(batch)
    else:
        _write_in_threads(_to_write(run, batches, numbers), writers)
    run.refresh_from_db(fields=_PROGRESS)


def _write_in_threads(batches: Iterable[_Batch], writers: int) -> None:
    """Write ``batches`` on ``writers`` threads, each on one connection for the whole run (a
    backend per batch cost the server its start, its exit and its first touch of every shared
    buffer page again, each batch). After an error no further batch is handed out; those
    handed out are written before the first error rises."""
    handed_out: queue.Queue = queue.Queue(maxsize=1)  # back-pressure: parse little further ahead
    errors: list[BaseException] = []

    def write() -> None:
        try:
            while (batch := handed_out.get()) is not None:
                try:
                    _write_batch(batch)
                except BaseException as error:  # raised by the run, in the caller's thread
                    errors.append(error)
        finally:
            connections.close_all()  # this thread's connection

    threads = [
        threading.Thread(target=write, name=f"ingest-writer-{number}") for number in range(writers)
    ]
    for thread in threads:
        thread.start()
    try:
        for batch in batches:
            if errors:
                break
            handed_out.put(batch)
    finally:
        for _ in threads:
            handed_out.put(None)
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]


def _to_write(run: IngestRun, batches: Iterable[list], numbers: Iterator[int]) -> Iterator[_Batch]:
    """The batches this execution writes: those a previous one did not."""
    for batch in batches:
        number = next(numbers)
        if not run.is_written(number):
            first = number * run.batch_size + 1
            yield _Batch(run.pk, run.attempts, number, first, batch, _chunk_place(run))


def _chunk_place(run: IngestRun) -> str:
    """ "chunk 3 of 7, " for a chunk's run: where its records' positions count from."""
    if "chunk" not in run.options:
        return ""
    return f"chunk {run.options['chunk']} of {run.options['of']}, "


def _write_batch(batch: _Batch) -> None:
    """Write one batch in one transaction, with its counts, rejections and checkpoint."""
    papers, deletions, rejected = [], [], []
    for index, result in enumerate(batch.results, batch.first):
        if isinstance(result, Rejected):
            rejected.append(result)
        elif isinstance(result, Deleted):
            deletions.append((index, result))
        elif isinstance(result, PaperRecord):
            papers.append((index, result))
    with transaction.atomic():
        _relax_commit()
        counts, refused = _isolating(upsert_papers, papers, BatchCounts())
        deleted, refused_deletions = _isolating(mark_deleted, deletions, 0)
        rejected += refused + refused_deletions
        increments = {
            "seen": len(papers) + len(deletions) - len(refused) - len(refused_deletions),
            "created": counts.created,
            "updated": counts.updated,
            "unchanged": counts.unchanged,
            "rejected": len(rejected),
            "deleted": deleted,
        }
        _commit_progress(batch, increments, rejected)


def _relax_commit() -> None:
    """Let this batch's transaction commit without waiting for its WAL to reach the disk.

    Safe here, and only here: a crash may lose the last batches committed in the moment before
    it (never corrupt or half-write one), and their checkpoint goes with them, in the same
    transaction: the run resumes from the checkpoint that survived and writes them again,
    which the idempotent upsert allows. The writer then goes on to its next batch at once
    instead of waiting on a disk flush per batch.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")


def _isolating(write, numbered: list[tuple[int, object]], total):
    """``write`` the items, each attempt in a savepoint; when the database refuses one record
    (``RECORD_ERRORS``), halve the items and try again, until the refused records stand alone.

    Returns the sum of what the writes returned and a ``Rejected`` per refused record. One
    bad record in a batch of 2,000 costs ~22 more attempts of ever smaller halves (measured:
    0.1-0.5 s more for the batch). Any other error is the batch's, and rises.
    """
    if not numbered:
        return total, []
    try:
        with transaction.atomic():
            return total + write([item for _, item in numbered]), []
    except RECORD_ERRORS as exc:
        if len(numbered) == 1:
            return total, [_refused(*numbered[0], exc)]
    middle = len(numbered) // 2
    first, refused_first = _isolating(write, numbered[:middle], total)
    both, refused_second = _isolating(write, numbered[middle:], first)
    return both, refused_first + refused_second


def _refused(index: int, record, exc: Exception) -> Rejected:
    log.warning("record %s refused by the database: %s", index, _describe(exc))
    raw = json.dumps(dataclasses.asdict(record), default=str, ensure_ascii=False)
    return Rejected(f"the database refused it: {_describe(exc)}", raw, f"record {index}")


def _commit_progress(batch: _Batch, increments: dict, rejected: list[Rejected]) -> None:
    """Add the batch's counts and checkpoint to its run and store its first rejections.

    The run's row is locked: writers add up one after the other, and the count of stored
    rejections is exact. Fenced on ``attempts``: when another process took the run over, the
    batch rolls back.
    """
    progress = (
        IngestRun.objects.select_for_update()
        .filter(pk=batch.run_id, attempts=batch.attempt)
        .values("rejections_stored", "checkpoint", "batches_ahead")
        .first()
    )
    if progress is None:
        raise LeaseLost(batch.run_id)
    room = max(0, settings.INGEST_MAX_STORED_REJECTIONS - progress["rejections_stored"])
    samples = [RejectedRecord.sample(batch.run_id, r, batch.where) for r in rejected[:room]]
    RejectedRecord.objects.bulk_create(samples)
    checkpoint, ahead = checkpoint_after(
        progress["checkpoint"], progress["batches_ahead"], batch.number
    )
    # Increments, not assignments: several writers report into the same run row.
    IngestRun.objects.filter(pk=batch.run_id).update(
        **{name: F(name) + value for name, value in increments.items()},
        rejections_stored=F("rejections_stored") + len(samples),
        checkpoint=checkpoint,
        batches_ahead=ahead,
    )


_COUNTS = ["seen", "created", "updated", "unchanged", "rejected", "deleted"]
_PROGRESS = [*_COUNTS, "rejections_stored", "checkpoint", "batches_ahead"]
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


# --- split runs ----------------------------------------------------------------------------

# Past a chunk's end, the bytes fetched at once to finish its last line (a snapshot line is a
# few KB); fetched again, RANGE_TAIL at a time, until a newline or the end of the file.
RANGE_TAIL = 1 << 20


def _split(run: IngestRun, enqueue: Callable[[int], object] | None) -> None:
    """Plan ``run``'s chunks (once), hand out those not finished, then wait for none.

    Planned once: an execution resumed after its worker died (or a retry) finds the chunks
    made and hands out again those not finished; a chunk already queued or running ignores a
    second delivery (its lease). A retry also runs the chunks that failed again.
    """
    if not run.chunks.exists():
        _create_chunks(run, _numbered(_chunk_options(run)))
    run.chunks.filter(status=IngestRun.Status.FAILED).update(
        status=IngestRun.Status.QUEUED, error="", finished_at=None
    )
    for chunk in run.chunks.unfinished().order_by("pk"):
        if enqueue is None:
            execute_run(chunk, worker=run.worker.rsplit(" pid ", 1)[0])
        else:
            enqueue(chunk.pk)
    _mark(run, chunk_count=run.chunks.count())
    _close_split_run(run.pk)  # every chunk may be finished already
    run.refresh_from_db()


def _create_chunks(run: IngestRun, options: list[dict]) -> None:
    with transaction.atomic():
        IngestRun.objects.bulk_create(
            IngestRun(
                parent=run,
                source=run.source,
                format=option["format"],
                location=run.location,
                options=option,
            )
            for option in options
        )


def _numbered(options: list[dict]) -> list[dict]:
    return [{**option, "chunk": n, "of": len(options)} for n, option in enumerate(options, 1)]


def _chunk_options(run: IngestRun) -> list[dict]:
    """Each chunk's options: a byte range of a line-per-record file, or a harvest's window."""
    count = int(run.options["chunks"])
    base = {"listed_on": run.options.get("listed_on")}
    if run.source_id:
        fmt = run.source.kind
        windows = _source_windows(run, count)
        _mark(run, format=fmt)
        return [
            {
                **base,
                "format": fmt,
                "params": {"from": first.isoformat(), "until": last.isoformat()},
            }
            for first, last in windows
        ]
    fmt, size = _probe(run)
    if fmt not in chunks.LINE_FORMATS:
        raise ValueError(
            f"a {fmt} listing cannot be split into chunks (only line-per-record formats: "
            f"{', '.join(sorted(chunks.LINE_FORMATS))}); ingest it without chunks"
        )
    return [
        {**base, "format": fmt, "byte_range": [start, end]}
        for start, end in chunks.byte_ranges(size, count)
    ]


def _source_windows(run: IngestRun, count: int) -> list[tuple[dt.date, dt.date]]:
    """An OAI-PMH harvest splits by datestamp, between its ``from`` and ``until`` (or today)."""
    if run.source.kind != "arxiv_oai":
        raise ValueError(
            f"a {run.source.kind} source cannot be split into chunks; only an OAI-PMH "
            "harvest (arxiv_oai) can, by date"
        )
    today = dt.date.today()
    first = date_param(run.source.params, "from", today)
    if first is None:
        raise ValueError("an OAI-PMH harvest is split by date: give the source a 'from' date")
    last = date_param(run.source.params, "until", today) or today
    return chunks.date_windows(first, last, count)


def _probe(run: IngestRun) -> tuple[str, int]:
    """The format and size in bytes of the run's file or URL, sniffed from its first bytes."""
    fmt = run.options.get("format")
    if run.location.startswith(("http://", "https://")):
        with _fetcher() as fetcher:
            head = fetcher.get(
                run.location, headers={"Range": f"bytes=0-{_SNIFF_BYTES - 1}"}, conditional=False
            )
        size = _range_total(head.status, head.headers, 0, run.location)
        fmt = fmt or sources.detect_format(head.content)
        _mark(run, format=fmt)
        return fmt, size
    path = Path(run.location)
    with open(path, "rb") as stream:
        fmt = fmt or sources.detect_format(stream.read(_SNIFF_BYTES))
    _mark(run, format=fmt, expected=_count_lines(path))
    return fmt, path.stat().st_size


def _range_total(status: int, headers, first: int, url: str) -> int:
    """The whole file's size from a 206's ``Content-Range: bytes FIRST-LAST/TOTAL``."""
    content_range = headers.get("Content-Range", "")
    unit, _, spec = content_range.partition(" ")
    span, _, total = spec.partition("/")
    if status != 206 or unit != "bytes" or not total.isdigit() or span.split("-")[0] != str(first):
        raise ValueError(
            f"{url} does not serve byte ranges (HTTP {status} to a Range request"
            f"{f', Content-Range {content_range!r}' if content_range else ''}): "
            "ingest it without chunks"
        )
    return int(total)


def _range_payload(location: str, start: int, end: int, listed_on: dt.date | None) -> Payload:
    if not location.startswith(("http://", "https://")):
        return Payload(path=Path(location), listed_on=listed_on, byte_range=(start, end))
    return _download_range(location, start, end, listed_on)


def _download_range(url: str, start: int, end: int, listed_on: dt.date | None) -> Payload:
    """The bytes a chunk of a remote file needs, in a temporary file: from the byte before
    its range (to tell whether a line starts at ``start``) to the newline ending its last line.
    """
    first = max(0, start - 1)
    with _fetcher() as fetcher:
        result = fetcher.download(
            url,
            headers={"Range": f"bytes={first}-{end - 1 + RANGE_TAIL}"},
            conditional=False,
            max_bytes=end - first + RANGE_TAIL,
        )
        total = _range_total(result.status, result.headers, first, url)
        fetched_to = first + result.size
        with open(result.path, "r+b") as out:
            while fetched_to < total and not _newline_from(out, end - 1 - first):
                piece = fetcher.get(
                    url,
                    headers={"Range": f"bytes={fetched_to}-{fetched_to + RANGE_TAIL - 1}"},
                    conditional=False,
                )
                _range_total(piece.status, piece.headers, fetched_to, url)
                out.seek(0, os.SEEK_END)
                out.write(piece.content)
                fetched_to += len(piece.content)
    return Payload(
        path=result.path,
        listed_on=listed_on,
        byte_range=(start, end),
        offset=first,
        temporary=True,
    )


def _newline_from(stream: BinaryIO, offset: int) -> bool:
    stream.seek(max(0, offset))
    while block := stream.read(1 << 16):
        if b"\n" in block:
            return True
    return False


def _close_split_run(run_id: int) -> None:
    """Finish a split run once its last chunk is finished: its counts are theirs, summed.

    Its row is locked first, so of chunks finishing at once the last to take the lock sees
    every other finished (each finishes in the transaction that calls this).
    """
    with transaction.atomic():
        run = IngestRun.objects.select_for_update().get(pk=run_id)
        if run.is_finished or run.chunk_count is None or run.chunks.unfinished().exists():
            return
        summed = [*_COUNTS, "rejections_stored"]
        totals = run.chunks.aggregate(**{name: Coalesce(Sum(name), 0) for name in summed})
        failed = run.chunks.filter(status=IngestRun.Status.FAILED).order_by("pk")
        error = _chunks_failed(failed, run.chunk_count)
        if error:
            status = IngestRun.Status.FAILED
        else:
            status = IngestRun.Status.PARTIAL if totals["rejected"] else IngestRun.Status.SUCCEEDED
        IngestRun.objects.filter(pk=run_id).update(
            status=status, error=error, finished_at=timezone.now(), **totals
        )
        run.refresh_from_db()
        _after_changes(run)  # what the failed chunks wrote before failing counts too


def _chunks_failed(failed, count: int) -> str:
    first = failed.first()
    if first is None:
        return ""
    return (
        f"{failed.count()} of {count} chunks failed (retry the run to run them again); "
        f"the first, run {first.pk}: {first.error}"
    )


# --- life cycle ----------------------------------------------------------------------------


def _start(run: IngestRun, executor: str) -> bool:
    """Begin an attempt (under the lease); False when there is nothing to do.

    The run's row is locked first: a batch the previous holder was committing when it died is
    either in the checkpoint read here or rolled back. A run with no batch written starts from
    zero; one with batches written keeps their counts and rejections and resumes after them.
    """
    with transaction.atomic():
        IngestRun.objects.select_for_update().get(pk=run.pk)
        run.refresh_from_db()
        if run.is_finished:  # a late duplicate of a finished run's task
            return False
        if run.attempts >= MAX_ATTEMPTS:
            _finish(run, IngestRun.Status.FAILED, error=_given_up(run))
            return False
        fresh = {} if run.checkpoint or run.batches_ahead else _zero_progress(run)
        IngestRun.objects.filter(pk=run.pk).update(
            status=IngestRun.Status.RUNNING,
            started_at=run.started_at or timezone.now(),
            finished_at=None,
            error="",
            attempts=run.attempts + 1,
            batch_size=run.batch_size or settings.INGEST_BATCH_SIZE,
            worker=executor,
            **fresh,
        )
    run.refresh_from_db()
    return True


def _zero_progress(run: IngestRun) -> dict:
    run.rejections.all().delete()
    return {**{name: 0 for name in _COUNTS}, "rejections_stored": 0, "batches_ahead": []}


def _given_up(run: IngestRun) -> str:
    return (
        f"given up after {run.attempts} attempts: its worker stopped each time "
        f"(last error: {run.error or 'none'})"
    )


def _mark(run: IngestRun, **fields) -> None:
    """Update the run's row, as long as this execution still owns the run."""
    updated = IngestRun.objects.filter(pk=run.pk, attempts=run.attempts).update(**fields)
    if not updated:
        raise LeaseLost(run.pk)
    for name, value in fields.items():
        setattr(run, name, value)


def _finish(run: IngestRun, status: str, error: str = "") -> IngestRun:
    if run.parent_id is None:
        _mark(run, status=status, error=error, finished_at=timezone.now())
        return run
    # One transaction with the chunk's end: the last chunk to finish always closes its run.
    with transaction.atomic():
        _mark(run, status=status, error=error, finished_at=timezone.now())
        _close_split_run(run.parent_id)
    return run
