"""Sending tasks when the broker may be down: a clear error within seconds, not a 500 or a hang.

Celery's publish gives up after its retry policy and the broker's socket timeouts (settings:
CELERY_BROKER_CONNECTION_TIMEOUT, CELERY_TASK_PUBLISH_RETRY_POLICY and the transport's socket
timeouts), raising kombu's OperationalError; ``send`` turns it into ``BrokerUnavailable`` with
a message a reader of the admin or a terminal can act on.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError


class BrokerUnavailable(Exception):
    """The task could not be queued: Redis is down, hangs or refuses us."""


def send(task, *args):
    """``task.delay(*args)``, or ``BrokerUnavailable``. ``task`` may be a task's registered
    name, for a task of an app this module's caller must not import."""
    try:
        if isinstance(task, str):
            return current_app.send_task(task, args=list(args))
        return task.delay(*args)
    except OperationalError as error:
        raise BrokerUnavailable(
            f"the task queue (Redis at {_where(current_app.conf.broker_url)}) is unreachable, so "
            f"nothing was queued: {str(error).rstrip('.')}. Start Redis (or check REDIS_URL) "
            "and try again."
        ) from error


def send_on_commit(task, *args, queued, failed) -> None:
    """Send once the current transaction commits (the task must see the rows it was given),
    then call ``queued()``, or ``failed(error)`` if the broker is unreachable: the request that
    asked still answers, with the error, instead of a 500."""

    def send_now():
        try:
            send(task, *args)
        except BrokerUnavailable as error:
            failed(error)
        else:
            queued()

    transaction.on_commit(send_now)


def _where(url: str) -> str:
    """The broker's address without its password."""
    parts = urlsplit(url)
    return f"{parts.hostname or parts.path}{f':{parts.port}' if parts.port else ''}"
