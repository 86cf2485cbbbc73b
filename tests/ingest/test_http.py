"""The fetch layer against a real HTTP server on 127.0.0.1: no mocked httpx.

Each test scripts the replies for a path; the server records every request it sees (headers and
the monotonic time it read it), so spacing and retries are measured where they matter: at the
server. Backoff delays go through a recording ``sleep`` so the suite does not wait for them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.message
import email.utils
import math
import random
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ingest import http, runner
from ingest.http import (
    Fetcher,
    FetchError,
    HostThrottle,
    PermanentFetchError,
    TransientFetchError,
    build_user_agent,
    fetch,
    full_jitter,
    parse_retry_after,
)

# --- a scripted server -------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0  # seconds to wait before answering, to provoke read timeouts
    cut_after: int | None = None  # send only this many body bytes, then drop the connection


@dataclass
class Seen:
    path: str  # with the query string
    headers: email.message.Message  # case-insensitive .get()
    at: float  # time.monotonic() once the server had read the request


Script = Reply | Callable[[Seen], Reply]


class ScriptedServer:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._scripts: dict[str, list[Script]] = {}
        self._lock = threading.Lock()
        self.port = 0

    def script(self, path: str, *replies: Script) -> str:
        """Answer ``path`` with these replies in turn; the last one repeats. Returns the URL."""
        self._scripts[path] = list(replies)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if urlsplit(seen.path).path == path]

    def answer(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            replies = self._scripts.get(urlsplit(seen.path).path, [Reply(404)])
            script = replies.pop(0) if len(replies) > 1 else replies[0]
        return script(seen) if callable(script) else script


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    server: _Server

    def do_GET(self) -> None:
        reply = self.server.scripted.answer(Seen(self.path, self.headers, time.monotonic()))
        # the client may have given up (read timeout): exactly what such a test provokes
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(reply)

    def _send(self, reply: Reply) -> None:
        time.sleep(reply.stall)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        body = memoryview(reply.body)[: reply.cut_after]
        for start in range(0, len(body), 64 * 1024):
            self.wfile.write(body[start : start + 64 * 1024])
        if reply.cut_after is not None:
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet


class _Server(ThreadingHTTPServer):
    scripted: ScriptedServer


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.scripted = scripted
    scripted.port = httpd.server_address[1]
    # a short poll interval so shutdown() at teardown does not cost half a second per test
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.daemon = True
    thread.start()
    yield scripted
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=2)


class RecordingSleep:
    """Stands in for time.sleep: remembers the delays, waits for none of them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def make_fetcher(sleep: RecordingSleep) -> Iterator[Callable[..., Fetcher]]:
    """Fetchers with test-friendly defaults: no spacing, exact backoff (no jitter), fake sleep."""
    made: list[Fetcher] = []

    def make(**options: object) -> Fetcher:
        defaults: dict[str, object] = {
            "min_interval": 0.0,
            "max_attempts": 3,
            "backoff_base": 0.1,
            "connect_timeout": 1.0,
            "read_timeout": 2.0,
            "sleep": sleep,
            "jitter": lambda cap: cap,
            # The scripted server is on 127.0.0.1, which fetchers refuse unless told.
            "allow_private_hosts": True,
        }
        fetcher = Fetcher(**(defaults | options))  # type: ignore[arg-type]
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        fetcher.close()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- retries -----------------------------------------------------------------------------------


def test_too_many_requests_succeeds_after_honouring_retry_after(server, make_fetcher, sleep):
    url = server.script("/r", Reply(429, headers={"Retry-After": "2"}), Reply(200, b"ok"))

    result = make_fetcher().get(url)

    assert result.content == b"ok"
    assert sleep.delays == [2.0]  # exactly the server's wish: no jitter on top
    assert len(server.hits("/r")) == 2


def test_retry_after_as_http_date_is_honoured(server, make_fetcher, sleep):
    in_30_s = email.utils.formatdate(time.time() + 30, usegmt=True)
    url = server.script("/r", Reply(503, headers={"Retry-After": in_30_s}), Reply(200, b"ok"))

    result = make_fetcher(max_delay=60).get(url)

    assert result.content == b"ok"
    [delay] = sleep.delays
    assert 28 <= delay <= 30  # the date has whole seconds, and the clock moved on a little


