"""A Redis cache that fails open: without Redis, pages are computed instead of failing.

The catalogue's caches (``catalogue.pagecache``, ``catalogue.summary``) only save work, so a
Redis that is down or hangs must cost a miss, not a 500. Every command has short socket
timeouts (``CACHES`` OPTIONS in settings), a failed command is logged and answered as a miss
(``get`` gives the default, ``set`` stores nothing), and after a failure the process leaves
Redis alone for ``RETRY_AFTER`` seconds: while Redis is down a page pays no timeout at all,
only the first request after each pause probes it again.
"""

from __future__ import annotations

import functools
import logging
import threading
import time

from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Seconds without Redis after a failure: short, so a restarted Redis is back within seconds.
RETRY_AFTER = 5.0


class _Breaker:
    """Open (skip Redis) for ``RETRY_AFTER`` seconds after a failure; per process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._closed_at = 0.0  # monotonic time from which Redis is tried again

    def allows(self) -> bool:
        return time.monotonic() >= self._closed_at

    def trip(self, error: Exception) -> None:
        with self._lock:
            already_open = not self.allows()
            self._closed_at = time.monotonic() + RETRY_AFTER
        if not already_open:
            logger.warning("Redis cache unavailable (%s); serving without it", error)


breaker = _Breaker()


def _fail_open(answer):
    """A cache method that returns ``answer(*args, **kwargs)`` instead of raising when Redis
    fails (and without trying it while the breaker is open)."""

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            if not breaker.allows():
                return answer(*args, **kwargs)
            try:
                return method(self, *args, **kwargs)
            except RedisError as error:
                breaker.trip(error)
                return answer(*args, **kwargs)

        return wrapper

    return decorate


def _given_default(key, default=None, version=None):
    return default


def _nothing(*args, **kwargs):
    return None


def _false(*args, **kwargs):
    return False


def _no_hits(*args, **kwargs):
    return {}


def _all_keys_failed(data, *args, **kwargs):
    return list(data)


class FailOpenRedisCache(RedisCache):
    """Django's RedisCache whose errors are misses (see the module's docstring)."""

    get = _fail_open(_given_default)(RedisCache.get)
    get_many = _fail_open(_no_hits)(RedisCache.get_many)
    has_key = _fail_open(_false)(RedisCache.has_key)
    # Writes that fail store nothing: the value is computed again next time.
    set = _fail_open(_nothing)(RedisCache.set)
    set_many = _fail_open(_all_keys_failed)(RedisCache.set_many)
    add = _fail_open(_false)(RedisCache.add)
    touch = _fail_open(_false)(RedisCache.touch)
    delete = _fail_open(_false)(RedisCache.delete)
    delete_many = _fail_open(_nothing)(RedisCache.delete_many)
    clear = _fail_open(_nothing)(RedisCache.clear)
