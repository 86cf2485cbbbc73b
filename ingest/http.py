"""The one HTTP layer every listing source fetches through: polite, patient, and conditional.

Pure Python + httpx, no Django: the Django side passes what it knows (``user_agent`` from
``settings.INGEST_USER_AGENT``) when it builds a ``Fetcher``.

- Politeness: requests to one host are spaced at least ``min_interval`` apart (arXiv asks for
  one request every 3 s, hence ``DEFAULT_HOST_INTERVALS``): within a process by default
  (``HostThrottle``), across every process and host sharing a Redis with
  ``RedisHostThrottle`` (the runner's fetchers, ``INGEST_SHARED_THROTTLE``).
- Patience: timeouts, connection errors, HTTP 429 and 5xx are retried with exponential backoff
  and full jitter, honouring ``Retry-After``; any other 4xx fails at once.
- Thrift: ETag / Last-Modified are remembered per URL and sent back, so an unchanged listing
  costs a 304 instead of a download.
- Bounds: a body larger than ``max_response_bytes`` (64 MB) is cut off as it streams in, never
  read whole (``download`` takes a larger ``max_bytes`` for the snapshot); and only public
  addresses are fetched: every address a host resolves to is checked (private, loopback,
  link-local, multicast, reserved are refused) and the connection goes to the checked address,
  on every redirect hop, so neither a redirect nor a DNS answer that changes between check
  and connect reaches an internal service. ``allow_private_hosts`` lifts that (tests, a mirror
  on the LAN).

Failures raise ``FetchError`` subclasses whose ``transient`` flag tells a Celery task whether
trying again later can help.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import logging
import math
import os
import random
import re
import socket
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import httpcore
import httpx
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

log = logging.getLogger(__name__)

T = TypeVar("T")

PROJECT_URL = "https://github.com/paper-catalogue/paper-catalogue"
DEFAULT_USER_AGENT = f"paper-catalogue/0.1 (+{PROJECT_URL})"
# Hosts (and their subdomains) that ask for more room than the default interval.
DEFAULT_HOST_INTERVALS: Mapping[str, float] = {"arxiv.org": 3.0}
# Any other host: a second between requests.
DEFAULT_MIN_INTERVAL = 1.0
DEFAULT_CHUNK_SIZE = 1024 * 1024
# A listing page or feed is at most a few MB; the arXiv snapshot (~5 GB) is the one big download.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_DOWNLOAD_BYTES = 16 * 1024**3

# Worth another try: the network or the server hiccuped, the same request may well succeed.
_TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def build_user_agent(contact_email: str | None = None, *, project_url: str = PROJECT_URL) -> str:
    """A User-Agent that tells an operator who we are and how to reach us."""
    contact = f"; mailto:{contact_email}" if contact_email else ""
    return f"paper-catalogue/0.1 (+{project_url}{contact})"


# --- errors ------------------------------------------------------------------------------------


class FetchError(Exception):
    """A fetch that did not produce a usable response. ``transient`` says whether to try later."""

    transient: bool = False

    def __init__(
        self,
        url: str,
        *,
        reason: str,
        status: int | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        self.url = url
        self.reason = reason
        self.status = status  # None when no response arrived (timeout, refused connection)
        self.attempts = attempts
        self.retry_after = retry_after  # the server's own wish, uncapped: a good Celery countdown
        plural = "" if attempts == 1 else "s"
        super().__init__(f"GET {url}: {reason} ({attempts} attempt{plural})")


class TransientFetchError(FetchError):
    """Gave up for now; the same request may succeed later (timeouts, 429, 5xx)."""

    transient = True


class PermanentFetchError(FetchError):
    """Trying again will not help (404, 403, bad URL, unsupported scheme)."""

    transient = False


class BlockedHost(Exception):
    """The host resolves to an address this fetcher must not reach (``allow_private_hosts``)."""


class _AttemptFailed(Exception):
    """One attempt's failure, before we know whether it was the last one."""

    def __init__(
        self,
        *,
        transient: bool,
        reason: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.transient = transient
        self.reason = reason
        self.status = status
        self.retry_after = retry_after

    def as_fetch_error(self, url: str, attempts: int) -> FetchError:
        kind = TransientFetchError if self.transient else PermanentFetchError
        return kind(
            url,
            reason=self.reason,
            status=self.status,
            attempts=attempts,
            retry_after=self.retry_after,
        )


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A response read into memory. ``url`` is the final one, after redirects."""

    url: str
    status: int
    content: bytes = field(repr=False)  # empty when not_modified
    etag: str | None
    last_modified: str | None
    not_modified: bool
    headers: httpx.Headers = field(repr=False)


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """A response streamed to a file the caller owns (and deletes); no file when not_modified."""

    url: str
    status: int
    path: Path | None
    size: int
    etag: str | None
    last_modified: str | None
    not_modified: bool
    headers: httpx.Headers = field(repr=False)


# --- conditional GET validators ----------------------------------------------------------------


class ValidatorCache(Protocol):
    """Where ETag / Last-Modified are remembered per URL (a dict, a database table, Redis...)."""

    def get(self, url: str) -> tuple[str | None, str | None]: ...

    def set(self, url: str, etag: str | None, last_modified: str | None) -> None: ...


class MemoryValidatorCache:
    """The default: an in-process LRU dict, bounded so a long-lived worker does not grow forever."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self._entries: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()
        self._maxsize = maxsize
        self._lock = threading.Lock()

    def get(self, url: str) -> tuple[str | None, str | None]:
        with self._lock:
            if url not in self._entries:
                return None, None
            self._entries.move_to_end(url)
            return self._entries[url]

    def set(self, url: str, etag: str | None, last_modified: str | None) -> None:
        with self._lock:
            self._entries[url] = (etag, last_modified)
            self._entries.move_to_end(url)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)

    def as_dict(self) -> dict[str, list[str | None]]:
        """The remembered validators (JSON-ready), for storing between runs."""
        with self._lock:
            return {url: list(pair) for url, pair in self._entries.items() if any(pair)}


