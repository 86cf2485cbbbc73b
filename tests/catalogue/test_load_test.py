"""The load test's tooling (``load_test``): its URLs are new and varied, the sweep's
deep and wide, and a tiny sweep runs through gunicorn without errors."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections import Counter
from itertools import islice
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command

from tests.bench import corpus
from tests.bench.commands import command, load_test
from tests.bench.loadtest import report, workload
from tests.bench.loadtest.report import Request
from tests.bench.loadtest.vocabulary import read_vocabulary


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    corpus.write_corpus(path, 400)
    return path


@pytest.fixture(scope="module")
def vocabulary(corpus_file):
    return read_vocabulary(corpus_file)


def test_vocabulary_comes_from_the_corpus(vocabulary, corpus_file):
    assert vocabulary.sampled == vocabulary.papers == 400
    lines = corpus_file.read_text().splitlines()
    assert vocabulary.paper_ids == [json.loads(line)["id"] for line in lines]
    assert vocabulary.common and vocabulary.rare and vocabulary.phrases and vocabulary.surnames
    assert vocabulary.first_day < vocabulary.last_day <= corpus.END
    assert not set(vocabulary.common) & corpus.STOP_WORDS  # search would ignore them


def test_the_stream_never_repeats_a_url_and_keeps_the_mix(vocabulary):
    # As if the 400 sampled papers were a sample of 100,000: pages of the whole list reach 400.
    vocabulary = dataclasses.replace(vocabulary, papers=100_000)
    urls = list(islice(workload.distinct_urls(vocabulary, seed=1), 3_000))
    assert len({url for _, url in urls}) == len(urls)
    shares = Counter(name for name, _ in urls)
    classes = workload.Mix(vocabulary, None).classes()
    total_weight = sum(weight for weight, _ in classes.values())
    for name, (weight, _) in classes.items():
        expected = len(urls) * weight / total_weight
        assert 0.65 * expected < shares[name] < 1.35 * expected, name


def test_a_class_out_of_new_urls_leaves_the_mix_and_the_stream_goes_on(vocabulary):
    # 400 papers have 400 paper pages: far fewer than a tenth of 20,000 URLs.
    urls = list(islice(workload.distinct_urls(vocabulary, seed=2), 20_000))
    assert len({url for _, url in urls}) == len(urls)
    assert Counter(name for name, _ in urls)["paper page"] <= 400
    assert urls[-1][0] != "paper page"


def test_the_stream_is_reproducible_from_its_seed(vocabulary):
    first = list(islice(workload.distinct_urls(vocabulary, seed=7), 50))
    assert first == list(islice(workload.distinct_urls(vocabulary, seed=7), 50))
    assert first != list(islice(workload.distinct_urls(vocabulary, seed=8), 50))


def test_the_sweep_goes_deep_and_wide(vocabulary):
    assert len(workload.sweep_urls(vocabulary, days=3, weeks=2, months=2)) == 46 + 7
    urls = workload.sweep_urls(vocabulary, days=10, weeks=4)
    pages = {int(parse_qs(urlsplit(u).query).get("page", ["0"])[0]) for _, u in urls}
    assert {400, 401, 4_000, 40_000} <= pages
    ranges = [u for kind, u in urls if kind.startswith("every date")]
    assert all("since=1900-01-01" in u and "until=2100-12-31" in u for u in ranges)
    kinds = Counter(kind for kind, _ in urls)
    assert kinds["day pages"] == 10 and kinds["week pages"] == 4
    first, last = vocabulary.first_day, vocabulary.last_day
    assert kinds["month pages"] == (last.year - first.year) * 12 + last.month - first.month + 1


def test_tables_count_failures_and_server_errors_apart():
    requests = [Request("a", 10.0, 200), Request("a", 30.0, 404), Request("b", 20.0, 500)]
    load = report.load_table(requests, seconds=2)
    assert "| a | 2 | 1 | 0 | 1.0 | 10 | 30 | 30 | 30 |" in load
    assert "| **all** | 3 | 2 | 0 | 1.5 |" in load
    sweep = report.sweep_table([*requests, Request("b", 5.0, 0)])
    assert "| b | 2 | 2 | 0: 1, 500: 1 |" in sweep
    assert report.errors(requests) == 1


def test_a_tiny_load_test_and_sweep_run_without_errors_and_append_to_the_docs(tmp_path):
    out, docs = io.StringIO(), tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nEarlier figures.\n")
    call_command(
        command("load_test"), "--users", "2", "--duration", "3",
        "--papers", "300", "--workers", "2", "--sweep-concurrency", "2",
        "--sweep-days", "3", "--sweep-weeks", "2", "--sweep-months", "2",
        "--db-name", f"catalogue_loadtest_{os.getpid()}", "--drop-db",
        "--cache-dir", str(tmp_path), "--output", str(docs),
        stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    overall = [line for line in out.getvalue().splitlines() if line.startswith("| **all** |")]
    assert len(overall) == 3  # locust, then the sweep in sequence, then 2 at a time
    load_requests, failures, cache_hits = overall[0].split(" | ")[1:4]
    assert int(load_requests.replace(",", "")) > 0 and failures == "0" and cache_hits == "0"
    requests, errors = overall[1].split(" | ")[1:3]
    assert int(requests.replace(",", "")) == 53 and errors == "0"  # 46 deep and wide, 7 dated
    written = docs.read_text()
    assert written.startswith("# Benchmarks\n\nEarlier figures.\n")  # appended, not replaced
    assert "load test and crawler sweep" in written and "Sweep, 2 at a time" in written
    assert "Load test: 300 papers, 2 users" in written


def test_the_load_tests_urls_leave_out_what_the_warm_up_requested(vocabulary):
    """The warm-up's pages are in the page cache before the readers come: a reader's request
    of one was counted a cache hit (a stream of a random seed held the warm-up's month page)."""
    warm = load_test.WARM_LIST_URL
    seed = next(s for s in range(1000) if _within(warm, vocabulary, s, 300))
    urls = load_test.load_urls(vocabulary, seed, 300, warmed={warm, "/?q=x&mode=semantic"})
    assert len(urls) == 300 and len({url for _, url in urls}) == 300
    assert warm not in {url for _, url in urls}


def _within(url: str, vocabulary, seed: int, count: int) -> bool:
    return url in {u for _, u in islice(workload.distinct_urls(vocabulary, seed), count)}
