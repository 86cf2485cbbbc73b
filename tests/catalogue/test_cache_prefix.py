"""The test session's cache lives under a prefix of its own: what a dev server on the same
Redis database, or an earlier run, cached is not seen, and theirs is left alone."""

from __future__ import annotations

import redis
from django.conf import settings
from django.core.cache import cache


def test_the_sessions_cache_keys_are_its_own():
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    assert prefix.startswith("catalogue-test-")
    client = redis.Redis.from_url(settings.REDIS_URL)
    # As a dev server (prefix "catalogue", version 1) would have stored it:
    client.set("catalogue:1:query-vector:left-by-another", b"not this session's", ex=60)
    try:
        assert cache.get("query-vector:left-by-another") is None
        cache.set("query-vector:left-by-another", "this session's", 60)
        assert client.get("catalogue:1:query-vector:left-by-another") == b"not this session's"
        assert client.exists(f"{prefix}:1:query-vector:left-by-another")
    finally:
        client.delete("catalogue:1:query-vector:left-by-another")
        cache.delete("query-vector:left-by-another")