def test_retry_after_beyond_max_delay_is_capped_but_reported(server, make_fetcher, sleep):
    url = server.script("/r", Reply(429, headers={"Retry-After": "120"}))

    with pytest.raises(TransientFetchError) as caught:
        make_fetcher(max_delay=5, max_attempts=2).get(url)

    assert sleep.delays == [5]
    assert caught.value.status == 429
    assert caught.value.retry_after == 120  # so a Celery task can come back when asked


def test_server_errors_are_retried_with_growing_backoff(server, make_fetcher, sleep):
    url = server.script("/r", Reply(500), Reply(500), Reply(200, b"third time"))

    result = make_fetcher(backoff_base=0.1).get(url)

    assert result.content == b"third time"
    assert sleep.delays == pytest.approx([0.1, 0.2])
    assert len(server.hits("/r")) == 3


def test_backoff_is_capped_by_max_delay(server, make_fetcher, sleep):
    url = server.script("/r", Reply(502))

    with pytest.raises(TransientFetchError):
        make_fetcher(max_attempts=5, backoff_base=1, max_delay=3).get(url)

    assert sleep.delays == [1, 2, 3, 3]


def test_full_jitter_draws_between_zero_and_the_cap():
    draws = [full_jitter(2.0) for _ in range(1000)]

    assert all(0 <= draw <= 2.0 for draw in draws)
    assert min(draws) < 0.5 < 1.5 < max(draws)  # spread out, not pinned to the cap


def test_persistent_unavailability_raises_transient_error_after_all_attempts(
    server, make_fetcher, sleep
):
    url = server.script("/r", Reply(503))

    with pytest.raises(FetchError) as caught:
        make_fetcher(max_attempts=3).get(url)

    error = caught.value
    assert error.transient is True
    assert isinstance(error, TransientFetchError)
    assert (error.status, error.url, error.attempts) == (503, url, 3)
    assert "503" in str(error) and url in str(error) and "3 attempts" in str(error)
    assert len(server.hits("/r")) == 3
    assert len(sleep.delays) == 2


def test_not_found_fails_at_once_after_one_request(server, make_fetcher, sleep):
    url = server.script("/missing", Reply(404))

    with pytest.raises(PermanentFetchError) as caught:
        make_fetcher().get(url)

    assert caught.value.transient is False
    assert (caught.value.status, caught.value.attempts) == (404, 1)
    assert len(server.hits("/missing")) == 1
    assert sleep.delays == []


def test_read_timeout_is_retried_then_raises(server, make_fetcher):
    url = server.script("/slow", Reply(200, b"too late", stall=0.5))

    with pytest.raises(TransientFetchError) as caught:
        make_fetcher(read_timeout=0.1, max_attempts=2).get(url)

    assert caught.value.status is None  # no response ever arrived
    assert "ReadTimeout" in caught.value.reason
    assert len(server.hits("/slow")) == 2


def test_refused_connection_is_retried_then_raises(make_fetcher, sleep):
    url = f"http://127.0.0.1:{unused_port()}/nobody-home"

    with pytest.raises(TransientFetchError) as caught:
        make_fetcher(max_attempts=3).get(url)

    assert "ConnectError" in caught.value.reason
    assert caught.value.attempts == 3
    assert len(sleep.delays) == 2


def test_unsupported_scheme_fails_at_once(make_fetcher, sleep):
    with pytest.raises(PermanentFetchError) as caught:
        make_fetcher().get("ftp://127.0.0.1/listing.txt")

    assert caught.value.attempts == 1
    assert sleep.delays == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # already past: go now
        ("soon", None),
        ("-5", None),
        (None, None),
    ],
)
def test_parse_retry_after(header, expected):
    now = dt.datetime(2015, 10, 21, 7, 28, 0, tzinfo=dt.UTC)

    assert parse_retry_after(header, now=now) == expected


# --- conditional GET ---------------------------------------------------------------------------


def etag_server(seen: Seen) -> Reply:
    if seen.headers.get("If-None-Match") == '"v1"':
        return Reply(304, headers={"ETag": '"v1"'})
    return Reply(200, b"listing v1", headers={"ETag": '"v1"'})


LAST_MODIFIED = "Mon, 06 Jan 2025 10:00:00 GMT"


def last_modified_server(seen: Seen) -> Reply:
    if seen.headers.get("If-Modified-Since") == LAST_MODIFIED:
        return Reply(304)
    return Reply(200, b"listing", headers={"Last-Modified": LAST_MODIFIED})


