"""The replica router's rules: which alias serves which read, and which replicas are skipped.

No replica runs here (``test_replica.py`` streams a real one): the health checks are fakes
with a fake clock, and the router is asked directly, or records its answers while the real
test database serves the requests.
"""

from __future__ import annotations

import datetime as dt
import math

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.db import OperationalError, router
from django.urls import reverse

from catalogue.models import Paper, PaperTopic, SavedSearch, Sighting, Topic
from catalogue.routers import (
    PRIMARY,
    PRIMARY_READS_COOKIE,
    REPLICA_MODELS,
    ReplicaReadsMiddleware,
    ReplicaRouter,
    ReplicaSet,
    reader_reads,
    replica_lag,
)
from ingest.models import IngestRun


class FakeReplicas:
    """Replica states by alias ("down", or (in recovery, lag)), a clock, the checks made."""

    def __init__(self, **states):
        self.states = states
        self.now = 0.0
        self.checks: list[str] = []

    def measure(self, alias):
        self.checks.append(alias)
        state = self.states[alias]
        if state == "down":
            raise OperationalError("connection refused")
        return state

    def replica_set(self, max_lag=10, check_every=5) -> ReplicaSet:
        return ReplicaSet(
            aliases=list(self.states),
            max_lag=max_lag,
            check_every=check_every,
            measure=self.measure,
            clock=lambda: self.now,
        )


def routed(**states) -> tuple[ReplicaRouter, FakeReplicas]:
    fake = FakeReplicas(**states)
    return ReplicaRouter(fake.replica_set()), fake


# --- lag ----------------------------------------------------------------------------------------


def test_a_replica_with_nothing_left_to_replay_has_no_lag_however_idle_the_primary():
    assert replica_lag(caught_up=True, replay_age=3600.0) == 0.0


def test_a_replica_behind_the_primary_lags_by_the_age_of_its_last_replayed_commit():
    assert replica_lag(caught_up=False, replay_age=12.5) == 12.5
    # The primary's position unknown (it is down): the replay age alone.
    assert replica_lag(caught_up=None, replay_age=1.0) == 1.0


def test_a_replica_that_replayed_nothing_yet_and_is_behind_lags_without_bound():
    assert replica_lag(caught_up=False, replay_age=None) == math.inf


# --- health -------------------------------------------------------------------------------------


def test_down_lagging_and_promoted_replicas_are_skipped():
    fake = FakeReplicas(
        replica1=(True, 0.0), replica2="down", replica3=(True, 30.0), replica4=(False, 0.0)
    )
    assert fake.replica_set(max_lag=10).healthy() == ["replica1"]


def test_a_replica_is_checked_at_most_once_per_interval_and_recovers_after():
    fake = FakeReplicas(replica1="down")
    replicas = fake.replica_set(check_every=5)
    assert replicas.healthy() == []
    fake.states["replica1"] = (True, 0.0)
    fake.now = 4.9
    assert replicas.healthy() == []  # not asked again yet
    assert fake.checks == ["replica1"]
    fake.now = 5.0
    assert replicas.healthy() == ["replica1"]
    assert replicas.healthy() == ["replica1"]
    assert fake.checks == ["replica1", "replica1"]


def test_a_replica_that_catches_up_is_used_again():
    fake = FakeReplicas(replica1=(True, 11.0))
    replicas = fake.replica_set(max_lag=10, check_every=1)
    assert replicas.healthy() == []
    fake.states["replica1"], fake.now = (True, 0.2), 1.0
    assert replicas.healthy() == ["replica1"]


def test_a_replica_marked_down_is_skipped_until_its_next_check():
    fake = FakeReplicas(replica1=(True, 0.0))
    replicas = fake.replica_set(check_every=5)
    assert replicas.healthy() == ["replica1"]
    replicas.mark_down("replica1")
    assert replicas.healthy() == []
    fake.now = 5.0
    assert replicas.healthy() == ["replica1"]


def test_a_replica_going_out_of_use_and_back_is_logged_once_each_way(caplog):
    fake = FakeReplicas(replica1="down")
    replicas = fake.replica_set(check_every=1)
    for second in range(3):
        fake.now = second
        replicas.healthy()
    fake.states["replica1"] = (True, 0.5)
    for second in range(3, 6):
        fake.now = second
        replicas.healthy()
    assert len(fake.checks) == 6
    assert [r.getMessage() for r in caplog.records] == [
        "replica replica1 is skipped: connection refused",
        "replica replica1 is used again (lag 0.5 s)",
    ]