# --- politeness --------------------------------------------------------------------------------


class HostThrottle:
    """Keeps requests to one host at least an interval apart, within this process.

    The interval runs from the *end* of the previous request, not its start: a slow response
    must not let the next request follow on its heels, and it guarantees the server sees the
    spacing whatever the network latency. One lock per key also makes threads sharing a
    fetcher take turns, since politeness means one request at a time.

    Hosts are keyed by the configured domain they fall under (``export.arxiv.org`` and
    ``arxiv.org`` both under ``arxiv.org``): one site's hosts share its interval and its turns.
    """

    def __init__(
        self,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        host_intervals: Mapping[str, float] = DEFAULT_HOST_INTERVALS,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_interval = min_interval
        self.host_intervals = {domain.lower(): s for domain, s in host_intervals.items()}
        self._sleep = sleep
        self._clock = clock
        self._finished_at: dict[str, float] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def key_for(self, host: str) -> str:
        """The most specific configured domain ``host`` falls under, else the host itself."""
        host = host.lower().rstrip(".")
        matches = [d for d in self.host_intervals if host == d or host.endswith("." + d)]
        return max(matches, key=len) if matches else host

    def interval_for(self, host: str) -> float:
        """The most specific configured domain wins (``export.arxiv.org`` over ``arxiv.org``)."""
        return self.host_intervals.get(self.key_for(host), self.min_interval)

    @contextmanager
    def turn(self, host: str) -> Iterator[None]:
        """Wait until ``host`` may be asked again, then hold it for the request."""
        key = self.key_for(host)
        with self._lock_for(key):
            self._wait_for(key)
            try:
                yield
            finally:
                self._finished_at[key] = self._clock()

    def close(self) -> None:
        """Nothing to release here; the shared throttle closes its Redis connections."""

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _wait_for(self, key: str) -> None:
        finished_at = self._finished_at.get(key)
        if finished_at is None:
            return
        remaining = finished_at + self.interval_for(key) - self._clock()
        if remaining > 0:
            self._sleep(remaining)


# The scripts read Redis's clock (TIME), never a host's: hosts whose clocks disagree still
# space their requests correctly. Times are in milliseconds. KEYS: the lock, the "free at" time.

# ARGV: token, lock TTL (ms). Returns {1, 0} taken; {0, ms} the interval still runs for ms;
# {-1, ms} another holder has it, its lock expires in ms unless renewed.
_TAKE_TURN = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then return {-1, ttl} end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local free_at = tonumber(redis.call('GET', KEYS[2]) or '0')
if free_at > now then return {0, free_at - now} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, 0}
"""

# ARGV: token, interval (ms). The next turn may start an interval after now (rounded up, so
# never early), or later if the key already says so. Returns 1, or 0 if the lock had expired.
_END_TURN = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.ceil(t[2] / 1000)
local free_at = now + tonumber(ARGV[2])
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
if previous > free_at then free_at = previous end
redis.call('SET', KEYS[2], free_at, 'PX', free_at - now + 1000)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# ARGV: token, lock TTL (ms). Returns 1, or 0 if the lock is no longer this holder's.
_RENEW_TURN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class RedisHostThrottle(HostThrottle):
    """``HostThrottle`` for the whole cluster: one request at a time per key across every
    process and host that shares a Redis and a ``prefix``, each an interval after the end of
    the previous one (arXiv: one request per 3 s in all, not per worker).

    - A turn is a Redis lock per key with a TTL (``lock_ttl``, 10 s) that a thread renews
      every third of it while the request runs. A holder that dies stops renewing and frees
      the key within ``lock_ttl``; a live request keeps it as long as it runs (a multi-GB
      download for an hour), each of its reads bounded by the fetch timeout. A TTL as long
      as the longest download would block everyone for hours after a crash instead.
    - Waiting sleeps: for the rest of the interval, or ``poll`` (50 ms) while another holds it.
    - If Redis is unreachable, fetching goes on spaced per process only (the turns of the
      ``HostThrottle`` this builds on, always taken first, which also queue this process's
      threads locally): politeness degrades for a moment, ingest does not fail because the
      broker blinked. A warning is logged once per outage; Redis is tried again after
      ``retry_after`` seconds.

    ``redis`` is a client or a URL (``redis://``, ``rediss://``, ``unix://``,
    ``redis+socket://``); a client built from a URL is closed by ``close()``. Needs Redis 5+.
    """

    def __init__(
        self,
        redis: str | Redis,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        host_intervals: Mapping[str, float] = DEFAULT_HOST_INTERVALS,
        *,
        prefix: str = "throttle:",
        lock_ttl: float = 10.0,
        poll: float = 0.05,
        retry_after: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(min_interval, host_intervals, sleep=sleep, clock=clock)
        self._owns_client = isinstance(redis, str)
        self._redis = _redis_client(redis) if isinstance(redis, str) else redis
        self.prefix = prefix
        self.lock_ttl = lock_ttl
        self.poll = poll
        self.retry_after = retry_after
        self._take = self._redis.register_script(_TAKE_TURN)
        self._end = self._redis.register_script(_END_TURN)
        self._renew = self._redis.register_script(_RENEW_TURN)
        self._down_until: float | None = None  # monotonic; None while Redis answers

    @contextmanager
    def turn(self, host: str) -> Iterator[None]:
        key = self.key_for(host)
        with super().turn(key), self._shared_turn(key):
            yield

    def close(self) -> None:
        if self._owns_client:
            self._redis.close()

    def redis_keys(self, key: str) -> list[str]:
        """The lock and the "free at" time of ``key`` (one hash slot, for Redis Cluster)."""
        return [f"{self.prefix}{{{key}}}:lock", f"{self.prefix}{{{key}}}:free-at"]

    @contextmanager
    def _shared_turn(self, key: str) -> Iterator[None]:
        token = self._take_turn(key)
        if token is None:  # Redis unreachable: the per-process turn already held is all we have
            yield
            return
        try:
            with self._renewing(key, token):
                yield
        finally:
            self._end_turn(key, token)

    def _take_turn(self, key: str) -> str | None:
        """Wait for ``key``'s turn; its lock token, or None if Redis is unreachable."""
        if not self._redis_may_answer():
            return None
        token = uuid.uuid4().hex
        while True:
            try:
                status, ms = self._take(self.redis_keys(key), [token, _ms(self.lock_ttl)])
            except RedisError as error:
                self._redis_failed(error)
                return None
            self._redis_answered()
            if status == 1:
                return token
            # the rest of the interval; or a poll while another holds the key
            self._sleep(ms / 1000 if status == 0 else min(self.poll, ms / 1000))

    def _end_turn(self, key: str, token: str) -> None:
        interval = _ms(self.interval_for(key))
        try:
            ended = self._end(self.redis_keys(key), [token, interval])
        except RedisError as error:  # the lock expires on its own; the interval is lost
            self._redis_failed(error)
            return
        if not ended:
            log.warning("throttle: the lock on %s expired before its request ended", key)

    @contextmanager
    def _renewing(self, key: str, token: str) -> Iterator[None]:
        done = threading.Event()
        renewer = threading.Thread(
            target=self._renew_until, args=(key, token, done), name=f"throttle {key}", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join()

    def _renew_until(self, key: str, token: str, done: threading.Event) -> None:
        lock_key = self.redis_keys(key)[:1]
        while not done.wait(self.lock_ttl / 3):
            try:
                if not self._renew(lock_key, [token, _ms(self.lock_ttl)]):
                    log.warning("throttle: lost the lock on %s mid-request", key)
                    return
            except RedisError as error:  # try again: Redis may be back before the TTL ends
                log.warning("throttle: could not renew the lock on %s: %s", key, error)

    # Redis down: per-process spacing, a warning once per outage, a new try after a pause

    def _redis_may_answer(self) -> bool:
        down_until = self._down_until
        return down_until is None or self._clock() >= down_until

    def _redis_failed(self, error: RedisError) -> None:
        if self._down_until is None:
            log.warning(
                "throttle: Redis unreachable (%s); spacing requests per process only, "
                "trying Redis again every %.0f s",
                error,
                self.retry_after,
            )
        self._down_until = self._clock() + self.retry_after

    def _redis_answered(self) -> None:
        if self._down_until is not None:
            self._down_until = None
            log.info("throttle: Redis answers again; spacing requests across the cluster")


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000)


def _redis_client(url: str) -> Redis:
    """A client for ``url`` that gives up within seconds: a hanging Redis must not hold up
    fetching for long. The scripts take microseconds, so 1 s is plenty; one immediate retry
    (not redis-py's three with backoff) covers a connection dropped by a restarted Redis,
    and the throttle's pause after a failure covers the rest.

    Celery's ``redis+socket://`` spelling of a unix socket is redis-py's ``unix://``.
    """
    url = url.replace("redis+socket://", "unix://", 1)
    return Redis.from_url(
        url, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), retries=1)
    )


