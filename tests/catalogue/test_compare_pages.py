"""``compare_pages``: a paired A/B of two revisions' uncached pages, URL by URL."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from tests.bench.commands import command
from tests.bench.commands.compare_pages import Pair, _compare, table
from tests.bench.loadtest import workload

from .test_profile_pages import table_rows, tiny_catalogue  # noqa: F401 (a fixture)


class FakeSide:
    """A worker that answers at once and records what it was asked, in one shared log."""

    def __init__(self, name: str, log: list, ms: float):
        self.name, self.log, self.ms = name, log, ms

    def get(self, url: str) -> dict:
        self.log.append((self.name, url))
        return {"url": url, "status": 200, "ms": self.ms, "sql_ms": self.ms / 2, "queries": 3}


def test_each_url_is_warmed_on_both_sides_and_the_side_timed_first_alternates():
    log: list = []
    base, new = FakeSide("base", log, 10.0), FakeSide("new", log, 8.0)
    urls = {"a": ["/a0", "/a1", "/a2"], "b": ["/b0", "/b1", "/b2"]}
    pairs = _compare(base, new, urls)
    assert [(p.kind, p.url) for p in pairs] == [
        ("a", "/a1"),
        ("b", "/b1"),
        ("a", "/a2"),
        ("b", "/b2"),
    ]
    assert all(p.base["ms"] == 10.0 and p.new["ms"] == 8.0 for p in pairs)
    # Warm-ups of each class's first URL, then per URL: both sides untimed, both timed.
    assert log[:4] == [("base", "/a0"), ("new", "/a0"), ("base", "/b0"), ("new", "/b0")]
    first_turn, second_turn = log[4:12], log[12:20]
    assert first_turn[:4] == [("base", "/a1"), ("new", "/a1"), ("base", "/a1"), ("new", "/a1")]
    assert second_turn[:4] == [("new", "/a2"), ("base", "/a2"), ("new", "/a2"), ("base", "/a2")]


def test_the_table_gives_each_sides_medians_and_the_median_of_the_url_ratios():
    def pair(kind, base_ms, new_ms, status=200):
        answer = {"status": 200, "sql_ms": 1.0, "queries": 1}
        return Pair(
            kind, "/", {**answer, "ms": base_ms}, {**answer, "ms": new_ms, "status": status}
        )

    pairs = [pair("x", 10, 5), pair("x", 20, 20), pair("x", 40, 20, status=500), pair("y", 10, 30)]
    rows = table_rows(table(pairs, "abc123"))
    assert rows["x"] == [
        "3", "20.0", "20.0", "1.0", "1.0", "0.50", "0.50-1.00", "40.0", "20.0", "1"
    ]  # fmt: skip
    assert rows["y"][5] == "3.00"  # one URL: its ratio
    assert rows["**all**"][0] == "4" and rows["**all**"][5] == "0.75"


@pytest.mark.django_db(transaction=True)
def test_it_compares_this_checkout_with_a_revision_class_by_class(tiny_catalogue):  # noqa: F811
    out = io.StringIO()
    call_command(
        command("compare_pages"), "--base", "HEAD", "--per-class", "2",
        "--corpus", str(tiny_catalogue), stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    rows = table_rows(out.getvalue())
    assert set(rows) == {*workload.Mix(None, None).classes(), "**all**"}
    for name, row in rows.items():
        urls, base_ms, new_ms, base_sql, new_sql, ratio, _, base_p95, new_p95, failed = row
        assert int(urls) >= 1 and failed == "0", name  # every page computed on both sides
        assert float(base_ms) > 0 and float(new_ms) > 0 and float(ratio) > 0
        assert float(base_sql) > 0 and float(new_sql) > 0  # each side timed its statements
        assert float(base_p95) >= float(base_ms) and float(new_p95) >= float(new_ms)
    # The same code on both sides, the same URLs: about as fast.
    assert 0.5 < float(rows["**all**"][5]) < 2
