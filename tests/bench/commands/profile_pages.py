"""``profile_pages``: where an uncached reader page's time goes, per page class.

Draws ``--per-class`` distinct new URLs of each page class of the load test
(``tests.bench.loadtest.workload.Mix``, words and ids from the benchmark corpus), requests each
once in this process through Django's test client with the page and summary caches off, and
prints per class: p50/p95 wall time and the medians of SQL (time, queries, slowest query),
template rendering, the rest, and the list view's summary, highlight and topic steps
(``tests.bench.loadtest.profiling``), then the ``--slowest`` requests. One more URL per class
runs first, untimed (imports, templates, the connection). ``--cprofile``: then the URLs of one
class (default: the slowest p50) again under cProfile, its top functions by cumulative and own
time (``--cprofile-out``: the profile saved for pstats or snakeviz), with a hybrid search's
neighbours by meaning found on the request's own thread (cProfile sees one thread;
``SEARCH_ALONGSIDE``). The timed requests find them as production does: beside the keyword
matches, on another thread, whose SQL the SQL column does not count (its wait is "rest").

Run it on a benchmark catalogue as production runs (DEBUG=0), e.g. on ``make load``'s:
``DATABASE_URL=…/catalogue_load_100000 DEBUG=0 HTTPS_ONLY=0 SECRET_KEY=… manage.py
profile_pages --corpus .data/bench/corpus-100000-seed0-….jsonl``.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import statistics
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test import Client, override_settings

from tests.bench import benchmark
from tests.bench.loadtest import profiling, workload
from tests.bench.loadtest.vocabulary import read_vocabulary

HOST = "127.0.0.1"


class Command(BaseCommand):
    help = "Profile uncached reader pages per page class: SQL, rendering and the rest."

    def add_arguments(self, parser):
        parser.add_argument("--per-class", type=int, default=30, help="timed URLs per class")
        parser.add_argument("--corpus", type=Path, help="the corpus (JSON lines) to draw from")
        parser.add_argument("--papers", type=int, default=100_000, help="finds the corpus")
        parser.add_argument("--cache-dir", type=Path, default=settings.BASE_DIR / ".data/bench")
        parser.add_argument("--seed", type=int, default=0, help="URL seed")
        parser.add_argument("--classes", nargs="+", help="only these page classes")
        parser.add_argument(
            "--cprofile", nargs="?", const="slowest", help="profile a class (default: slowest)"
        )
        parser.add_argument("--slowest", type=int, default=10, help="slowest requests listed")
        parser.add_argument("--top", type=int, default=30, help="functions --cprofile lists")
        parser.add_argument("--cprofile-out", type=Path, help="also save the profile (pstats)")

    def handle(self, *args, **options):
        urls = mix_urls(
            self._corpus(options), options["seed"], options["per_class"], options["classes"]
        )
        self._note(f"load average before: {_load()}; DEBUG={settings.DEBUG}")
        with override_settings(**benchmark.CACHES_OFF):
            client = Client(raise_request_exception=False)
            samples = self._run(client, urls)
            self.stdout.write(profiling.table(samples) + "\n\n" + profiling.LEGEND + "\n\n")
            self.stdout.write(profiling.slowest(samples, options["slowest"]) + "\n")
            self._note(f"load average after: {_load()}")
            if options["cprofile"]:
                kind = options["cprofile"]
                if kind == "slowest":
                    kind = _slowest(samples)
                self._profile(client, kind, urls[kind][1:], options)

    def _corpus(self, options) -> Path:
        if options["corpus"]:
            return options["corpus"]
        found = sorted(options["cache_dir"].glob(f"corpus-{options['papers']}-seed0-*.jsonl"))
        if not found:
            raise CommandError(f"no corpus of {options['papers']} papers in "
                               f"{options['cache_dir']}: give --corpus")  # fmt: skip
        return found[-1]

    def _run(self, client: Client, urls: dict[str, list[str]]) -> list[profiling.Sample]:
        """The first URL of each class untimed, then the rest, the classes taking turns (so
        a busy moment of a shared machine spreads over all of them)."""
        for class_urls in urls.values():
            client.get(class_urls[0], **self._extra())
        samples = []
        for turn in range(1, max(len(u) for u in urls.values())):
            for kind, class_urls in urls.items():
                if turn < len(class_urls):
                    url = class_urls[turn]
                    benchmark.forget_queries()  # a URL of another class may share its words
                    samples.append(profiling.measure(client, kind, url, **self._extra()))
        return samples

    def _profile(self, client: Client, kind: str, urls: list[str], options) -> None:
        profiler = cProfile.Profile()
        with override_settings(SEARCH_ALONGSIDE=False):  # every function on this thread
            profiler.enable()
            for url in urls:
                benchmark.forget_queries()  # timed above: profiled as new queries, embedded again
                client.get(url, **self._extra())
            profiler.disable()
        if options["cprofile_out"]:
            profiler.dump_stats(options["cprofile_out"])
        for order in ("cumulative", "tottime"):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(options["top"])
            self.stdout.write(f"\ncProfile of {len(urls)} '{kind}' requests, by {order}:\n")
            self.stdout.write(_trimmed(text.getvalue()))

    def _extra(self) -> dict:
        return {"HTTP_HOST": HOST, "secure": settings.SECURE_SSL_REDIRECT}

    def _note(self, message: str) -> None:
        self.stderr.write(message)


def mix_urls(corpus: Path, seed: int, per_class: int, classes=None) -> dict[str, list[str]]:
    """{page class: its URLs}: ``per_class`` to time and one more first, to warm up (of the
    load test's mix, ``workload.urls_per_class``); ``classes``: only these."""
    urls = workload.urls_per_class(read_vocabulary(corpus), seed, per_class + 1)
    if not classes:
        return urls
    unknown = set(classes) - set(urls)
    if unknown:
        raise CommandError(f"unknown classes {sorted(unknown)}; known: {sorted(urls)}")
    return {kind: urls[kind] for kind in classes}


def _slowest(samples: list[profiling.Sample]) -> str:
    kinds = {s.kind for s in samples}
    return max(kinds, key=lambda k: statistics.median(s.total_ms for s in samples if s.kind == k))


def _trimmed(stats: str) -> str:
    """pstats' table without its preamble of blank lines."""
    return stats.strip("\n") + "\n"


def _load() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())