# --- retry timing ------------------------------------------------------------------------------


def full_jitter(cap: float) -> float:
    """A uniform delay in [0, cap]: spreads out clients that failed together (AWS "full jitter")."""
    return random.uniform(0, cap)


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait per a Retry-After header (delta-seconds or HTTP date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are always GMT
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


def _classify_status(response: httpx.Response) -> None:
    """Let 2xx and 304 through; turn anything else into a transient or permanent failure."""
    status = response.status_code
    if response.is_success or status == 304:
        return
    reason = f"HTTP {status} {response.reason_phrase}".rstrip()
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise _AttemptFailed(transient=True, reason=reason, status=status, retry_after=retry_after)
    raise _AttemptFailed(transient=False, reason=reason, status=status)


# --- public addresses only -----------------------------------------------------------------

_PRIVATE_HINT = "set INGEST_ALLOW_PRIVATE_HOSTS=1 to fetch from private hosts"


def address_refusal(address: str) -> str | None:
    """Why ``address`` (an IP) must not be fetched from, or None for a public address."""
    ip = _embedded_ipv4(ipaddress.ip_address(address.split("%", 1)[0]))  # zone: "fe80::1%eth0"
    kinds = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("non-public", not ip.is_global),  # shared address space 100.64/10 and the like
    )
    kind = next((kind for kind, matched in kinds if matched), None)
    return kind and f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} address"


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address


