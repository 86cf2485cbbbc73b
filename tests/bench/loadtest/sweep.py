"""The crawler sweep's client: a fixed list of URLs, in turn or by several threads at once."""

from __future__ import annotations

import threading
import time

import httpx

from tests.bench.loadtest.report import Request

TIMEOUT = 120  # seconds: a slower answer is recorded as no answer


def crawl(base_url: str, urls: list[tuple[str, str]], concurrency: int) -> list[Request]:
    """GET every URL once; ``concurrency`` threads take the next URL of the list in turn."""
    results: list[Request] = []
    pending = iter(urls)
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=TIMEOUT) as client:
            while True:
                with lock:
                    item = next(pending, None)
                if item is None:
                    return
                request = _get(client, *item)
                with lock:
                    results.append(request)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _get(client: httpx.Client, kind: str, url: str) -> Request:
    started = time.perf_counter()
    try:
        response = client.get(url)
        status = response.status_code
    except httpx.HTTPError:
        status = 0
    return Request(kind, (time.perf_counter() - started) * 1000, status)
