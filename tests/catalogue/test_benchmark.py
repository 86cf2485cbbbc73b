"""``bench_site``: a smoke run on a tiny corpus, the percentile it reports and the
floor of a relevance-ordered class."""

from __future__ import annotations

import datetime as dt
import io
import os
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalogue.models import Paper
from tests.bench import benchmark
from tests.bench.commands import command


def test_percentile_is_nearest_rank():
    samples = [float(i) for i in range(1, 31)]
    assert benchmark.percentile(samples, 50) == 15
    assert benchmark.percentile(samples, 95) == 29
    assert benchmark.percentile(samples, 99) == 30
    assert benchmark.percentile([7.0], 99) == 7


def test_a_small_benchmark_runs_every_query_class_without_errors(tmp_path):
    out, report = io.StringIO(), tmp_path / "benchmarks.md"
    call_command(
        command("bench_site"),
        "--sizes", "300", "--requests", "2", "--warmups", "1", "--duration", "1",
        "--workers", "2", "--db-name", f"catalogue_benchtest_{os.getpid()}",
        "--cache-dir", str(tmp_path), "--output", str(report),
        stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    printed = out.getvalue()
    rows = [line for line in printed.splitlines() if line.startswith("| ")]
    names = ["rare word", "common word", "phrase", "common phrase", "phrase + dates",
             "top of a month", "trending", "topic", "author", "page 50, common word",
             "JSON API, common word", "keyword mode, two words", "hybrid, two words",
             "semantic, two words", "semantic + dates", "more like this"]  # fmt: skip
    for name in names:
        row = next(r for r in rows if r.startswith(f"| {name} |"))
        assert row.rstrip().endswith("| 0 |"), row  # the errors column
    throughput = [r for r in rows if r.startswith(("| 8 |", "| 32 |"))]
    assert len(throughput) == 2 and all(r.rstrip().endswith("| 0 |") for r in throughput)
    text = report.read_text()
    assert "## Machine" in text and "PostgreSQL" in text and "### 300 papers" in text
    assert re.search(
        r"Reference at the same moment .*: [\d,]+ rows/s, so ingest ran at [\d.]+x", text
    )
    assert re.search(r"Embeddings \(`manage.py embed`.*\): 300 papers in [\d.]+ s", text)
    assert not any(benchmark.NO_EMBEDDINGS in row for row in rows)  # 300 <= --embed-up-to
    assert re.search(r"estimate of the papers: [\d,]+ rows, so every count and facet is", text)


@pytest.mark.django_db
def test_the_floor_of_a_relevance_class_computes_its_ranking_afresh_and_loads_its_papers(
    settings,
):
    settings.SUMMARY_CACHE_SECONDS = 120  # as in production: the floor turns it off itself
    for key, title in [("2401.00001", "Linear attention"), ("2401.00002", "Attention sinks")]:
        Paper.objects.create(
            arxiv_id=key, title=title, abstract="We study linear models of attention.",
            published_on=dt.date(2025, 1, 1),
        )  # fmt: skip
    query = benchmark.QueryClass("hybrid", "/", {"q": "linear attention"})
    page = benchmark.relevance_page(query)
    for _ in range(2):  # the second time too: nothing of the ranking is cached
        with CaptureQueriesContext(connection) as captured:
            papers = page()
        statements = [q["sql"] for q in captured.captured_queries]
        assert [p.arxiv_id for p in papers] == ["2401.00001", "2401.00002"]
        assert any("phraseto_tsquery" in sql for sql in statements)  # the query parsed
        assert any("ts_rank_cd" in sql for sql in statements)  # the keyword ranking
        assert any("<=>" in sql for sql in statements)  # the nearest-neighbour scan
        assert '"catalogue_paper"."id" IN' in statements[-1]  # the page's papers, by id


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
