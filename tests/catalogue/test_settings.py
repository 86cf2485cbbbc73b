"""Settings come from the environment and fail loudly on bad values."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

from catalogue.dburl import database_from_url
from catalogue.env import ConfigError, env_bool, env_int, env_url


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


def test_malformed_boolean_names_the_variable(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ConfigError, match="DEBUG must be a boolean"):
        env_bool("DEBUG")


def test_malformed_integer_names_the_variable(monkeypatch):
    monkeypatch.setenv("INGEST_BATCH_SIZE", "many")
    with pytest.raises(ConfigError, match="INGEST_BATCH_SIZE must be an integer"):
        env_int("INGEST_BATCH_SIZE", 10)


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
