"""Reads from streaming replicas (``DATABASE_REPLICA_URLS``): which queries may go to one.

The primary (the ``default`` alias) takes every write and every read that is not explicitly
a reader's: the admin, accounts, sessions, saved searches, Celery tasks, ingest, management
commands. A read goes to a replica only when all of these hold:

- it runs inside a reader request: ``ReplicaReadsMiddleware`` marks GET and HEAD requests of
  the reader URLs (``READER_URL_NAMES``: list, calendar, paper and topic pages, the feed and
  the API), signed in or not; anything else (a task, a command, a POST) is never marked;
- the model is the catalogue's public data (``REPLICA_MODELS``); a user, a session or a saved
  search read while rendering a reader page still comes from the primary, so a reader who
  just saved a search sees it at once;
- the client sent no write lately: every unsafe request's answer sets the ``primary_reads``
  cookie for the longest a replica may lag plus one health check, and while the browser
  sends it, all its reads go to the primary (a curator's edit reads back at once);
- a replica is healthy: each process checks each replica at most every
  ``DATABASE_REPLICA_CHECK_SECONDS`` (not per query) and skips one that is down, is not in
  recovery (promoted: it no longer follows the primary) or lags more than
  ``DATABASE_REPLICA_MAX_LAG`` seconds.

One request keeps the replica it picked first, so its queries see one snapshot's worth of
progress. A database error on that replica marks it down and the request is answered again
from the primary (GET and HEAD are safe to repeat). With no replicas nothing here changes
anything: every method answers None (Django's default alias).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)

PRIMARY = "default"
READER_URL_NAMES = frozenset(
    {
        "paper-list",
        "day-page",
        "week-page",
        "month-page",
        "paper-detail",
        "topic-list",
        "topic-detail",
        "feed",
        "api-papers",
    }
)
# Public catalogue data. Saved searches and their deliveries are a reader's own writes.
REPLICA_MODELS = frozenset(
    {
        ("catalogue", "paper"),
        ("catalogue", "paperembedding"),
        ("catalogue", "sighting"),
        ("catalogue", "popularitysnapshot"),
        ("catalogue", "topic"),
        ("catalogue", "papertopic"),
        ("catalogue", "paperalias"),
    }
)
SAFE_METHODS = frozenset({"GET", "HEAD"})
PRIMARY_READS_COOKIE = "primary_reads"


# --- Health of the replicas, per process --------------------------------------------------------


@dataclass
class Health:
    checked_at: float = -math.inf
    healthy: bool = False
    lag: float = math.inf


def replica_lag(caught_up: bool | None, replay_age: float | None) -> float:
    """Seconds a replica may be behind the primary.

    ``caught_up``: it has replayed the primary's WAL position read just before (an idle
    primary writes nothing, so a replica with nothing left to replay is current however old
    its last replayed transaction is). Else the age of its last replayed commit bounds how
    stale it is (None: nothing replayed since it started, so unknown)."""
    if caught_up:
        return 0.0
    return math.inf if replay_age is None else max(replay_age, 0.0)


_PRIMARY_LSN = "SELECT pg_current_wal_lsn()"
_REPLICA_STATE = """
    SELECT pg_is_in_recovery(),
           pg_last_wal_replay_lsn() >= %s::pg_lsn,
           extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
"""


def measure(alias: str) -> tuple[bool, float]:
    """(in recovery, lag in seconds) of the replica ``alias``; raises DatabaseError if down."""
    try:
        with connections[PRIMARY].cursor() as cursor:
            cursor.execute(_PRIMARY_LSN)
            primary_lsn = cursor.fetchone()[0]
    except DatabaseError:
        primary_lsn = None  # the primary is down: judge the replica by its replay age alone
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(_REPLICA_STATE, [primary_lsn])
            in_recovery, caught_up, replay_age = cursor.fetchone()
    except DatabaseError:
        connections[alias].close()  # reconnect at the next check, not reuse a broken session
        raise
    return in_recovery, replica_lag(caught_up, replay_age)


@dataclass
class ReplicaSet:
    """The replicas' aliases and what this process last learnt of each."""

    aliases: list[str]
    max_lag: float
    check_every: float
    measure: Callable[[str], tuple[bool, float]] = measure
    clock: Callable[[], float] = time.monotonic
    health: dict[str, Health] = field(default_factory=dict)

    def healthy(self) -> list[str]:
        return [alias for alias in self.aliases if self._is_healthy(alias)]

    def mark_down(self, alias: str) -> None:
        self.health[alias] = Health(checked_at=self.clock())

    def _is_healthy(self, alias: str) -> bool:
        health = self.health.setdefault(alias, Health())
        if self.clock() - health.checked_at >= self.check_every:
            self.health[alias] = self._check(alias, health)
        return self.health[alias].healthy

    def _check(self, alias: str, before: Health) -> Health:
        """Measure ``alias``; log when it goes out of use or back (not at every check)."""
        now = self.clock()
        try:
            in_recovery, lag = self.measure(alias)
        except DatabaseError as error:
            in_recovery, lag, why = False, math.inf, str(error).strip()
        else:
            why = f"it lags {lag:.1f} s" if in_recovery else "it is not in recovery (promoted?)"
        health = Health(checked_at=now, healthy=in_recovery and lag <= self.max_lag, lag=lag)
        if not health.healthy and (before.healthy or before.checked_at == -math.inf):
            logger.warning("replica %s is skipped: %s", alias, why)
        elif health.healthy and not before.healthy and before.checked_at != -math.inf:
            logger.warning("replica %s is used again (lag %.1f s)", alias, lag)
        return health


