"""The embedded services: found when they run, started when they do not."""

import shutil
import socket
import subprocess
import time

import psycopg
import pytest
import redis

from catalogue import embedded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_shared_redis(tmp_path, monkeypatch):
    """Pretend nothing answers on the shared port; keep the private server in tmp_path."""
    monkeypatch.setattr(embedded, "SHARED_REDIS", ("127.0.0.1", free_port()))
    monkeypatch.setattr(embedded, "REDIS_DIR", tmp_path / "redis")
    yield tmp_path / "redis"
    embedded.stop_redis()


@pytest.fixture
def shared_redis(tmp_path, monkeypatch):
    """A Redis answering on a TCP port, standing in for the one on 127.0.0.1:6379."""
    port = free_port()
    server = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not embedded._answers_ping("127.0.0.1", port):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    monkeypatch.setattr(embedded, "SHARED_REDIS", ("127.0.0.1", port))
    monkeypatch.setattr(embedded, "REDIS_DIR", tmp_path / "redis")
    yield port
    server.terminate()
    server.wait(10)


def test_private_redis_is_started_when_none_answers_and_reused_after(no_shared_redis):
    url = embedded.redis_url()
    assert url == f"redis+socket://{no_shared_redis / 'redis.sock'}"
    client = redis.Redis(unix_socket_path=str(no_shared_redis / "redis.sock"))
    client.set("catalogue-test", "kept")
    assert embedded.redis_url() == url  # the next process finds the same server
    assert client.get("catalogue-test") == b"kept"
    assert embedded.stop_redis() is True
    assert embedded._private_redis_answers() is False


def test_shared_redis_is_used_when_it_answers(shared_redis):
    assert embedded.redis_url() == f"redis://127.0.0.1:{shared_redis}/0"
    assert not (embedded.REDIS_DIR / "redis.sock").exists()  # no private server started


def test_embedded_postgres_url_reaches_a_postgresql_18_server_with_the_catalogue_database():
    url = embedded.postgres_url()
    assert "/catalogue?host=" in url
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        database = conn.execute("SELECT current_database()").fetchone()[0]
    assert version.startswith("18.")
    assert database == "catalogue"


def test_embedded_postgres_runs_with_the_catalogues_settings():
    with psycopg.connect(embedded.postgres_url()) as conn:
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()[0] for name in embedded.tuned_settings()
        }
        pending = conn.execute("SELECT count(*) FROM pg_settings WHERE pending_restart").fetchone()
    expected = embedded.tuned_settings()
    # SHOW prints sizes in the largest whole unit (1024MB is 1GB): compare in megabytes.
    assert {k: _megabytes(v) for k, v in shown.items()} == {
        k: _megabytes(v) for k, v in expected.items()
    }
    assert pending[0] == 0


def _megabytes(value: str) -> str:
    units = {"kB": 1 / 1024, "MB": 1, "GB": 1024, "TB": 1024 * 1024}
    for unit, factor in units.items():
        if value.endswith(unit) and value[: -len(unit)].isdigit():
            return f"{int(value[: -len(unit)]) * factor:g}MB"
    return value
