"""One side of ``compare_pages``: GETs each URL it is sent, as a new query with every cache off,
and answers with the request's wall and SQL time. One JSON object a line each way: in
``{"url": ...}``, out ``{"url", "status", "ms", "sql_ms", "queries"}``.

It runs as a script, by path, with the checkout under test first on ``PYTHONPATH``: what it
imports (Django's settings, ``catalogue``) is that checkout's, so two of them, one per
revision, time the same URLs in turn. It imports nothing of ``tests`` for the same reason (an
older revision may not have what this one has).
"""

from __future__ import annotations

import json
import os
import sys
import time

CACHES_OFF = ("PAGE_CACHE_SECONDS", "SUMMARY_CACHE_SECONDS", "QUERY_VECTOR_CACHE_SECONDS")


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    os.environ.update(dict.fromkeys(CACHES_OFF, "0"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalogue.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    client = Client(raise_request_exception=False)
    extra = {"HTTP_HOST": "127.0.0.1", "secure": settings.SECURE_SSL_REDIRECT}
    sql = {"seconds": 0.0, "queries": 0}

    def timed(execute, statement, params, many, context):
        started = time.perf_counter()
        try:
            return execute(statement, params, many, context)
        finally:
            sql["seconds"] += time.perf_counter() - started
            sql["queries"] += 1

    for line in sys.stdin:
        url = json.loads(line)["url"]
        _forget_queries()
        sql.update(seconds=0.0, queries=0)
        with connection.execute_wrapper(timed):
            started = time.perf_counter()
            status = client.get(url, **extra).status_code
            wall = time.perf_counter() - started
        answer = {
            "url": url,
            "status": status,
            "ms": wall * 1000,
            "sql_ms": sql["seconds"] * 1000,
            "queries": sql["queries"],
        }
        print(json.dumps(answer), flush=True)


def _forget_queries() -> None:
    """This process's memos of parsed queries and query embeddings (any function of
    ``catalogue.search`` or ``catalogue.hybrid`` with a ``cache_clear``), so each URL is
    a new query, as ``benchmark.forget_queries`` does in-process."""
    from catalogue import hybrid, search

    for module in (search, hybrid):
        for value in list(vars(module).values()):
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


if __name__ == "__main__":
    main()
