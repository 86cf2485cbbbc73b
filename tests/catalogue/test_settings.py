"""Settings come from the environment and fail loudly on bad values."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

from catalogue.dburl import database_from_url
from catalogue.env import ConfigError, env_bool, env_float, env_int, env_url


def run_check(**env) -> subprocess.CompletedProcess:
    """``manage.py check`` in a fresh process with extra environment variables."""
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_a_real_secret_key():
    result = run_check(DEBUG="0", ALLOWED_HOSTS="example.org", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_starts_with_a_real_secret_key():
    result = run_check(DEBUG="0", ALLOWED_HOSTS="example.org", SECRET_KEY="x" * 50)
    assert result.returncode == 0, result.stderr


def test_embedding_backfill_without_chains_is_refused_at_start_up():
    result = run_check(EMBEDDING_CHAINS="0")
    assert result.returncode != 0
    assert "EMBEDDING_CHAINS must be at least 1, got 0" in result.stderr


def test_a_negative_interval_between_fetches_is_refused_at_start_up():
    result = run_check(INGEST_MIN_INTERVAL="-1")
    assert result.returncode != 0
    assert "INGEST_MIN_INTERVAL must be 0 or more, got -1.0" in result.stderr


def test_malformed_boolean_names_the_variable(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ConfigError, match="DEBUG must be a boolean"):
        env_bool("DEBUG")


@pytest.mark.parametrize(
    ("read", "name", "raw", "message"),
    [
        (env_int, "INGEST_BATCH_SIZE", "many", "INGEST_BATCH_SIZE must be an integer"),
        (
            env_float,
            "INGEST_MIN_INTERVAL",
            "a second",
            "INGEST_MIN_INTERVAL must be a number, got 'a second'",
        ),
    ],
)
def test_malformed_number_names_the_variable(monkeypatch, read, name, raw, message):
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigError, match=message):
        read(name, 10)


def test_database_url_of_another_kind_is_refused_at_start_up():
    result = run_check(DATABASE_URL="mysql://root@localhost/catalogue")
    assert result.returncode != 0
    assert "DATABASE_URL must start with one of postgres://, postgresql://" in result.stderr


def test_url_scheme_is_checked(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "http://localhost:6379")
    with pytest.raises(ConfigError, match="REDIS_URL"):
        env_url("REDIS_URL", ("redis",))


def test_tcp_database_url_becomes_a_databases_entry():
    entry = database_from_url("postgresql://cat:s%40cret@db.example.org:6543/papers")
    assert (entry["HOST"], entry["PORT"], entry["NAME"]) == ("db.example.org", "6543", "papers")
    assert (entry["USER"], entry["PASSWORD"]) == ("cat", "s@cret")


def test_socket_database_url_becomes_a_databases_entry():
    entry = database_from_url("postgresql://postgres@/catalogue?host=/tmp/pg%20dir&port=5433")
    assert (entry["HOST"], entry["PORT"], entry["NAME"]) == ("/tmp/pg dir", "5433", "catalogue")
    assert entry["OPTIONS"] == {}


def test_database_url_without_a_name_is_refused():
    with pytest.raises(ConfigError, match="must name a database"):
        database_from_url("postgresql://localhost:5432")


def test_a_replica_connection_gives_up_within_seconds_unless_its_url_says_otherwise():
    """A lost replica host answers nothing: without these, a query waits for the kernel's
    retransmissions (15 minutes) before the page is answered from the primary."""
    shown = subprocess.run(
        [sys.executable, "-c", "import django, json; django.setup(); "
         "from django.conf import settings as s; "
         "print(json.dumps([s.DATABASES[a]['OPTIONS'] for a in s.DATABASE_REPLICAS]))"],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "catalogue.settings",
             "DATABASE_REPLICA_URLS": "postgresql://db2/catalogue,"
                                      "postgresql://db3/catalogue?tcp_user_timeout=20000"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    first, second = json.loads(shown.stdout)
    assert first == {
        "connect_timeout": "2",
        "tcp_user_timeout": "5000",
        "keepalives_idle": "5",
        "keepalives_interval": "1",
        "keepalives_count": "3",
    }
    assert second["tcp_user_timeout"] == "20000"
    assert second["connect_timeout"] == "2"
