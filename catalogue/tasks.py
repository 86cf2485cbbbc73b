"""Celery tasks of the catalogue: tagging papers with topics, pairing their words for phrase
searches, embedding them. Thin: ids and strings in.

Ingest calls ``tag_recent_papers``, ``pair_phrases``, ``build_word_months`` and
``queue_embedding`` after a run that created or changed papers; the topic admin calls
``tag_topic`` when a topic's query changes and ``tag_papers`` after staff edit a paper.
Tagging, pairing, building and embedding are idempotent, so late acknowledgement (a
redelivered task) is harmless.
"""

from __future__ import annotations

import datetime as dt
import functools
import socket
import time

from celery import shared_task
from django.conf import settings

from catalogue import phrases, tagging, wordmonths
from catalogue.backfill import Backfill, slice_name
from catalogue.embedding import embed_after, pending_papers, pending_slices
from catalogue.models import Paper, Topic


@shared_task(acks_late=True)
def tag_topic(topic_id: int) -> dict | None:
    """Re-tag the whole catalogue for one topic; returns the added/removed counts."""
    topic = Topic.objects.filter(pk=topic_id).first()
    if topic is None:
        return None  # deleted before the task ran
    return vars(tagging.retag(topic))


@shared_task(acks_late=True)
def tag_papers(paper_ids: list[int]) -> dict:
    """Evaluate every topic for these papers (e.g. one whose title staff just edited)."""
    return vars(tagging.retag_papers(Paper.objects.filter(pk__in=paper_ids)))


@shared_task(acks_late=True)
def tag_recent_papers(since: str) -> dict:
    """Evaluate every topic for the papers created or changed since ``since`` (ISO 8601), and
    mend their links' dates (``tagging.redate_links``)."""
    changed = tagging.papers_changed_since(dt.datetime.fromisoformat(since))
    counts = tagging.retag_papers(changed)
    return {**vars(counts), "redated": tagging.redate_links(changed)}


# --- word pairs for phrases ---------------------------------------------------------------------

# Below the ingest's chunks and tagging, above the embedding backfill: pairing is cheap (~0.3 ms
# a paper) and makes the new papers' phrases quick to find.
PAIR_PRIORITY = 8
# A task pairs for this long, then queues its successor, so other tasks get the worker.
PAIR_CHUNK_SECONDS = 10


@shared_task(acks_late=True)
def pair_phrases() -> int:
    """Pair the pending papers' adjacent words (``catalogue.phrases``), in chunks of
    PAIR_CHUNK_SECONDS; once none are left, refresh the pairs' statistics. Several at once
    share the work (each statement takes papers the others have not locked); returns how
    many papers this chunk paired."""
    started, done = time.monotonic(), 0
    while time.monotonic() - started < PAIR_CHUNK_SECONDS:
        paired = phrases.pair_pending()
        done += paired
        if not paired:
            if done:
                phrases.analyse()
            return done
    pair_phrases.apply_async(priority=PAIR_PRIORITY)
    return done


# --- a common word's matches by month ---------------------------------------------------------


@shared_task(acks_late=True)
def build_word_months() -> int:
    """Build again the months whose papers changed (``catalogue.wordmonths``), for up to
    PAIR_CHUNK_SECONDS, then queue its successor; first counting the common words where the
    catalogue is new to it or has grown. Returns how many months this chunk built."""
    wordmonths.count_if_needed()
    started, built = time.monotonic(), 0
    while time.monotonic() - started < PAIR_CHUNK_SECONDS:
        if wordmonths.build_changed_month() is None:
            return built
        built += 1
    build_word_months.apply_async(priority=PAIR_PRIORITY)
    return built


# --- embeddings ---------------------------------------------------------------------------------

# Lowest priority (kombu's Redis pops 0 first): between two chunks, any other task waiting,
# an ingest above all, gets the worker.
EMBED_PRIORITY = 9
# A chunk starts no new batch after this many seconds, however slow the machine is, so the
# next ingest waits for at most that and one batch of EMBED_BATCH_SIZE (~4 s on a busy machine).
EMBED_CHUNK_SECONDS = 10
EMBED_BATCH_SIZE = 16


def _queue() -> str:
    return embed_papers.app.conf.task_default_queue


def queue_embedding() -> bool:
    """Start a backfill of the pending papers' embeddings unless one is running; True if
    started. Call it once new or changed papers are committed. Cheap (one Redis command):
    splitting the pending papers into chains is a task of its own, on a worker."""
    backfill = Backfill.start(_queue())
    if backfill is None:
        return False
    plan_embedding.apply_async(args=[backfill.id], priority=EMBED_PRIORITY)
    return True


def send_chains(backfill: Backfill, chains: int) -> tuple[list[tuple[int, int | None]], int]:
    """Split the pending papers into ``chains`` id ranges and send a chain of ``embed_papers``
    over each; returns the ranges and how many papers are pending. Sends nothing if the
    backfill is not the current one or was planned already (a redelivered task)."""
    if not backfill.is_current():
        return [], 0
    slices, pending = pending_slices(chains)
    if not backfill.plan(slices, pending):
        return [], 0
    if not slices:
        backfill.end()
    for after, upto in slices:
        embed_papers.apply_async(args=[after, upto, backfill.id], priority=EMBED_PRIORITY)
    return slices, pending


@shared_task(acks_late=True)
def plan_embedding(backfill_id: str) -> int:
    """Send the chains of a backfill that ``queue_embedding`` started; returns how many."""
    slices, _ = send_chains(Backfill(backfill_id, _queue()), settings.EMBEDDING_CHAINS)
    return len(slices)


@shared_task(acks_late=True, bind=True)
def embed_papers(self, after: int = 0, upto: int | None = None, backfill: str | None = None):
    """Embed one chunk of the pending papers with ids in (``after``, ``upto``], then send
    itself on from the last one: a chain over one slice of a backfill (``catalogue.backfill``).
    A task of an older backfill, or a copy of one already followed, does nothing; otherwise
    it is idempotent (what is pending is a query), so redelivery is harmless. When the last
    chain of a backfill ends, one look over every paper, the only full read of the
    catalogue's text in a backfill: a paper changed behind a chain starts the next one."""
    if backfill is None:  # a message sent before backfills had slices
        queue_embedding()
        return 0
    state, name = Backfill(backfill, _queue()), slice_name(upto)
    if not state.may_go_on(name, after):
        return 0
    worker = self.request.hostname or socket.gethostname()
    try:
        done, last = embed_after(
            after,
            batch_size=EMBED_BATCH_SIZE,
            limit=settings.EMBEDDING_TASK_CHUNK,
            seconds=EMBED_CHUNK_SECONDS,
            upto=upto,
            progress=functools.partial(state.record, worker),
        )
    except Exception:
        # Ended, not retried: the next ingest's backfill tries again (a failure that repeats,
        # e.g. missing model files, must not loop).
        if state.finish(name, failed=True):
            state.end()
        raise
    if done:
        # Advanced before the next task is sent, which may start on another host at once.
        state.advance(name, last)
        embed_papers.apply_async(args=[last, upto, backfill], priority=EMBED_PRIORITY)
        return done
    if state.finish(name):
        _end_backfill(state)
    return done


def _end_backfill(state: Backfill) -> None:
    # Ended before looking again: papers committed after this look find no backfill and start
    # their own; papers committed before it are seen here.
    state.end()
    if not state.meta().get("failed") and pending_papers().exists():
        queue_embedding()