def test_etag_is_sent_back_and_304_comes_back_not_modified(server, make_fetcher):
    url = server.script("/daily", etag_server)
    fetcher = make_fetcher()

    first = fetcher.get(url)
    second = fetcher.get(url)

    assert (first.content, first.etag, first.not_modified) == (b"listing v1", '"v1"', False)
    assert (second.status, second.content, second.not_modified) == (304, b"", True)
    assert second.etag == '"v1"'
    assert [seen.headers.get("If-None-Match") for seen in server.hits("/daily")] == [None, '"v1"']


def test_last_modified_is_sent_back_as_if_modified_since(server, make_fetcher):
    url = server.script("/daily", last_modified_server)
    fetcher = make_fetcher()

    first = fetcher.get(url)
    second = fetcher.get(url)

    assert (first.content, first.last_modified) == (b"listing", LAST_MODIFIED)
    assert second.not_modified is True
    assert second.last_modified == LAST_MODIFIED  # kept from the first, though the 304 omits it
    assert server.hits("/daily")[1].headers.get("If-Modified-Since") == LAST_MODIFIED


def test_validators_belong_to_the_full_url_with_its_query(server, make_fetcher):
    url = server.script("/list", etag_server)
    fetcher = make_fetcher()

    fetcher.get(url, {"page": 1})
    other_page = fetcher.get(url, {"page": 2})

    assert other_page.not_modified is False
    assert [seen.path for seen in server.hits("/list")] == ["/list?page=1", "/list?page=2"]
    assert server.hits("/list")[1].headers.get("If-None-Match") is None


class DictValidatorCache:
    """A stand-in for a persistent cache (database, Redis) shared between processes."""

    def __init__(self, entries: dict[str, tuple[str | None, str | None]]) -> None:
        self.entries = entries

    def get(self, url: str) -> tuple[str | None, str | None]:
        return self.entries.get(url, (None, None))

    def set(self, url: str, etag: str | None, last_modified: str | None) -> None:
        self.entries[url] = (etag, last_modified)


def test_a_shared_validator_cache_makes_the_first_request_conditional(server, make_fetcher):
    url = server.script("/daily", etag_server)
    cache = DictValidatorCache({url: ('"v1"', None)})

    result = make_fetcher(validators=cache).get(url)

    assert result.not_modified is True


def test_fetch_without_a_fetcher_never_asks_conditionally(server, monkeypatch, settings):
    url = server.script("/daily", etag_server)
    settings.INGEST_ALLOW_PRIVATE_HOSTS = True  # a fresh default fetcher reads the setting
    monkeypatch.setattr(http, "_default_fetcher", None)
    monkeypatch.setattr(http.default_fetcher().throttle, "min_interval", 0.0)

    results = [fetch(url), fetch(url)]

    assert [result.content for result in results] == [b"listing v1", b"listing v1"]
    assert [seen.headers.get("If-None-Match") for seen in server.hits("/daily")] == [None, None]


def test_fetch_with_a_fetcher_passes_params_and_remembers(server, make_fetcher):
    url = server.script("/daily", etag_server)
    fetcher = make_fetcher()

    fetch(url, {"date": "2025-01-06"}, fetcher=fetcher)
    again = fetch(url, {"date": "2025-01-06"}, fetcher=fetcher)

    assert again.not_modified is True
    assert server.hits("/daily")[0].path == "/daily?date=2025-01-06"


# --- identity and redirects --------------------------------------------------------------------


def test_default_user_agent_names_the_project(server, make_fetcher):
    url = server.script("/ua", Reply(200))

    make_fetcher().get(url)

    assert server.hits("/ua")[0].headers["User-Agent"].startswith("paper-catalogue/0.1 (+https://")


def test_given_user_agent_with_contact_is_sent(server, make_fetcher):
    url = server.script("/ua", Reply(200))
    agent = build_user_agent("ops@example.org")

    make_fetcher(user_agent=agent).get(url)

    sent = server.hits("/ua")[0].headers["User-Agent"]
    assert sent == agent
    assert sent.startswith("paper-catalogue/0.1 (+https://") and "mailto:ops@example.org" in sent


def test_redirects_are_followed(server, make_fetcher):
    server.script("/new", Reply(200, b"moved here"))
    url = server.script("/old", Reply(301, headers={"Location": "/new"}))

    result = make_fetcher().get(url)

    assert (result.status, result.content) == (200, b"moved here")
    assert result.url == server.url("/new")


# --- politeness --------------------------------------------------------------------------------


def gaps(seen: list[Seen]) -> list[float]:
    return [later.at - earlier.at for earlier, later in zip(seen, seen[1:], strict=False)]


