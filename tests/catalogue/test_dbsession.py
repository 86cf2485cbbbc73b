"""What every database connection sets as it opens (catalogue.dbsession)."""

from __future__ import annotations

import pytest
from django.db import connection, connections

pytestmark = pytest.mark.django_db


def shown(conn, name: str) -> str:
    with conn.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


def test_connections_scan_hnsw_iteratively_and_plan_no_parallel_workers():
    assert shown(connection, "hnsw.iterative_scan") == "relaxed_order"
    assert shown(connection, "hnsw.ef_search") == "100"
    assert shown(connection, "max_parallel_workers_per_gather") == "0"


@pytest.mark.parametrize(("workers", "expected"), [(3, "3"), (-1, None)])
def test_parallel_workers_are_what_the_setting_says_or_the_servers_own(settings, workers, expected):
    settings.DATABASE_PARALLEL_WORKERS = workers
    opened = connections.create_connection("default")  # a new one: connection_created fires
    try:
        with opened.cursor() as cursor:
            cursor.execute(
                "SELECT reset_val FROM pg_settings WHERE name = %s",
                ["max_parallel_workers_per_gather"],
            )
            (server_default,) = cursor.fetchone()
        assert shown(opened, "max_parallel_workers_per_gather") == (expected or server_default)
        assert shown(opened, "hnsw.iterative_scan") == "relaxed_order"  # set either way
    finally:
        opened.close()
