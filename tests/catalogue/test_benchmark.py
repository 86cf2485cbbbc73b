"""``bench_site``: a smoke run on a tiny corpus (built, then reused), the percentile it
reports, the floors of each kind of page and the report's section."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import os
import re
import subprocess
import sys
import time

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalogue import embedder
from catalogue.dburl import url_from_settings
from catalogue.models import Paper
from tests.bench import benchmark
from tests.bench.commands import bench_site, command
from tests.bench.loadtest import workload


def test_percentile_is_nearest_rank():
    samples = [float(i) for i in range(1, 31)]
    assert benchmark.percentile(samples, 50) == 15
    assert benchmark.percentile(samples, 95) == 29
    assert benchmark.percentile(samples, 99) == 30
    assert benchmark.percentile([7.0], 99) == 7


def test_the_servers_cpu_per_request_is_the_machines_busy_time_less_the_clients():
    run = benchmark.Throughput(
        concurrency=8, seconds=10.0, completed=500, errors=0, machine_cpu=16.0, client_cpu=6.0
    )
    assert run.server_cpu_ms == pytest.approx(20.0)  # (16 - 6) s over 500 answers
    assert run.capacity(cores=2) == pytest.approx(100.0)  # 2,000 ms of CPU a second / 20
    assert benchmark._cpu_figures(run, cores=2) == "80% | 30% | 20.0 | 100"
    unknown = dataclasses.replace(run, machine_cpu=None)
    assert unknown.server_cpu_ms is None and benchmark._cpu_figures(unknown, 2) == "- | - | - | -"


def test_the_databases_and_gunicorns_cpu_per_request_and_the_databases_ceiling():
    run = benchmark.Throughput(
        concurrency=8, seconds=10.0, completed=500, errors=0, database_cpu=5.0, app_cpu=7.5
    )
    assert (run.database_cpu_ms, run.app_cpu_ms) == (pytest.approx(10.0), pytest.approx(15.0))
    # Two cores spending nothing but the database's 10 ms a request: 200 a second.
    assert benchmark._process_figures(run, cores=2) == "10.0 | 15.0 | 200"
    remote = dataclasses.replace(run, database_cpu=None)
    assert benchmark._process_figures(remote, cores=2) == "- | 15.0 | -"


def test_a_process_trees_cpu_counts_its_children_live_and_exited():
    """A child that burnt 0.3 s and exited (reaped) counts; so does one still running."""
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    before = benchmark.process_tree_cpu(os.getpid())
    subprocess.run([sys.executable, "-c", burn], check=True)
    running = subprocess.Popen([sys.executable, "-c", burn + "\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while benchmark.process_tree_cpu(running.pid) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        after = benchmark.process_tree_cpu(os.getpid())
    finally:
        running.kill()
        running.wait()
    assert after - before >= 0.5  # both children's 0.3 s (this process's own time besides)
    assert benchmark.process_tree_cpu(running.pid) is None  # gone: nothing to read
    assert benchmark.process_tree_cpu(None) is None


def test_the_database_servers_main_process_is_a_backends_parent():
    pid = benchmark.postmaster_pid(url_from_settings(settings.DATABASES["default"]))
    assert pid is not None
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        assert b"postgres" in cmdline.read()


def test_the_machines_busy_time_grows_while_it_works():
    before = benchmark.machine_busy_seconds()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = benchmark.machine_busy_seconds()
    assert before is not None and after - before >= 0.25  # at least this process's 0.3 s


def test_a_small_benchmark_times_new_queries_then_reuses_its_database(tmp_path):
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\n## Earlier figures\n\nKept.\n")
    db_name = f"catalogue_benchtest_{os.getpid()}"
    arguments = [
        "--sizes", "100", "--per-class", "3", "--requests", "2", "--warmups", "1",
        "--workers", "2", "--db-name", db_name, "--cache-dir", str(tmp_path),
        "--output", str(report),
    ]  # fmt: skip
    server_url = url_from_settings(settings.DATABASES["default"], "postgres")
    try:
        built = _bench(*arguments, "--duration", "1", "--keep-db")
        # As a database built before stand-ins existed: no embeddings.
        database_url = url_from_settings(settings.DATABASES["default"], db_name)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM catalogue_paperembedding")
        # (300 words, not the default 20,000: the model embeds ~200 words a second)
        reused = _bench(
            *arguments, "--skip-throughput", "--embed-up-to", "0", "--standin-words", "300"
        )
    finally:
        benchmark.drop_database(server_url, db_name)
    classes = workload.Mix(None, None).classes()
    for printed in (built, reused):
        rows = _class_rows(printed)
        assert set(rows) == set(classes)
        for name, (n, p50, p95, p99, floor, *_, cached_p50, _, sql, errors, url) in rows.items():
            assert n == "3", name  # three distinct URLs, each requested once
            assert 0 < float(p50) <= float(p95) <= float(p99), name
            assert float(floor) > 0 and float(cached_p50) > 0, name
            assert int(sql.split(",")[0]) >= 1 and errors == "0", (name, errors)
            assert url.startswith("`/"), name
    throughput = [r for r in built.splitlines() if r.startswith(("| 8 |", "| 32 |"))]
    assert len(throughput) == 2
    for row in throughput:
        cells = row.strip("| ").split(" | ")
        *_, errors, busy, client, server_ms, capacity, database_ms, app_ms, alone = cells
        assert errors == "0", row
        assert 0 < int(client.rstrip("%")) <= int(busy.rstrip("%")) <= 100, row
        assert float(server_ms) > 0 and float(capacity) > 0, row
        # The database and gunicorn each spent some of the server's CPU, not more than it.
        assert 0 < float(database_ms) < float(server_ms) and float(app_ms) > 0, row
        assert float(alone) > float(capacity), row
    assert "Reused the database" not in built and f"Reused the database `{db_name}`" in reused
    # The built one embedded its papers with the model; the reused one got stand-ins.
    assert re.search(r"Embeddings \(`manage.py embed`.*: 100 papers in", built)
    assert "Papers with an embedding: 100 (" in reused
    assert re.search(
        r"100 of them stand-ins .* Stand-ins made by this run: 100 papers from 300 words", reused
    )
    text = report.read_text()
    assert text.count("<!-- bench_site: begin") == 1  # the second run replaced the first's
    assert text.startswith("# Benchmarks\n") and "## Earlier figures\n\nKept." in text
    assert "### 100 papers" in text and "PostgreSQL" in text and "#### Slowest statement" in text
    assert "Reused the database" in text
    assert re.search(r"estimate of the papers: [\d,]+ rows, so every count and facet is", text)
    # Each run read the database into memory before measuring.
    assert all(re.search(r"OS cache \(`pg_prewarm`, [\d,]+ MB in", run) for run in (built, reused))
    assert all(
        re.search(r"and [\d,]+ MB of them .* into PostgreSQL's buffers", r) for r in (built, reused)
    )


def test_prewarming_reads_every_table_and_index_of_the_database():
    database_url = url_from_settings(settings.DATABASES["default"])
    with psycopg.connect(database_url) as conn:
        (pages,) = conn.execute(
            "SELECT sum(pg_relation_size(c.oid)) / 8192 FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'i', 't', 'm') AND c.relpersistence = 'p'"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
    blocks, seconds, buffered = benchmark.prewarm(database_url)
    assert blocks == pages and blocks > 0 and seconds >= 0
    # The test database fits in the buffers whole: all of it is loaded there too.
    assert buffered == pages


def test_prewarming_loads_the_buffers_with_what_fits_in_its_order():
    """Where the database exceeds the buffers, the relations go in their order (indexes
    first, then the smallest tables), each whole, while they fit; one too large for the room
    left is skipped for smaller ones after it, and empty ones are not asked for."""
    relations = [(1, 30), (2, 50), (3, 20), (4, 5), (5, 0)]
    assert benchmark.buffer_plan(relations, 90) == [1, 2, 4]
    assert benchmark.buffer_plan(relations, 200) == [1, 2, 3, 4]
    assert benchmark.buffer_plan(relations, 10) == [4]


def test_a_benchmark_refuses_to_rebuild_a_database_of_another_size(tmp_path):
    db_name = f"catalogue_benchtest_other_{os.getpid()}"
    server_url = url_from_settings(settings.DATABASES["default"], "postgres")
    database_url = url_from_settings(settings.DATABASES["default"], db_name)
    benchmark.recreate_database(server_url, db_name)
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE catalogue_paper (id int); INSERT INTO catalogue_paper VALUES (1)"
            )
        with pytest.raises(CommandError, match="holds 1 papers, not 300: give --rebuild"):
            _bench("--sizes", "300", "--db-name", db_name, "--cache-dir", str(tmp_path))
        assert benchmark.paper_count(database_url) == 1  # untouched
    finally:
        benchmark.drop_database(server_url, db_name)


def _bench(*arguments: str) -> str:
    out = io.StringIO()
    call_command(command("bench_site"), *arguments, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _class_rows(printed: str) -> dict[str, list[str]]:
    header = next(line for line in printed.splitlines() if line.startswith("| page class |"))
    rows = {}
    for line in printed.partition(header)[2].splitlines()[2:]:  # after the '|---|' line
        if not line.startswith("| "):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_the_section_of_an_earlier_run_is_replaced_and_the_rest_kept():
    first = bench_site.replace_section("# Benchmarks\n\n## Other\n\nfigures\n", "## Run 1\n")
    assert first.index("## Run 1") < first.index("## Other") and "figures" in first
    second = bench_site.replace_section(first, "## Run 2\n")
    assert "Run 1" not in second and "## Run 2" in second and "## Other\n\nfigures" in second
    assert second.count("bench_site: begin") == second.count("bench_site: end") == 1


def test_window_pages_start_from_their_days():
    d = dt.date
    assert benchmark.window_bounds("/papers/daily/2025-11-27/") == (d(2025, 11, 27),) * 2
    assert benchmark.window_bounds("/papers/week/2025-W48/") == (d(2025, 11, 24), d(2025, 11, 30))
    assert benchmark.window_bounds("/papers/month/2024-02/") == (d(2024, 2, 1), d(2024, 2, 29))


@pytest.mark.django_db
def test_floors_answer_each_kind_of_page_with_its_main_query():
    for number in range(3):
        Paper.objects.create(
            arxiv_id=f"2401.0000{number}", title=f"Linear attention {number}",
            abstract="We study linear models of attention.", published_on=dt.date(2025, 1, 2),
            upvotes=number,
        )  # fmt: skip
    assert benchmark.floor_query(benchmark.Page("/papers/2401.00001/"))().arxiv_id == "2401.00001"
    month = benchmark.floor_query(benchmark.Page("/papers/month/2025-01/"))()
    assert [p.arxiv_id for p in month] == ["2401.00002", "2401.00001", "2401.00000"]  # upvotes
    assert benchmark.floor_query(benchmark.Page("/papers/daily/2025-01-03/"))() == []
    api = benchmark.Page("/api/papers?q=linear&page_size=2")
    assert api.size == 2 and len(benchmark.floor_query(api)()) == 2
    assert len(benchmark.floor_query(benchmark.Page("/feed/?q=attention"))()) == 3
    browse = benchmark.floor_query(benchmark.Page("/?sort=oldest&page=1"))()
    assert [p.arxiv_id for p in browse][:1] == ["2401.00000"]
    with pytest.raises(ValueError, match="invalid parameters"):
        benchmark.floor_query(benchmark.Page("/?since=yesterday"))


@pytest.mark.django_db
def test_the_floor_of_a_relevance_class_computes_its_ranking_afresh_and_loads_its_papers(
    settings, monkeypatch
):
    settings.SUMMARY_CACHE_SECONDS = 120  # as in production: the floor turns it off itself
    settings.QUERY_VECTOR_CACHE_SECONDS = 86_400  # (the floor turns this off too)
    embedded = []
    model = embedder.get_query_embedder()
    monkeypatch.setattr(embedder, "get_query_embedder", lambda: embedded.append(1) or model)
    for key, title in [("2401.00001", "Linear attention"), ("2401.00002", "Attention sinks")]:
        Paper.objects.create(
            arxiv_id=key, title=title, abstract="We study linear models of attention.",
            published_on=dt.date(2025, 1, 1),
        )  # fmt: skip
    page = benchmark.relevance_page(benchmark.Page("/?q=linear+attention"))
    # (Building it counted the matches, which may have embedded the query, or read its vector
    # from Redis where an earlier run left it: only the floor's own calls are counted.)
    embedded.clear()
    for _ in range(2):  # the second time too: nothing of the ranking is cached
        with CaptureQueriesContext(connection) as captured:
            papers = page()
        statements = [q["sql"] for q in captured.captured_queries]
        assert [p.arxiv_id for p in papers] == ["2401.00001", "2401.00002"]
        assert any("phraseto_tsquery" in sql for sql in statements)  # the query parsed
        assert any("ts_rank_cd" in sql for sql in statements)  # the keyword ranking
        assert any("<=>" in sql for sql in statements)  # the nearest-neighbour scan
        assert '"catalogue_paper"."id" IN' in statements[-1]  # the page's papers, by id
    assert len(embedded) == 2  # the query embedded each time, not read from a cache


@pytest.mark.django_db
def test_plans_are_explained_with_the_planner_settings_their_statement_ran_with():
    planner: dict[str, str] = {}
    benchmark._follow_settings("SET LOCAL enable_seqscan = off", planner)
    assert planner == {"enable_seqscan": "off"}
    sql = 'SELECT "id" FROM "catalogue_paper"'
    plan = benchmark.explain(sql, None, planner)
    assert plan.startswith("enable_seqscan = off") and "Seq Scan" not in plan
    no_index = {f"enable_{kind}scan": "off" for kind in ("index", "indexonly", "bitmap")}
    assert "Seq Scan" in benchmark.explain(sql, None, no_index)
    with connection.cursor() as cursor:  # the setting ended with the EXPLAIN
        cursor.execute("SHOW enable_seqscan")
        assert cursor.fetchone()[0] == "on"
    benchmark._follow_settings("RESET enable_seqscan", planner)
    assert planner == {}


def test_the_plan_shown_is_the_slowest_query_s_never_a_setting_s():
    statements = [
        (0.002, 'SELECT "id" FROM "catalogue_paper"', None, {}),
        (0.300, "SET LOCAL enable_indexscan = off", None, {}),  # a busy machine
        (0.010, "WITH m AS (SELECT 1) SELECT * FROM m", None, {"enable_indexscan": "off"}),
        (0.500, "SAVEPOINT s1", None, {}),
    ]
    assert benchmark.slowest_query(statements) == statements[2]
    assert benchmark.slowest_query(statements[1:2]) == (0.0, "", None, {})