# --- which alias for which read --------------------------------------------------------------


@pytest.mark.parametrize("model", [Paper, Topic, PaperTopic, Sighting])
def test_a_reader_requests_catalogue_reads_go_to_a_replica(model):
    replica_router, _ = routed(replica1=(True, 0.0))
    with reader_reads():
        assert replica_router.db_for_read(model) == "replica1"


@pytest.mark.parametrize("model", [User, Session, SavedSearch, LogEntry, IngestRun])
def test_accounts_sessions_saved_searches_admin_and_ingest_read_from_the_primary(model):
    replica_router, _ = routed(replica1=(True, 0.0))
    with reader_reads():
        assert replica_router.db_for_read(model) == PRIMARY


@pytest.mark.parametrize("model", [Paper, User, SavedSearch, IngestRun])
def test_writes_go_to_the_primary(model):
    replica_router, _ = routed(replica1=(True, 0.0))
    with reader_reads():
        assert replica_router.db_for_write(model) == PRIMARY


def test_reads_outside_a_reader_request_go_to_the_primary():
    """Celery tasks, ingest, management commands and unmarked requests."""
    replica_router, fake = routed(replica1=(True, 0.0))
    assert replica_router.db_for_read(Paper) == PRIMARY
    with reader_reads(eligible=False):
        assert replica_router.db_for_read(Paper) == PRIMARY
    assert fake.checks == []


def test_one_request_keeps_the_replica_it_picked_and_checks_once():
    replica_router, fake = routed(replica1=(True, 0.0), replica2=(True, 0.0))
    with reader_reads():
        picked = {replica_router.db_for_read(model) for model in (Paper, Topic, Paper)}
    assert len(picked) == 1 and picked <= {"replica1", "replica2"}
    assert sorted(fake.checks) == ["replica1", "replica2"]


def test_requests_spread_over_the_healthy_replicas():
    replica_router, _ = routed(replica1=(True, 0.0), replica2=(True, 0.0), replica3="down")
    picked = set()
    for _ in range(100):
        with reader_reads():
            picked.add(replica_router.db_for_read(Paper))
    assert picked == {"replica1", "replica2"}


def test_with_every_replica_down_or_lagging_reader_reads_go_to_the_primary():
    replica_router, _ = routed(replica1="down", replica2=(True, 60.0))
    with reader_reads():
        assert replica_router.db_for_read(Paper) == PRIMARY


def test_migrations_run_on_the_primary_only():
    replica_router, _ = routed(replica1=(True, 0.0))
    assert replica_router.allow_migrate(PRIMARY, "catalogue", "paper") is True
    assert replica_router.allow_migrate("replica1", "catalogue", "paper") is False


def test_without_replicas_the_router_leaves_every_decision_to_django():
    replica_router = ReplicaRouter(ReplicaSet(aliases=[], max_lag=10, check_every=5))
    with reader_reads():
        assert replica_router.db_for_read(Paper) is None
    assert replica_router.db_for_write(Paper) is None
    assert replica_router.allow_migrate("default", "catalogue") is None
    assert replica_router.allow_relation(Paper(), User()) is None


def test_the_settings_install_the_router_without_replicas():
    assert any(isinstance(r, ReplicaRouter) for r in router.routers)
    assert router.db_for_read(Paper) == "default"


# --- requests: the middleware marks reader pages ---------------------------------------------


class RecordingRouter(ReplicaRouter):
    """Says which alias it would pick, then lets the test database answer (None)."""

    def __init__(self, replicas, fail_on_replica=False):
        super().__init__(replicas)
        self.picks: list[tuple[str, str]] = []
        self.fail_on_replica = fail_on_replica

    def db_for_read(self, model, **hints):
        alias = super().db_for_read(model, **hints)
        self.picks.append((model._meta.model_name, alias))
        if self.fail_on_replica and alias != PRIMARY:
            raise OperationalError("server closed the connection unexpectedly")
        return None

    def aliases(self, model_name: str) -> set[str]:
        return {alias for name, alias in self.picks if name == model_name}

    def catalogue_aliases(self) -> set[str]:
        """Where the catalogue's public data (papers, topics …) was read from."""
        public = {name for _, name in REPLICA_MODELS}
        return {alias for name, alias in self.picks if name in public}


