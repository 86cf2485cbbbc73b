"""Tasks sent by a test that does not ask for the session's Celery worker reach no worker:
a transactional test's committed ingest enqueues follow-ups, and the worker running them
while the test's database flush runs deadlocked the flush."""

from __future__ import annotations

import time

import pytest
import redis
from django.conf import settings
from django.db import transaction

from catalogue.celery import app
from catalogue.tasks import queue_embedding
from tests.conftest import _forget_queue, _publishing_counted, private_queue


def queued(client: redis.Redis, queue: str) -> int:
    return sum(client.llen(key) for key in client.scan_iter(f"{queue}*"))


@pytest.mark.django_db(transaction=True)
def test_a_test_without_the_worker_sends_its_tasks_where_no_worker_reads():
    queue = app.conf.task_default_queue
    assert queue.startswith("test-")
    assert queue != settings.CELERY_TASK_DEFAULT_QUEUE
    listened = app.control.inspect(timeout=1).active_queues() or {}
    assert queue not in {q["name"] for queues in listened.values() for q in queues}

    client = redis.Redis.from_url(settings.REDIS_URL)
    with transaction.atomic():
        transaction.on_commit(queue_embedding)
    time.sleep(0.5)  # a worker reading the queue would have taken the task by now
    assert queued(client, queue) == 1


def test_tasks_published_to_the_unread_queue_are_counted():
    queue = app.conf.task_default_queue
    with _publishing_counted(queue) as published, _publishing_counted("another") as elsewhere:
        assert queue_embedding()
    assert len(published) == 1 and not elsewhere
    _forget_queue(queue)


def test_the_unread_queue_is_emptied_after_the_test():
    client = redis.Redis.from_url(settings.REDIS_URL)
    queue = app.conf.task_default_queue
    assert queue_embedding()
    assert queued(client, queue) == 1
    _forget_queue(queue)
    assert queued(client, queue) == 0
    assert queue_embedding(), "the backfill begun on the queue was forgotten with it"
    _forget_queue(queue)


@pytest.fixture(scope="module")
def queue_of_the_modules_own_workers():
    with private_queue() as queue:
        yield queue


def test_a_test_with_workers_of_its_own_keeps_their_queue(queue_of_the_modules_own_workers):
    assert app.conf.task_default_queue == queue_of_the_modules_own_workers
