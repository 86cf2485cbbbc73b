"""One "worker host" for tests/ingest/test_shared_throttle.py: a process of its own that fetches
through its own Fetcher and throttle, as a Celery worker on another machine would.

    python -m tests.ingest.throttle_client --redis URL --prefix P --interval 0.3 URL [URL ...]

It prints "ready" once built, waits for a line on stdin (so that several processes start
fetching at the same moment), then GETs each URL in turn and prints "done". With
``--per-process`` it spaces only its own requests (today's ``HostThrottle``): the control that
shows the processes really overlap.
"""

from __future__ import annotations

import argparse
import sys

from ingest.http import Fetcher, HostThrottle, RedisHostThrottle


def main(argv: list[str]) -> None:
    options = _arguments().parse_args(argv)
    throttle = _throttle(options)
    with Fetcher(throttle=throttle, allow_private_hosts=True, max_attempts=1) as fetcher:
        print("ready", flush=True)
        sys.stdin.readline()
        for url in options.urls:
            fetcher.get(url, conditional=False)
    throttle.close()
    print("done", flush=True)


def _throttle(options: argparse.Namespace) -> HostThrottle:
    # min_interval 0: only the server's host, listed here, is throttled
    intervals = {"127.0.0.1": options.interval}
    if options.per_process:
        return HostThrottle(0.0, intervals)
    return RedisHostThrottle(
        options.redis, 0.0, intervals, prefix=options.prefix, lock_ttl=options.lock_ttl
    )


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--lock-ttl", type=float, default=10.0)
    parser.add_argument("--per-process", action="store_true")
    parser.add_argument("urls", nargs="+")
    return parser


if __name__ == "__main__":
    main(sys.argv[1:])
