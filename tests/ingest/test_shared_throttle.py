"""The cluster-wide throttle (ingest.http.RedisHostThrottle) against the real Redis.

"Worker hosts" are separate processes (tests/ingest/throttle_client.py), each with its own
Fetcher and throttle, fetching from one local HTTP server that records when each request
arrives: spacing is measured where it matters, at the server.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings

from ingest import runner
from ingest.http import Fetcher, HostThrottle, RedisHostThrottle
from tests.ingest.test_http import FakeClock, Reply, ScriptedServer, gaps
from tests.ingest.test_http import server as server  # noqa: F401 (a fixture)

INTERVAL = 0.3


class Client:
    """A throttle_client process: built and ready, fetching once told to go."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    def wait_until_ready(self) -> None:
        self._expect("ready")

    def go(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def wait_until_done(self) -> None:
        self._expect("done")

    def _expect(self, word: str) -> None:
        line = self.process.stdout.readline().strip()
        if line != word:
            self.process.kill()
            raise AssertionError(f"expected {word!r}, got {line!r}:\n{self.process.stderr.read()}")


@pytest.fixture
def prefix() -> str:
    return f"throttle-test:{uuid.uuid4().hex}:"


@pytest.fixture
def start_clients(prefix: str) -> Iterator[Callable[..., list[Client]]]:
    started: list[Client] = []

    def start(count: int, urls: list[str], *options: str) -> list[Client]:
        command = [
            sys.executable, "-m", "tests.ingest.throttle_client",
            "--redis", settings.REDIS_URL, "--prefix", prefix, "--interval", str(INTERVAL),
            *options, *urls,
        ]  # fmt: skip
        clients = [Client(_spawn(command)) for _ in range(count)]
        started.extend(clients)
        for client in clients:  # all built before any fetches: they really compete
            client.wait_until_ready()
        return clients

    yield start
    for client in started:
        client.process.kill()
        client.process.wait()
        for stream in (client.process.stdin, client.process.stdout, client.process.stderr):
            stream.close()


def _spawn(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=settings.BASE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_together(clients: list[Client]) -> None:
    for client in clients:
        client.go()
    for client in clients:
        client.wait_until_done()


def arrivals(server: ScriptedServer, path: str):
    return sorted(server.hits(path), key=lambda seen: seen.at)


# --- across processes --------------------------------------------------------------------------


def test_processes_sharing_the_throttle_take_turns_an_interval_apart(server, start_clients):
    url = server.script("/page", Reply(200, b"x"))
    clients = start_clients(3, [f"{url}?n=1", f"{url}?n=2"])

    run_together(clients)

    hits = arrivals(server, "/page")
    assert len(hits) == 6
    assert min(gaps(hits)) >= INTERVAL, gaps(hits)


def test_processes_spacing_only_their_own_requests_overlap(server, start_clients):
    """The control: the same three processes, each with today's per-process throttle, hit
    the server at once, so the test above would see it."""
    url = server.script("/page", Reply(200, b"x"))
    clients = start_clients(3, [f"{url}?n=1", f"{url}?n=2"], "--per-process")

    run_together(clients)

    assert min(gaps(arrivals(server, "/page"))) < INTERVAL / 2


def test_a_live_holder_keeps_its_turn_past_the_ttl_and_a_killed_one_frees_it_within(
    server, start_clients
):
    ttl = 1.0
    slow = server.script("/slow", Reply(200, b"late", stall=10.0))
    after = server.script("/after", Reply(200, b"x"))
    [holder] = start_clients(1, [slow], "--lock-ttl", str(ttl))
    [waiter] = start_clients(1, [after], "--lock-ttl", str(ttl))
    holder.go()
    wait_for(lambda: server.hits("/slow"))
    waiter.go()

    time.sleep(1.5 * ttl)  # the holder's renewals keep its turn while its request runs
    assert not server.hits("/after")
    killed_at = time.monotonic()
    holder.process.kill()
    waiter.wait_until_done()

    [arrival] = server.hits("/after")
    assert killed_at < arrival.at < killed_at + ttl + 0.5


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# --- in one process ----------------------------------------------------------------------------


def test_hosts_under_one_domain_wait_for_each_other_and_other_hosts_do_not(prefix):
    """Two throttles stand for two processes (each has its own local turns): only Redis
    makes the second wait."""
    intervals = {"arxiv.org": INTERVAL}
    first = RedisHostThrottle(settings.REDIS_URL, 0.0, intervals, prefix=prefix)
    second = RedisHostThrottle(settings.REDIS_URL, 0.0, intervals, prefix=prefix)
    entered_at: list[float] = []

    def arxiv_turn() -> None:
        with second.turn("arxiv.org"):
            entered_at.append(time.monotonic())

    with first.turn("export.arxiv.org"):
        started = time.monotonic()
        with second.turn("huggingface.co"):
            assert time.monotonic() - started < INTERVAL
        waiting = threading.Thread(target=arxiv_turn)
        waiting.start()
        time.sleep(INTERVAL)
        assert not entered_at
        # Read inside the turn: its end is recorded as it is released, after this. Read after
        # the block, a busy machine's delay there made the next turn look 6 ms early.
        ended_at = time.monotonic()
    waiting.join()

    assert entered_at[0] >= ended_at + INTERVAL
    first.close()
    second.close()


def unreachable_redis() -> str:
    return "redis://127.0.0.1:9/0"  # the discard port: nothing listens, connecting is refused


def test_without_redis_fetches_go_on_spaced_per_process_with_one_warning(server, caplog):
    url = server.script("/page", Reply(200, b"x"))
    throttle = RedisHostThrottle(unreachable_redis(), 0.0, {"127.0.0.1": INTERVAL})

    with (
        caplog.at_level(logging.WARNING, logger="ingest.http"),
        Fetcher(throttle=throttle, allow_private_hosts=True) as fetcher,
    ):
        contents = [fetcher.get(url, {"n": n}).content for n in range(3)]

    assert contents == [b"x"] * 3
    assert min(gaps(arrivals(server, "/page"))) >= INTERVAL
    warnings = [r.getMessage() for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1, caplog.text


def test_without_redis_the_throttle_asks_it_again_only_after_a_pause():
    clock = FakeClock()
    with ClosingListener() as redis:
        throttle = RedisHostThrottle(
            redis.url, 0.0, {}, retry_after=5.0, sleep=clock.sleep, clock=clock
        )

        def take_turn() -> None:
            with throttle.turn("example.org"):
                pass

        take_turn()
        after_the_failure = redis.connections
        take_turn()
        clock.now += 4.9
        take_turn()
        assert redis.connections == after_the_failure > 0  # paused: no connection tried
        clock.now += 0.2
        take_turn()
        assert redis.connections > after_the_failure


class ClosingListener:
    """A "Redis" that accepts connections and closes them at once, counting them."""

    def __enter__(self) -> ClosingListener:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._socket.getsockname()[1]}/0"
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed by __exit__
                return
            self.connections += 1  # before the close the client's error follows
            connection.close()

    def __exit__(self, *exc_info: object) -> None:
        self._socket.shutdown(socket.SHUT_RDWR)  # wakes the accept() (a close alone does not)
        self._socket.close()
        self._thread.join(timeout=2)


def test_the_local_throttle_keys_a_host_by_its_configured_domain():
    throttle = HostThrottle(1.0, {"arxiv.org": 3.0, "export.arxiv.org": 4.0})

    assert throttle.key_for("rss.arxiv.org") == "arxiv.org"
    assert throttle.key_for("Export.arXiv.org.") == "export.arxiv.org"
    assert throttle.key_for("huggingface.co") == "huggingface.co"
    assert throttle.interval_for("rss.arxiv.org") == 3.0


# --- the runner's fetchers ---------------------------------------------------------------------


def test_the_runners_fetchers_share_one_cluster_wide_throttle(settings):
    settings.INGEST_SHARED_THROTTLE = True

    with runner._fetcher() as first, runner._fetcher() as second:
        assert isinstance(first.throttle, RedisHostThrottle)
        assert first.throttle is second.throttle
        assert first.throttle.prefix == settings.INGEST_THROTTLE_PREFIX


def test_the_runners_fetchers_throttle_per_process_when_the_setting_is_off(settings):
    settings.INGEST_SHARED_THROTTLE = False

    with runner._fetcher() as fetcher:
        assert type(fetcher.throttle) is HostThrottle