def _embedded_ipv4(ip):
    """The IPv4 address an IPv6 one stands for, where the network reaches it through that IPv4
    address: mapped (::ffff:127.0.0.1), NAT64 (64:ff9b::7f00:1) and 6to4 (2002:7f00:1::);
    else ``ip``. Each would otherwise pass as a global IPv6 address."""
    if ip.version == 4:
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour or ip


def public_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, if all are public; else ``BlockedHost``.

    All of them, not the first: a name with one public and one private address could be
    answered either way by the next lookup.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise httpcore.ConnectError(f"cannot resolve {host!r}: {error}") from error
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        if refusal := address_refusal(address):
            raise BlockedHost(f"refused: {host} resolves to {address}, {refusal} ({_PRIVATE_HINT})")
    return addresses


class _PublicOnlyBackend(httpcore.NetworkBackend):
    """Connects only to checked public addresses, and to exactly the addresses it checked.

    Resolving once and connecting to the result (TLS still verifies the host name, which
    httpcore passes as the server name) leaves no second lookup for DNS rebinding to answer.
    Every connection of the client goes through here: the first request and each redirect.
    """

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        error: Exception | None = None
        for address in public_addresses(host, port):
            try:
                return self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as failure:  # try the host's next address
                error = failure
        raise error or httpcore.ConnectError(f"no address for {host!r}")

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise BlockedHost(f"refused: a unix socket ({path})")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _public_only_transport() -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport()
    # httpx builds its pool without a way to pass a network backend: give it one with ours,
    # with httpx's own defaults otherwise.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=_PublicOnlyBackend(),
    )
    return transport