def replicas_from_settings() -> ReplicaSet:
    return ReplicaSet(
        aliases=list(getattr(settings, "DATABASE_REPLICAS", [])),
        max_lag=getattr(settings, "DATABASE_REPLICA_MAX_LAG", 10),
        check_every=getattr(settings, "DATABASE_REPLICA_CHECK_SECONDS", 5),
    )


# --- Which reads may go to a replica --------------------------------------------------------------


@dataclass
class Reads:
    """One request's reads: whether they may use a replica, and the one they use."""

    eligible: bool = False
    replica: str | None = None


# None outside requests (tasks, commands): the primary.
_reads: ContextVar[Reads | None] = ContextVar("catalogue_reads", default=None)


@contextmanager
def reader_reads(eligible: bool = True):
    """Run the block as a reader request's reads (the middleware's doing; tests use it)."""
    token = _reads.set(Reads(eligible=eligible))
    try:
        yield _reads.get()
    finally:
        _reads.reset(token)


class ReplicaRouter:
    """DATABASE_ROUTERS entry: reader reads to a healthy replica, all else to the primary."""

    def __init__(self, replicas: ReplicaSet | None = None):
        self.replicas = replicas or replicas_from_settings()

    def db_for_read(self, model, **hints) -> str | None:
        if not self.replicas.aliases:
            return None
        reads = _reads.get()
        if reads is None or not reads.eligible or not _public(model):
            return PRIMARY
        if reads.replica is None:
            healthy = self.replicas.healthy()
            reads.replica = random.choice(healthy) if healthy else PRIMARY
        return reads.replica

    def db_for_write(self, model, **hints) -> str | None:
        return PRIMARY if self.replicas.aliases else None

    def allow_relation(self, obj1, obj2, **hints) -> bool | None:
        # Replicas hold the primary's rows: a paper read from one may point at a user.
        return True if self.replicas.aliases else None

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool | None:
        return db == PRIMARY if self.replicas.aliases else None


def _public(model) -> bool:
    return (model._meta.app_label, model._meta.model_name) in REPLICA_MODELS


def catalogue_connection():
    """The connection the ORM reads papers from now: raw SQL beside ORM queries uses it, to
    see the same rows and to share their session (``SET LOCAL``)."""
    from django.apps import apps
    from django.db import router

    return connections[router.db_for_read(apps.get_model("catalogue", "Paper")) or PRIMARY]


# --- The middleware ----------------------------------------------------------------------------


class ReplicaReadsMiddleware:
    """Marks reader requests' reads as replica-eligible; sets ``primary_reads`` after writes."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with reader_reads(eligible=False):
            response = self.get_response(request)
        if request.method not in SAFE_METHODS and settings.DATABASE_REPLICAS:
            response.set_cookie(
                PRIMARY_READS_COOKIE,
                "1",
                max_age=math.ceil(
                    settings.DATABASE_REPLICA_MAX_LAG + settings.DATABASE_REPLICA_CHECK_SECONDS
                ),
                httponly=True,
                samesite="Lax",
                secure=settings.SESSION_COOKIE_SECURE,
            )
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        match = request.resolver_match
        self._request_reads(request).eligible = (
            request.method in SAFE_METHODS
            and match is not None
            and match.url_name in READER_URL_NAMES
            and PRIMARY_READS_COOKIE not in request.COOKIES
            and not getattr(request, "_replica_failed", False)
        )

    @staticmethod
    def _request_reads(request) -> Reads:
        reads = _reads.get()
        assert reads is not None, "ReplicaReadsMiddleware.__call__ sets it for each request"
        return reads

    def process_exception(self, request, exception):
        """A replica failed this request: skip it and answer again from the primary."""
        reads = self._request_reads(request)
        if reads.replica in (None, PRIMARY) or not isinstance(exception, DatabaseError):
            return None
        logger.warning("replica %s failed a request (%s); retried on the primary", reads.replica,
                       exception)  # fmt: skip
        _router().replicas.mark_down(reads.replica)
        request._replica_failed = True
        reads.eligible, reads.replica = False, None
        return self.get_response(request)


def _router() -> ReplicaRouter:
    from django.db import router

    for candidate in router.routers:
        if isinstance(candidate, ReplicaRouter):
            return candidate
    raise LookupError("ReplicaRouter is not in DATABASE_ROUTERS")
