"""The embedding chain: one low-priority chain at a time, chunk after chunk until done."""

from __future__ import annotations

import base64
import json

import pytest
import redis
from django.conf import settings
from django.core.cache import cache

from catalogue import tasks
from catalogue.embedding import pending_papers
from catalogue.models import Paper, PaperEmbedding
from tests.conftest import private_queue

# kombu's Redis transport keeps priority n of queue q in the list "q\x06\x16n" (0: "q").
SEP = "\x06\x16"


@pytest.fixture
def queue():
    """A queue no worker reads: the test looks at the messages left in Redis."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    with private_queue() as name:
        try:
            yield name, client
        finally:
            take((name, client))
            cache.delete(tasks._chain_flag())


def queued(queue) -> dict[int, list]:
    """The positional arguments of the tasks waiting in each priority list of the queue."""
    name, client = queue
    lists = {0: name, **{n: f"{name}{SEP}{n}" for n in range(1, 10)}}
    waiting = {}
    for priority, key in lists.items():
        messages = [json.loads(raw) for raw in client.lrange(key, 0, -1)]
        if messages:
            waiting[priority] = [json.loads(base64.b64decode(m["body"]))[0] for m in messages]
    return waiting


def take(queue) -> None:
    """Empty the queue: this test runs the chain's tasks itself, instead of a worker."""
    name, client = queue
    client.delete(name, *(f"{name}{SEP}{n}" for n in range(1, 10)))


def test_one_chain_is_queued_at_the_lowest_priority(queue):
    assert tasks.queue_embedding() is True
    assert tasks.queue_embedding() is False  # an ingest finishing meanwhile adds nothing
    assert queued(queue) == {9: [[]]}


@pytest.mark.django_db
def test_each_chunk_sends_the_next_from_where_it_stopped(queue, settings):
    settings.EMBEDDING_TASK_CHUNK = 2
    made = [
        Paper.objects.create(arxiv_id=f"2503.{n:05d}", title=f"Paper {n}", abstract="Short.")
        for n in range(3)
    ]
    assert tasks.queue_embedding()
    take(queue)

    assert tasks.embed_papers() == 2
    assert queued(queue) == {9: [[made[1].pk]]}
    take(queue)
    assert tasks.embed_papers(made[1].pk) == 1
    assert queued(queue) == {9: [[made[2].pk]]}
    take(queue)
    assert cache.get(tasks._chain_flag())  # still one chain

    assert tasks.embed_papers(made[2].pk) == 0  # the end: nothing left anywhere
    assert not pending_papers().exists() and PaperEmbedding.objects.count() == 3
    assert queued(queue) == {}
    assert cache.get(tasks._chain_flag()) is None  # the next ingest starts a new chain


@pytest.mark.django_db
def test_a_paper_changed_behind_the_chain_starts_a_new_chain_from_the_start(queue):
    first, second = (
        Paper.objects.create(arxiv_id=f"2503.{n:05d}", title=f"Paper {n}", abstract="Short.")
        for n in range(2)
    )
    assert tasks.queue_embedding()
    take(queue)
    assert tasks.embed_papers() == 2
    take(queue)
    Paper.objects.filter(pk=first.pk).update(abstract="Changed while the chain went on.")

    assert tasks.embed_papers(second.pk) == 0
    assert queued(queue) == {9: [[]]}
    assert cache.get(tasks._chain_flag())
