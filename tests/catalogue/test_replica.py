"""Reads from a real streaming replica, and the site without it.

A private primary (tests.private_postgres), a hot standby made of it by pg_basebackup and
streaming from it, and gunicorn with ``DATABASE_REPLICA_URLS`` naming the standby. Pausing the
standby's replay shows which server answered: a paper inserted on the primary meanwhile is a
404 from the replica and a 200 from the primary.
"""

from __future__ import annotations

import re
import time

import httpx
import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.hashers import make_password

from catalogue import embedded
from tests.bench import benchmark
from tests.private_postgres import (
    has_paper,
    insert_paper,
    private_postgres,
    streaming_replica,
    wait_until,
)

DATABASE = "replicated"
MAX_LAG = 6
READER_PAGES = ["/", "/?q=attention", "/topics/", "/feed/", "/api/papers?q=attention"]


def on_replica(replica_url: str, sql: str):
    with psycopg.connect(replica_url, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def pause_after_a_commit(primary_url: str, replica_url: str, arxiv_id: str) -> None:
    """Commit a paper, wait for the replica to replay it, pause the replica's replay."""
    insert_paper(primary_url, arxiv_id)
    wait_until(lambda: has_paper(replica_url, arxiv_id))
    on_replica(replica_url, "SELECT pg_wal_replay_pause()::text")


def site_sessions(replica_url: str) -> int:
    """Connections of the site (not this test's) to the replica's catalogue database."""
    return on_replica(
        replica_url,
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{DATABASE}' "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(primary URL, replica URL, the standby's data directory, the site's base URL)."""
    log = tmp_path_factory.mktemp("replica") / "gunicorn.log"
    with (
        private_postgres("catalogue-replica-", DATABASE) as primary,
        streaming_replica(primary, DATABASE) as replica,
    ):
        env = {
            **primary.env,
            "DATABASE_REPLICA_URLS": replica.url,
            "DATABASE_REPLICA_MAX_LAG": str(MAX_LAG),
            "DATABASE_REPLICA_CHECK_SECONDS": "1",
        }
        # One worker: one process's view of the replica's health.
        with benchmark.gunicorn(env, settings.BASE_DIR, log, workers=1) as url:
            yield primary.url, replica.url, replica.pgdata, url


def sign_up(http: httpx.Client, primary_url: str) -> None:
    """A reader account made on the primary, logged in through the site's form."""
    with psycopg.connect(primary_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth_user (username, password, email, first_name, last_name, "
            "is_superuser, is_staff, is_active, date_joined) "
            "VALUES ('ada', %s, '', '', '', false, false, true, now())",
            [make_password("a long passphrase", hasher="pbkdf2_sha256")],
        )
    token = _csrf(http, "/accounts/login/")
    login = http.post(
        "/accounts/login/",
        data={"username": "ada", "password": "a long passphrase", "csrfmiddlewaretoken": token},
    )
    assert login.status_code == 302, login.text[-500:]


def _csrf(http: httpx.Client, page: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', http.get(page).text)[1]


def test_a_saved_search_is_written_to_the_primary_and_read_back_at_once(cluster):
    primary_url, _, _, url = cluster
    with httpx.Client(base_url=url, timeout=30) as http:
        sign_up(http, primary_url)
        token = _csrf(http, "/saved/new/?query=q%3Dattention")
        saved = http.post(
            "/saved/new/",
            data={"query": "q=attention", "name": "Attention", "csrfmiddlewaretoken": token},
        )
        assert saved.status_code == 302, saved.text[-500:]
        assert "primary_reads" in http.cookies
        assert "Attention" in http.get("/saved/").text
    with psycopg.connect(primary_url, autocommit=True) as conn:
        rows = conn.execute("SELECT name, query FROM catalogue_savedsearch").fetchall()
    assert rows == [("Attention", "q=attention")]


def test_reader_pages_read_the_replica_skip_it_when_it_lags_or_stops(cluster):
    primary_url, replica_url, standby, url = cluster
    assert on_replica(replica_url, "SELECT pg_is_in_recovery()")
    with httpx.Client(base_url=url, timeout=30) as reader:
        insert_paper(primary_url, "2501.00001")
        wait_until(lambda: has_paper(replica_url, "2501.00001"))
        assert reader.get("/papers/2501.00001/").status_code == 200
        assert site_sessions(replica_url) >= 1

        # Replay paused just after a commit: the replica no longer sees what the primary
        # commits, and for MAX_LAG seconds it still counts as current.
        pause_after_a_commit(primary_url, replica_url, "2501.00002")
        insert_paper(primary_url, "2501.00003")
        assert reader.get("/papers/2501.00003/").status_code == 404  # read on the replica
        assert has_paper(primary_url, "2501.00003")

        # Once its last replayed commit is MAX_LAG old, it is skipped: the primary answers.
        began = time.monotonic()
        wait_until(lambda: reader.get("/papers/2501.00003/").status_code == 200, timeout=20)
        assert time.monotonic() - began >= MAX_LAG - 3

        # Caught up again, it serves again.
        on_replica(replica_url, "SELECT pg_wal_replay_resume()::text")
        pause_after_a_commit(primary_url, replica_url, "2501.00004")
        insert_paper(primary_url, "2501.00005")
        wait_until(lambda: reader.get("/papers/2501.00005/").status_code == 404, timeout=MAX_LAG)
        on_replica(replica_url, "SELECT pg_wal_replay_resume()::text")

        # The replica stops under readers: every page still answers, from the primary.
        embedded.pg_ctl(standby, "stop")
        statuses = [reader.get(page).status_code for _ in range(3) for page in READER_PAGES]
        assert set(statuses) == {200}, statuses
        assert reader.get("/papers/2501.00005/").status_code == 200
