"""Celery tasks of the catalogue: tagging papers with topics. Thin: ids and strings in.

Ingest calls ``tag_recent_papers`` after a run that created or changed papers; the topic admin
calls ``tag_topic`` when a topic's query changes and ``tag_papers`` after staff edit a paper.
Tagging is idempotent, so late acknowledgement (a redelivered task) is harmless.
"""

from __future__ import annotations

import datetime as dt

from celery import shared_task

from catalogue import tagging
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
