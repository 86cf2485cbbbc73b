"""``profile_pages`` on a tiny catalogue: a row for every page class, none an error;
and a clock that counts nested phases once."""

from __future__ import annotations

import io
import pstats
import time

import pytest
from django.core.management import call_command

from catalogue.models import Topic
from tests.bench import benchmark, corpus
from tests.bench.commands import command
from tests.bench.loadtest import workload
from tests.bench.loadtest.profiling import PhaseClock


def table_rows(text: str) -> dict[str, list[str]]:
    """A printed table's rows by their first cell (the header row left out)."""
    return {
        cells[0]: cells[1:]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| page class")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }


@pytest.fixture
def tiny_catalogue(tmp_path):
    path = tmp_path / "corpus.jsonl"
    corpus.write_corpus(path, 120)
    call_command("ingest", str(path), "--inline", "--no-progress", stdout=io.StringIO())
    for name, slug, query in benchmark.TOPICS:  # the topic class's URLs name them
        Topic.objects.create(name=name, slug=slug, query=query)
    return path


@pytest.mark.django_db(transaction=True)
def test_it_prints_a_row_per_page_class_with_its_sql_and_rendering(tiny_catalogue):
    out = io.StringIO()
    call_command(
        command("profile_pages"), "--per-class", "2", "--corpus", str(tiny_catalogue),
        stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    per_class, _, slowest = out.getvalue().partition("Each URL requested once")
    rows = table_rows(per_class)
    classes = workload.Mix(None, None).classes()
    assert set(rows) == {*classes, "**all**"}
    assert rows["**all**"][0] == str(2 * len(classes))
    for name, (requests, not_ok, p50, p95, sql, queries, _, render, rest, *_) in rows.items():
        assert requests == "2" or name == "**all**"
        assert not_ok == "0", name  # every page computed, none an error
        assert 0 < float(p50) <= float(p95)
        assert float(queries) >= 1 and float(sql) > 0
        assert float(render) >= 0 and float(rest) >= 0
    assert float(rows["rare word"][7]) > 0  # list pages render a template
    assert float(rows["API"][7]) == 0  # the API renders none
    assert slowest.count("| `/") == 10  # the ten slowest requests, their URLs


def test_the_clock_counts_a_phase_inside_itself_once_and_nested_time_apart():
    clock = PhaseClock()
    with clock.phase("render"):
        time.sleep(0.01)
        with clock.phase("render"), clock.phase("sql"):  # a template inside a template
            time.sleep(0.02)
    assert clock.counts == {"render": 1, "sql": 1}
    assert 0.03 <= clock.inclusive["render"] < 0.05
    assert 0.01 <= clock.exclusive["render"] < 0.02  # without the SQL inside it
    assert 0.02 <= clock.inclusive["sql"] == clock.exclusive["sql"]


@pytest.mark.django_db(transaction=True)
def test_its_profile_embeds_each_search_again_as_a_new_query(tiny_catalogue, tmp_path):
    """The profiled URLs were timed just before: without forgetting their embeddings, the
    profile left the query's embedding (a search's largest cost outside SQL) out."""
    out = tmp_path / "profile.pstats"
    call_command(
        command("profile_pages"), "--per-class", "2", "--corpus", str(tiny_catalogue),
        "--classes", "rare word", "--cprofile", "rare word", "--cprofile-out", str(out),
        stdout=io.StringIO(), stderr=io.StringIO(),
    )  # fmt: skip
    calls = {
        function: calls
        for (path, _, function), (_, calls, *_) in pstats.Stats(str(out)).stats.items()
        if path.endswith("catalogue/embedder.py")
    }
    assert calls.get("embed") == 2  # the two profiled URLs, each embedded once