@pytest.fixture
def recording(monkeypatch, settings):
    """The project's router replaced by a recorder over one healthy fake replica."""
    settings.DATABASE_REPLICAS = ["replica1"]
    fake = FakeReplicas(replica1=(True, 0.0))
    recorder = RecordingRouter(fake.replica_set())
    monkeypatch.setattr(router, "routers", [recorder])
    return recorder


@pytest.fixture
def paper(db):
    return Paper.objects.create(
        arxiv_id="2401.00001", title="Linear attention at scale", published_on=dt.date(2025, 1, 2)
    )


READER_PAGES = [
    "/",
    "/?q=attention",
    "/papers/2401.00001/",
    "/papers/daily/2025-01-02/",
    "/topics/",
    "/feed/",
    "/api/papers?q=attention",
]


@pytest.mark.django_db
@pytest.mark.parametrize("url", READER_PAGES)
def test_reader_pages_read_the_catalogue_from_the_replica(client, recording, paper, url):
    assert client.get(url).status_code == 200
    assert recording.catalogue_aliases() == {"replica1"}


@pytest.mark.django_db
def test_a_signed_in_readers_page_reads_papers_from_the_replica_and_their_account_from_the_primary(
    client, recording, paper
):
    user = User.objects.create_user("ada", "ada@example.org", "a long passphrase")
    client.force_login(user)
    assert client.get("/?q=attention").status_code == 200
    assert recording.aliases("paper") == {"replica1"}
    assert recording.aliases("session") == {PRIMARY}
    assert recording.aliases("user") == {PRIMARY}


@pytest.mark.django_db
def test_saved_searches_and_the_admin_read_from_the_primary(admin_client, recording, paper):
    assert admin_client.get(reverse("saved-list")).status_code == 200
    assert admin_client.get("/admin/catalogue/paper/").status_code == 200
    assert admin_client.get(f"/admin/catalogue/paper/{paper.pk}/change/").status_code == 200
    assert {alias for _, alias in recording.picks} == {PRIMARY}


@pytest.mark.django_db
def test_after_a_write_the_client_reads_from_the_primary_for_the_lag_bound(
    client, recording, paper, settings
):
    settings.DATABASE_REPLICA_MAX_LAG, settings.DATABASE_REPLICA_CHECK_SECONDS = 10, 5
    user = User.objects.create_user("ada", "ada@example.org", "a long passphrase")
    client.force_login(user)
    response = client.post(reverse("saved-create"), {"query": "q=attention", "name": "Attn"})
    assert response.status_code == 302
    cookie = response.cookies[PRIMARY_READS_COOKIE]
    assert cookie["max-age"] == 15 and cookie["httponly"]
    recording.picks.clear()
    assert client.get("/papers/2401.00001/").status_code == 200
    assert recording.aliases("paper") == {PRIMARY}
    assert [s.name for s in SavedSearch.objects.all()] == ["Attn"]


@pytest.mark.django_db
def test_without_replicas_a_write_sets_no_cookie(client, settings):
    assert settings.DATABASE_REPLICAS == []
    response = client.post(reverse("login"), {"username": "nobody", "password": "x"})
    assert PRIMARY_READS_COOKIE not in response.cookies


@pytest.mark.django_db
def test_a_replica_failing_a_request_is_skipped_and_the_page_answered_from_the_primary(
    client, monkeypatch, settings, paper
):
    settings.DATABASE_REPLICAS = ["replica1"]
    fake = FakeReplicas(replica1=(True, 0.0))
    recorder = RecordingRouter(fake.replica_set(), fail_on_replica=True)
    monkeypatch.setattr(router, "routers", [recorder])
    response = client.get("/papers/2401.00001/")
    assert response.status_code == 200
    assert b"Linear attention at scale" in response.content
    assert recorder.aliases("paper") == {"replica1", PRIMARY}
    recorder.picks.clear()
    assert client.get("/papers/2401.00001/").status_code == 200  # marked down: not tried
    assert recorder.aliases("paper") == {PRIMARY}


def test_the_middleware_is_the_innermost(settings):
    """Answering again from the primary re-runs the view, not other middleware."""
    assert settings.MIDDLEWARE[-1] == (
        f"{ReplicaReadsMiddleware.__module__}.{ReplicaReadsMiddleware.__name__}"
    )
