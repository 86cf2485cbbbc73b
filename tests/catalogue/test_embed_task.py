"""The embedding chain: one low-priority chain at a time, chunk after chunk until done."""

from __future__ import annotations

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
            client.delete(name, *(f"{name}{SEP}{n}" for n in range(1, 10)))
            cache.delete(tasks._chain_flag())


def queued(queue) -> dict[int, int]:
    """Messages waiting in each priority list of the queue, by priority."""
    name, client = queue
    lengths = {0: client.llen(name), **{n: client.llen(f"{name}{SEP}{n}") for n in range(1, 10)}}
    return {priority: length for priority, length in lengths.items() if length}


def test_one_chain_is_queued_at_the_lowest_priority(queue):
    assert tasks.queue_embedding() is True
    assert tasks.queue_embedding() is False  # an ingest finishing meanwhile adds nothing
    assert queued(queue) == {9: 1}


@pytest.mark.django_db
def test_each_chunk_sends_the_next_until_none_remain(queue, settings):
    settings.EMBEDDING_TASK_CHUNK = 2
    for n in range(3):
        Paper.objects.create(arxiv_id=f"2503.{n:05d}", title=f"Paper {n}", abstract="Short.")
    assert tasks.queue_embedding()
    name, client = queue
    client.delete(f"{name}{SEP}9")  # run the chain here instead of on a worker

    assert tasks.embed_papers() == 2
    assert queued(queue) == {9: 1}  # the next chunk
    assert cache.get(tasks._chain_flag())  # still one chain
    client.delete(f"{name}{SEP}9")

    assert tasks.embed_papers() == 1
    assert not pending_papers().exists() and PaperEmbedding.objects.count() == 3
    assert queued(queue) == {}
    assert cache.get(tasks._chain_flag()) is None  # the next ingest starts a new chain
    assert tasks.queue_embedding()
