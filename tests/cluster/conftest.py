"""The catalogue on seven test hosts (``make test-cluster``; tests/cluster/netns.py makes them).

    db1    PostgreSQL primary                 work1  celery worker (concurrency 2)
    db2    its streaming replica              work2  celery worker (concurrency 2) and beat
    redis  broker and cache                   web1, web2  gunicorn, reads from db2

Everything is removed when the module's tests end, fail or are interrupted (SIGINT, and
SIGTERM from ``timeout``, end the run as KeyboardInterrupt, which tears fixtures down).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster import netns, services
from tests.cluster.netns import Cluster, Host
from tests.cluster.services import BASE_DIR, Postgres

HOSTS = ["db1", "db2", "redis", "work1", "work2", "web1", "web2"]
ADMIN = ("curator", "a long cluster passphrase")
SETUP_SECONDS = 120
WORKER_CONCURRENCY = 2


@dataclass
class Site:
    cluster: Cluster
    hosts: dict[str, Host]
    primary: Postgres
    replica: Postgres
    env: dict[str, str]  # of a worker or a management command
    webs: dict[str, str]  # host name -> base URL

    def manage(self, *arguments: str, timeout: float = SETUP_SECONDS, **env: str) -> str:
        """``manage.py ARGUMENTS`` from the driver (its traffic goes to the hosts); stdout."""
        done = subprocess.run(
            [sys.executable, "manage.py", *arguments],
            cwd=BASE_DIR,
            env=self.env | env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
        return done.stdout


@contextmanager
def logs_shown_on_failure(cluster: Cluster):
    try:
        yield
    except BaseException:
        print(f"\nLogs of the cluster's processes:\n{cluster.logs_of_every_process()}")
        raise


@pytest.fixture(scope="module")
def site():
    reason = netns.available()
    if reason:
        pytest.skip(reason)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with netns.cluster() as cluster:
            try:
                began = time.monotonic()
                with logs_shown_on_failure(cluster):
                    site = build(cluster)
                print(f"\nseven hosts up, migrated, serving in {time.monotonic() - began:.0f} s")
                yield site
            finally:
                # Teardown is not to be cut short: a second Ctrl-C waits for it.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous)


def build(cluster: Cluster) -> Site:
    hosts = {name: cluster.add_host(name) for name in HOSTS}
    primary = services.start_primary(hosts["db1"], cluster.workdir, cluster.subnet)
    replica = services.start_replica(hosts["db2"], primary, cluster.workdir)
    redis_url = services.start_redis(hosts["redis"], cluster.workdir)
    base = {key: value for key, value in os.environ.items() if key not in _SETTINGS_OF_THE_DRIVER}
    # A chunk's task held unstarted by the lost host is sent again within the test's time.
    env = services.site_env(
        base, DATABASE_URL=primary.url(), REDIS_URL=redis_url, INGEST_RESEND_QUEUED_AFTER="60"
    )
    site = Site(cluster, hosts, primary, replica, env, webs={})
    site.manage("migrate", "-v0")
    site.manage("collectstatic", "--noinput", "-v0")  # DEBUG=0 serves the manifest's files
    username, password = ADMIN
    site.manage("createsuperuser", "--noinput", "--username", username, "--email", "c@example.org",
                DJANGO_SUPERUSER_PASSWORD=password)  # fmt: skip
    # Four runs at once (two hosts, concurrency 2) on a primary of two cores: one writer each
    # (docs/deploy.md: INGEST_WRITERS x worker processes within the primary's cores).
    for name in ("work1", "work2"):
        services.start_worker(hosts[name], env | {"INGEST_WRITERS": "1"}, WORKER_CONCURRENCY)
    services.start_beat(hosts["work2"], env, cluster.workdir)  # the cluster's only beat
    web_env = env | {
        "DATABASE_REPLICA_URLS": replica.url(),
        "DATABASE_REPLICA_CHECK_SECONDS": "1",
        # Room for the curator's check, which pauses the replica's replay (test_cluster.py).
        "DATABASE_REPLICA_MAX_LAG": "60",
        "ALLOWED_HOSTS": ",".join(hosts[name].address for name in ("web1", "web2")),
        # Every request reads the database: no cached page hides which server answered.
        "PAGE_CACHE_SECONDS": "0",
        "SUMMARY_CACHE_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
    }
    for name in ("web1", "web2"):
        site.webs[name] = services.start_web(hosts[name], web_env)
    return site


# Set by the Makefile so that loading Django in the driver starts no embedded server.
_SETTINGS_OF_THE_DRIVER = {"DATABASE_URL", "REDIS_URL", "DATABASE_REPLICA_URLS"}


@pytest.fixture(scope="module")
def corpus() -> Path:
    """The benchmarks' generated snapshot of 100,000 papers, cached in .data/bench."""
    from tests.bench.commands.bench_site import corpus_file

    path, _, _ = corpus_file(100_000, 0, BASE_DIR / ".data" / "bench", sys.stdout, print)
    return path
