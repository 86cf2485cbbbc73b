"""Celery tasks of the catalogue: tagging papers with topics, embedding them. Thin: ids and
strings in.

Ingest calls ``tag_recent_papers`` and ``queue_embedding`` after a run that created or changed
papers; the topic admin calls ``tag_topic`` when a topic's query changes and ``tag_papers``
after staff edit a paper. Tagging and embedding are idempotent, so late acknowledgement (a
redelivered task) is harmless.
"""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from catalogue import tagging
from catalogue.embedding import embed_after, pending_papers
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
    """Evaluate every topic for the papers created or changed since ``since`` (ISO 8601)."""
    changed = tagging.papers_changed_since(dt.datetime.fromisoformat(since))
    return vars(tagging.retag_papers(changed))


# --- embeddings ---------------------------------------------------------------------------------

# Lowest priority (kombu's Redis pops 0 first): between two chunks, any other task waiting,
# an ingest above all, gets the worker.
EMBED_PRIORITY = 9
# A chunk starts no new batch after this many seconds, however slow the machine is, so the
# next ingest waits for at most that and one batch of EMBED_BATCH_SIZE (~4 s on a busy machine).
EMBED_CHUNK_SECONDS = 10
EMBED_BATCH_SIZE = 16
# While a chain of embed_papers is queued or running this flag is set, so ingests that finish
# meanwhile do not start more chains; it expires if the chain dies without clearing it.
_CHAIN_FLAG_SECONDS = 15 * 60


def _chain_flag() -> str:
    # Per queue: test sessions sharing one Redis each have their own worker and chain.
    return f"embed-papers-chain:{embed_papers.app.conf.task_default_queue}"


def queue_embedding() -> bool:
    """Start a chain of ``embed_papers`` unless one is queued or running; True if started.
    Call it once new or changed papers are committed."""
    if not cache.add(_chain_flag(), "1", timeout=_CHAIN_FLAG_SECONDS):
        return False
    embed_papers.apply_async(priority=EMBED_PRIORITY)
    return True


@shared_task(acks_late=True)
def embed_papers(after: int = 0) -> int:
    """Embed one chunk of the papers above id ``after`` missing a current embedding, then
    send itself on from the last one. Idempotent (what is pending is a query), so redelivery
    is harmless. The chain ends with one look over every paper, the only full read of the
    catalogue's text in a chain: a paper changed behind the chain's position, or left by a
    chain that failed, starts the next chain."""
    try:
        done, last = embed_after(
            after,
            batch_size=EMBED_BATCH_SIZE,
            limit=settings.EMBEDDING_TASK_CHUNK,
            seconds=EMBED_CHUNK_SECONDS,
        )
    except BaseException:
        cache.delete(_chain_flag())  # the next ingest may try again
        raise
    if done:
        cache.touch(_chain_flag(), _CHAIN_FLAG_SECONDS)
        embed_papers.apply_async(args=[last], priority=EMBED_PRIORITY)
        return done
    # Cleared before looking again: papers committed after this look find no flag and start
    # their own chain; papers committed before it are seen here.
    cache.delete(_chain_flag())
    if pending_papers().exists():
        queue_embedding()
    return done
