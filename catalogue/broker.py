"""Sending tasks when the broker may be down: a clear error within seconds, not a 500 or a hang.

Celery's publish gives up after its retry policy and the broker's socket timeouts (settings:
CELERY_BROKER_CONNECTION_TIMEOUT, CELERY_TASK_PUBLISH_RETRY_POLICY and the transport's socket
timeouts), raising kombu's OperationalError; ``send`` turns it into ``BrokerUnavailable`` with
a message a reader of the admin or a terminal can act on.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from kombu.exceptions import OperationalError


class BrokerUnavailable(Exception):
    """The task could not be queued: Redis is down, hangs or refuses us."""


def send(task, *args):
    """``task.delay(*args)``, or ``BrokerUnavailable``."""
    try:
        return task.delay(*args)
    except OperationalError as error:
        raise BrokerUnavailable(
            f"the task queue (Redis at {_where(task.app.conf.broker_url)}) is unreachable, so "
            f"nothing was queued: {str(error).rstrip('.')}. Start Redis (or check REDIS_URL) "
            "and try again."
        ) from error


def _where(url: str) -> str:
    """The broker's address without its password."""
    parts = urlsplit(url)
    return f"{parts.hostname or parts.path}{f':{parts.port}' if parts.port else ''}"