def _setting(name: str, default):
    """A Django setting when Django is configured, else ``default``: a Fetcher built without
    these arguments (by the runner, a shell) still honours the deployment's settings."""
    try:
        from django.conf import settings
    except ImportError:
        return default
    return getattr(settings, name, default) if settings.configured else default


# --- the fetcher -------------------------------------------------------------------------------


class Fetcher:
    """An httpx.Client with timeouts, a descriptive User-Agent, politeness, retries and 304s.

    Share one per process (or per task run) so its throttle and validators see every request,
    or pass the same ``throttle`` to several (a ``RedisHostThrottle`` spaces the whole cluster).
    """

    def __init__(
        self,
        *,
        user_agent: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        host_intervals: Mapping[str, float] = DEFAULT_HOST_INTERVALS,
        throttle: HostThrottle | None = None,
        max_attempts: int = 4,
        backoff_base: float = 1.0,
        max_delay: float = 60.0,
        validators: ValidatorCache | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[float], float] = full_jitter,
        max_response_bytes: int | None = None,
        max_download_bytes: int | None = None,
        allow_private_hosts: bool | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.user_agent = user_agent or DEFAULT_USER_AGENT
        # None: the settings INGEST_MAX_RESPONSE_BYTES, INGEST_MAX_DOWNLOAD_BYTES and
        # INGEST_ALLOW_PRIVATE_HOSTS, else the safe defaults.
        self.max_response_bytes = max_response_bytes or _setting(
            "INGEST_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES
        )
        self.max_download_bytes = max_download_bytes or _setting(
            "INGEST_MAX_DOWNLOAD_BYTES", DEFAULT_MAX_DOWNLOAD_BYTES
        )
        if allow_private_hosts is None:
            allow_private_hosts = _setting("INGEST_ALLOW_PRIVATE_HOSTS", False)
        self.allow_private_hosts = bool(allow_private_hosts)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.max_delay = max_delay
        # `is None`, not `or`: an empty user cache may well be falsy
        self.validators: ValidatorCache = (
            MemoryValidatorCache() if validators is None else validators
        )
        # A throttle given is the caller's (shared by fetchers, closed by its owner); without
        # one, min_interval and host_intervals space this fetcher's own requests.
        if throttle is None:
            throttle = HostThrottle(min_interval, host_intervals, sleep=sleep, clock=clock)
        self.throttle = throttle
        self._sleep = sleep
        self._jitter = jitter
        self._client = httpx.Client(
            headers={"User-Agent": self.user_agent},
            # read also bounds each chunk of a streamed body, not the whole download
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            follow_redirects=True,
            # A transport of our own also means no proxy from the environment: a proxy would
            # connect on our behalf, past the address check.
            transport=None if self.allow_private_hosts else _public_only_transport(),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # public operations

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        conditional: bool = True,
    ) -> FetchResult:
        """GET into memory. With ``conditional``, an unchanged resource comes back not_modified."""
        request, sent = self._prepare(url, params, headers, conditional)
        response, content = self._retrying(request, self._send_and_read)
        etag, last_modified = self._validators_after(request, response, sent, conditional)
        not_modified = response.status_code == 304
        return FetchResult(
            url=str(response.url),
            status=response.status_code,
            content=b"" if not_modified else content,
            etag=etag,
            last_modified=last_modified,
            not_modified=not_modified,
            headers=response.headers,
        )

    def download(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        conditional: bool = True,
        directory: str | os.PathLike[str] | None = None,
        suffix: str = "",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        progress: Callable[[int, int | None], None] | None = None,
        max_bytes: int | None = None,
    ) -> DownloadResult:
        """Stream a (multi-GB) body to a temporary file in ``directory``, in constant memory.

        ``progress(bytes_written, expected_total_or_None)`` is called after every chunk; it
        restarts from 0 when an interrupted download is retried from the beginning. A body
        over ``max_bytes`` (default ``max_response_bytes``) fails without a file.
        """
        request, sent = self._prepare(url, params, headers, conditional)
        limit = max_bytes or self.max_response_bytes

        def attempt(req: httpx.Request) -> tuple[httpx.Response, Path | None, int]:
            return self._stream_to_file(req, directory, suffix, chunk_size, progress, limit)

        response, path, size = self._retrying(request, attempt)
        etag, last_modified = self._validators_after(request, response, sent, conditional)
        return DownloadResult(
            url=str(response.url),
            status=response.status_code,
            path=path,
            size=size,
            etag=etag,
            last_modified=last_modified,
            not_modified=response.status_code == 304,
            headers=response.headers,
        )

    # one attempt

    def _send_and_read(self, request: httpx.Request) -> tuple[httpx.Response, bytes]:
        response = self._client.send(request, stream=True)
        try:
            _classify_status(response)
            limit = self.max_response_bytes
            _refuse_declared_size(response, limit)
            return response, b"".join(_limited(response.iter_bytes(), limit))
        finally:
            response.close()

    def _stream_to_file(
        self,
        request: httpx.Request,
        directory: str | os.PathLike[str] | None,
        suffix: str,
        chunk_size: int,
        progress: Callable[[int, int | None], None] | None,
        limit: int,
    ) -> tuple[httpx.Response, Path | None, int]:
        response = self._client.send(request, stream=True)
        try:
            _classify_status(response)
            if response.status_code == 304:
                return response, None, 0
            _refuse_declared_size(response, limit)
            report = _progress_reporter(progress, _expected_size(response))
            chunks = _limited(response.iter_bytes(chunk_size), limit)
            path, size = _write_chunks(chunks, directory, suffix, report)
            return response, path, size
        finally:
            response.close()

    # retries

    def _retrying(self, request: httpx.Request, attempt: Callable[[httpx.Request], T]) -> T:
        url = str(request.url)
        number = 1
        while True:
            try:
                return self._attempt_once(request, attempt)
            except _AttemptFailed as failure:
                if not failure.transient or number >= self.max_attempts:
                    raise failure.as_fetch_error(url, number) from failure.__cause__
                delay = self._delay_before_retry(number, failure.retry_after)
                log.warning("GET %s: %s; retry %d in %.1f s", url, failure.reason, number, delay)
                self._sleep(delay)
            number += 1

    def _attempt_once(self, request: httpx.Request, attempt: Callable[[httpx.Request], T]) -> T:
        try:
            with self.throttle.turn(request.url.host):
                return attempt(request)
        except BlockedHost as error:
            raise _AttemptFailed(transient=False, reason=str(error)) from error
        except _TRANSIENT_ERRORS as error:
            raise _AttemptFailed(transient=True, reason=_describe(error)) from error
        except httpx.RequestError as error:  # unsupported scheme, too many redirects, bad gzip
            raise _AttemptFailed(transient=False, reason=_describe(error)) from error

    def _delay_before_retry(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # The server said when; jitter would only make us early. Capped so one header
            # cannot park a worker for hours: the caller can still honour error.retry_after.
            return min(retry_after, self.max_delay)
        return self._jitter(min(self.max_delay, self.backoff_base * 2 ** (failures - 1)))

    # conditional GET

    def _prepare(
        self,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        conditional: bool,
    ) -> tuple[httpx.Request, tuple[str | None, str | None]]:
        """Build the request with the validators remembered for its full URL (query included)."""
        try:
            request = self._client.build_request("GET", url, params=params, headers=headers)
        except httpx.InvalidURL as error:
            raise PermanentFetchError(url, reason=_describe(error), attempts=0) from error
        sent = self.validators.get(str(request.url)) if conditional else (None, None)
        etag, last_modified = sent
        if etag:
            request.headers["If-None-Match"] = etag
        if last_modified:
            request.headers["If-Modified-Since"] = last_modified
        return request, sent

    def _validators_after(
        self,
        request: httpx.Request,
        response: httpx.Response,
        sent: tuple[str | None, str | None],
        conditional: bool,
    ) -> tuple[str | None, str | None]:
        """The response's validators, or (on a 304 that omits them) the ones we sent."""
        etag = response.headers.get("ETag") or (sent[0] if response.status_code == 304 else None)
        last_modified = response.headers.get("Last-Modified") or (
            sent[1] if response.status_code == 304 else None
        )
        # Without `conditional` the caller keeps no earlier body, so remembering is pointless.
        # A 200 without validators clears stale ones the server no longer stands behind.
        if conditional and (etag, last_modified) != sent:
            self.validators.set(str(request.url), etag, last_modified)
        return etag, last_modified


# --- streaming helpers -------------------------------------------------------------------------


def _expected_size(response: httpx.Response) -> int | None:
    """Content-Length, unless a content-encoding makes it the compressed size."""
    length = response.headers.get("Content-Length", "")
    if response.headers.get("Content-Encoding") or not (length.isascii() and length.isdigit()):
        return None
    return int(length)


def _refuse_declared_size(response: httpx.Response, limit: int) -> None:
    """Refuse before reading a body whose declared (decoded or not) size is over ``limit``."""
    size = _expected_size(response)
    if size is not None and size > limit:
        raise _too_large(limit, f"it declares {size:,}")


def _limited(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """The chunks, until they add up to more than ``limit`` bytes: then ``_AttemptFailed``.

    Counted after decoding, so a small gzip body that inflates past the limit stops too.
    """
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise _too_large(limit, "cut off while reading")
        yield chunk


def _too_large(limit: int, detail: str) -> _AttemptFailed:
    return _AttemptFailed(
        transient=False,
        reason=f"response larger than {limit:,} bytes ({detail}; INGEST_MAX_RESPONSE_BYTES)",
    )


def _progress_reporter(
    progress: Callable[[int, int | None], None] | None, total: int | None
) -> Callable[[int], None]:
    if progress is None:
        return lambda written: None
    return lambda written: progress(written, total)


def _write_chunks(
    chunks: Iterable[bytes],
    directory: str | os.PathLike[str] | None,
    suffix: str,
    report: Callable[[int], None],
) -> tuple[Path, int]:
    with tempfile.NamedTemporaryFile(
        delete=False, dir=directory, prefix="fetch-", suffix=suffix
    ) as handle:
        path = Path(handle.name)
        try:
            written = _copy_chunks(chunks, handle, report)
        except BaseException:
            # A partial file looks like a complete one to whoever finds it; a retry starts afresh.
            handle.close()  # before unlinking, which Windows refuses on an open file
            path.unlink()
            raise
    return path, written


def _copy_chunks(chunks: Iterable[bytes], handle: IO[bytes], report: Callable[[int], None]) -> int:
    written = 0
    for chunk in chunks:
        handle.write(chunk)
        written += len(chunk)
        report(written)
    return written


def _describe(error: Exception) -> str:
    detail = str(error)
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


# --- convenience -------------------------------------------------------------------------------

_default_fetcher: Fetcher | None = None
_default_fetcher_lock = threading.Lock()


def default_fetcher() -> Fetcher:
    """One shared fetcher per process, so the convenience ``fetch`` stays polite across calls."""
    global _default_fetcher
    with _default_fetcher_lock:
        if _default_fetcher is None:
            _default_fetcher = Fetcher(user_agent=os.environ.get("INGEST_USER_AGENT"))
        return _default_fetcher


def fetch(
    url: str, params: Mapping[str, Any] | None = None, *, fetcher: Fetcher | None = None
) -> FetchResult:
    """GET ``url`` through ``fetcher`` (conditionally), or through the shared default fetcher."""
    if fetcher is not None:
        return fetcher.get(url, params)
    # A caller without a fetcher of its own kept no earlier body, so a 304 would leave it
    # empty-handed: ask unconditionally.
    return default_fetcher().get(url, params, conditional=False)