def test_requests_to_one_host_keep_the_minimum_interval(server, make_fetcher):
    url = server.script("/page", Reply(200, b"x"))
    fetcher = make_fetcher(min_interval=0.05, sleep=time.sleep)  # really waits

    for page in range(4):
        fetcher.get(url, {"page": page})

    measured = gaps(server.hits("/page"))
    assert len(measured) == 3
    assert all(gap >= 0.05 for gap in measured), measured


@pytest.mark.parametrize("shared", [True, False], ids=["through Redis", "its own"])
def test_an_ingests_fetches_are_spaced_by_the_min_interval_setting(server, settings, shared):
    """``INGEST_MIN_INTERVAL``, not the 1 s default, spaces an ingest run's requests to a host
    of no interval of its own, whether the turns are taken through Redis or in the process."""
    settings.INGEST_MIN_INTERVAL = 0.3
    settings.INGEST_SHARED_THROTTLE = shared  # (each test has a throttle prefix of its own)
    settings.INGEST_ALLOW_PRIVATE_HOSTS = True
    url = server.script("/page", Reply(200, b"x"))

    with runner._fetcher() as fetcher:
        for page in range(4):
            fetcher.get(url, {"page": page})

    measured = gaps(server.hits("/page"))
    assert len(measured) == 3 and all(gap >= 0.3 for gap in measured), measured
    assert min(measured) < http.DEFAULT_MIN_INTERVAL, measured


def test_retries_keep_the_minimum_interval_too(server, make_fetcher):
    url = server.script("/flaky", Reply(500), Reply(200, b"ok"))
    fetcher = make_fetcher(min_interval=0.05, backoff_base=0.0, sleep=time.sleep)

    fetcher.get(url)

    [gap] = gaps(server.hits("/flaky"))
    assert gap >= 0.05


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_throttle_spaces_each_host_on_its_own_and_gives_arxiv_three_seconds():
    clock = FakeClock()
    throttle = HostThrottle(1.0, {"arxiv.org": 3.0}, sleep=clock.sleep, clock=clock)

    def request(host: str) -> float:
        with throttle.turn(host):
            return clock.now

    starts = [request("huggingface.co"), request("export.arxiv.org"), request("export.arxiv.org")]
    starts.append(request("huggingface.co"))

    # no wait for a host's first request; arXiv's subdomain gets arxiv.org's 3 s; the other
    # host's last request was long enough ago
    assert starts == [100.0, 100.0, 103.0, 103.0]


# --- streaming downloads -----------------------------------------------------------------------


def test_streaming_download_writes_identical_bytes_in_chunks(server, make_fetcher, tmp_path):
    body = random.Random(7).randbytes(4 * 1024 * 1024)
    url = server.script("/snapshot.json.gz", Reply(200, body, headers={"ETag": '"s1"'}))
    reports: list[tuple[int, int | None]] = []
    chunk_size = 64 * 1024
    fetcher = make_fetcher()  # before tracing: building the client loads CA certificates

    tracemalloc.start()
    try:
        result = fetcher.download(
            url,
            directory=tmp_path,
            suffix=".json.gz",
            chunk_size=chunk_size,
            progress=lambda written, total: reports.append((written, total)),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.path is not None and result.path.parent == tmp_path
    assert result.path.name.endswith(".json.gz")
    assert result.path.read_bytes() == body
    assert (result.size, result.etag, result.not_modified) == (len(body), '"s1"', False)
    written = [done for done, _ in reports]
    assert len(written) == math.ceil(len(body) / chunk_size)  # one report per chunk
    assert max(gaps_between(written)) <= chunk_size
    assert reports[-1] == (len(body), len(body))
    # flat: a few chunks plus httpx's buffers (~0.6 MiB measured, the same for a 12 MiB body)
    assert peak < 1.5 * 1024 * 1024


def gaps_between(values: list[int]) -> list[int]:
    return [b - a for a, b in zip([0, *values], values, strict=False)]


def test_interrupted_download_is_retried_without_leaving_a_partial_file(
    server, make_fetcher, tmp_path
):
    body = bytes(range(256)) * 400
    url = server.script("/snapshot", Reply(200, body, cut_after=1000), Reply(200, body))

    result = make_fetcher().download(url, directory=tmp_path)

    assert result.path is not None and result.path.read_bytes() == body
    assert list(tmp_path.iterdir()) == [result.path]
    assert len(server.hits("/snapshot")) == 2


def test_download_that_keeps_failing_leaves_no_file(server, make_fetcher, tmp_path):
    url = server.script("/snapshot", Reply(200, b"x" * 5000, cut_after=100))

    with pytest.raises(TransientFetchError):
        make_fetcher(max_attempts=2).download(url, directory=tmp_path)

    assert list(tmp_path.iterdir()) == []


def test_unchanged_download_comes_back_not_modified_without_a_file(server, make_fetcher, tmp_path):
    url = server.script("/snapshot", etag_server)
    fetcher = make_fetcher()

    first = fetcher.download(url, directory=tmp_path)
    second = fetcher.download(url, directory=tmp_path)

    assert first.path is not None and first.path.read_bytes() == b"listing v1"
    assert (second.not_modified, second.path, second.size) == (True, None, 0)
    assert list(tmp_path.iterdir()) == [first.path]


# --- bounds: public hosts only, bodies of a limited size ------------------------------------------


@pytest.mark.parametrize(
    ("address", "refusal"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("64:ff9b::7f00:1", "a loopback address"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "a link-local address"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "a loopback address"),  # 6to4 of 127.0.0.1
        ("2002:c0a8:1::1", "a private address"),  # 6to4 of 192.168.0.1
        ("64:ff9b::808:808", None),  # NAT64 of a public address
        ("10.1.2.3", "a private address"),
        ("192.168.0.10", "a private address"),
        ("172.16.5.4", "a private address"),
        ("fd00::1", "a private address"),
        ("169.254.169.254", "a link-local address"),  # the cloud metadata service
        ("fe80::1%eth0", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("240.0.0.1", "a reserved address"),
        ("100.64.0.1", "a non-public address"),  # carrier-grade NAT
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_only_public_addresses_pass_the_address_check(address, refusal):
    assert http.address_refusal(address) == refusal


def test_a_fetcher_refuses_loopback_hosts_by_default(server, make_fetcher, sleep):
    url = server.script("/listing", Reply(200, b"internal"))

    with pytest.raises(PermanentFetchError, match="loopback address.*INGEST_ALLOW_PRIVATE_HOSTS"):
        make_fetcher(allow_private_hosts=None).get(url)
    with pytest.raises(PermanentFetchError, match="loopback"):
        make_fetcher(allow_private_hosts=None).get(url.replace("127.0.0.1", "localhost"))

    assert server.hits("/listing") == [] and sleep.delays == []  # not reached, not retried


def test_the_setting_allows_private_hosts(server, make_fetcher, settings):
    url = server.script("/listing", Reply(200, b"from the LAN mirror"))
    settings.INGEST_ALLOW_PRIVATE_HOSTS = True

    assert make_fetcher(allow_private_hosts=None).get(url).content == b"from the LAN mirror"


def test_a_redirect_to_a_loopback_host_is_refused(server, make_fetcher, monkeypatch):
    """The check runs on every hop: a public host may not send us to an internal one."""
    secret = server.script("/admin", Reply(200, b"secret"))
    public = _redirecting_server("127.0.0.2", secret)
    real_refusal = http.address_refusal
    # 127.0.0.2 plays a public host here; every other address keeps the real check.
    monkeypatch.setattr(
        http, "address_refusal", lambda a: None if a == "127.0.0.2" else real_refusal(a)
    )
    try:
        with pytest.raises(PermanentFetchError, match="resolves to 127.0.0.1, a loopback"):
            make_fetcher(allow_private_hosts=False).get(f"{public}/go")
    finally:
        public.shutdown()
    assert server.hits("/admin") == []


class _Redirecting(ThreadingHTTPServer):
    def __init__(self, host: str, target: str):
        self.target = target

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N805 (the server is self here)
                handler.send_response(302)
                handler.send_header("Location", self.target)
                handler.send_header("Content-Length", "0")
                handler.end_headers()

            def log_message(handler, *args: object) -> None:  # noqa: N805
                pass

        super().__init__((host, 0), Handler)
        threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()

    def __str__(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"


def _redirecting_server(host: str, target: str) -> _Redirecting:
    return _Redirecting(host, target)


def test_a_body_over_the_declared_limit_is_refused_before_reading(server, make_fetcher, sleep):
    url = server.script("/big", Reply(200, b"x" * 5000))

    with pytest.raises(PermanentFetchError, match="larger than 4,096 bytes.*declares 5,000"):
        make_fetcher(max_response_bytes=4096).get(url)
    assert make_fetcher(max_response_bytes=5000).get(url).content == b"x" * 5000
    assert sleep.delays == []  # a permanent failure: not retried


class _Endless(ThreadingHTTPServer):
    """Streams ``size`` bytes without a Content-Length, counting what it managed to send."""

    def __init__(self, size: int):
        self.sent = 0
        self.done = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N805 (the server is self here)
                handler.send_response(200)
                handler.send_header("Connection", "close")
                handler.end_headers()
                chunk = b"y" * (64 * 1024)
                try:
                    while self.sent < size:
                        handler.wfile.write(chunk)
                        self.sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    self.done.set()

            def log_message(handler, *args: object) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.mark.parametrize("method", ["get", "download"])
def test_a_300_mb_body_is_cut_off_at_the_limit_without_reading_it_all(
    make_fetcher, tmp_path, method
):
    endless = _Endless(300 * 1024 * 1024)
    fetcher = make_fetcher(max_response_bytes=2 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(PermanentFetchError, match="larger than 2,097,152 bytes.*cut off"):
            getattr(fetcher, method)(
                endless.url("/snapshot.jsonl"),
                **({"directory": tmp_path} if method == "download" else {}),
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        endless.done.wait(5)
        endless.shutdown()
    assert endless.sent < 40 * 1024 * 1024  # the client hung up; socket buffers hold the rest
    assert peak < 16 * 1024 * 1024
    assert list(tmp_path.iterdir()) == []  # no partial download left behind


def test_download_may_ask_for_a_larger_limit_than_the_fetchers(server, make_fetcher, tmp_path):
    url = server.script("/snapshot.jsonl", Reply(200, b"z" * 3000))
    fetcher = make_fetcher(max_response_bytes=1000)

    result = fetcher.download(url, directory=tmp_path, max_bytes=4000)

    assert result.size == 3000
    result.path.unlink()


def test_the_connection_goes_to_the_address_that_was_checked(make_fetcher, monkeypatch):
    """DNS rebinding: a name that answers a public address to the check and a loopback one to
    the connect must not reach the loopback service. One lookup per connection, no second."""
    public = _PublicReply("127.0.0.2", b"public listing")
    internal = _PublicReply("127.0.0.1", b"internal service", port=public.port)
    answers = iter(["127.0.0.2"])  # the first answer; any later lookup would get loopback
    lookups = []

    def rebinding_dns(host, port, *args, **kwargs):
        if host.replace(".", "").isdigit():  # an address resolves to itself, as in real life
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port))]
        lookups.append(host)
        address = next(answers, "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    real_refusal = http.address_refusal
    monkeypatch.setattr(
        http, "address_refusal", lambda a: None if a == "127.0.0.2" else real_refusal(a)
    )
    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    try:
        result = make_fetcher(allow_private_hosts=False).get(f"http://rebind.test:{public.port}/x")
    finally:
        public.shutdown()
        internal.shutdown()
    assert result.content == b"public listing"
    assert lookups == ["rebind.test"]


class _PublicReply(ThreadingHTTPServer):
    def __init__(self, host: str, body: bytes, port: int = 0):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N805
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args: object) -> None:  # noqa: N805
                pass

        super().__init__((host, port), Handler)
        self.port = self.server_address[1]
        threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()


@pytest.fixture
def tls_server(tmp_path) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on 127.0.0.2 with a certificate for ``tls.test`` (and its CA file)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=tls.test",
         "-addext", "subjectAltName=DNS:tls.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    public = _PublicReply("127.0.0.2", b"over TLS")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    public.socket = context.wrap_socket(public.socket, server_side=True)
    yield public.port, cert
    public.shutdown()


def test_tls_still_verifies_the_host_name_when_connecting_to_the_checked_address(
    tls_server, make_fetcher, monkeypatch
):
    """The connection goes to an IP address, yet the certificate is checked against the URL's
    host (sent as SNI): a wrong name fails, the right one succeeds."""
    port, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # httpx trusts this CA file
    real_lookup, real_refusal = socket.getaddrinfo, http.address_refusal

    def test_dns(host, port, *args, **kwargs):
        if host in ("tls.test", "wrong-name.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))]
        return real_lookup(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", test_dns)
    monkeypatch.setattr(
        http, "address_refusal", lambda a: None if a == "127.0.0.2" else real_refusal(a)
    )
    fetcher = make_fetcher(allow_private_hosts=False, max_attempts=1)

    assert fetcher.get(f"https://tls.test:{port}/").content == b"over TLS"
    with pytest.raises(FetchError, match="certificate verify failed"):
        fetcher.get(f"https://wrong-name.test:{port}/")
