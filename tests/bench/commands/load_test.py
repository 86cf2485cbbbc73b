"""``load_test``: a bounded loopback load test and a crawler sweep (``make load``).

On a benchmark catalogue of ``--papers`` synthetic papers (the corpus and database of
``bench_site``: a ``<name>_load_<papers>`` database, built once and reused while it holds
that many papers), served by ``gunicorn -w --workers`` on 127.0.0.1 with ``DEBUG=0``:

1. *Load test*: locust, headless in a child process, ``--users`` users with no think time for
   ``--duration`` seconds over an endless stream of distinct URLs of mixed page classes
   (``tests.bench.loadtest.workload``): new searches only, so the page cache never answers.
   Every request must answer 200.
2. *Sweep*: what a crawler does (deep pages, every-date ranges in every sort, every month,
   week and day page), each URL once in sequence, then all of them again by
   ``--sweep-concurrency`` threads, with the page and summary caches off: every answer is
   computed. No request may answer 5xx or time out.

Prints the tables and appends them to ``docs/benchmarks.md`` (``--no-docs``: print only);
fails when the load test had a failure or the sweep an error.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from catalogue.dburl import url_from_settings
from tests.bench import benchmark, corpus
from tests.bench.commands.bench_site import corpus_file, load_database, run_stage
from tests.bench.loadtest import report, sweep, workload
from tests.bench.loadtest.report import Request
from tests.bench.loadtest.vocabulary import Vocabulary, read_vocabulary

LOCUSTFILE = Path(__file__).resolve().parents[1] / "loadtest" / "locustfile.py"
URLS_PER_USER_SECOND = 25  # prepared URLs: more than a quiet 2-core machine can request
# The cheap list page each worker is warmed up with, before the search that loads the model.
WARM_LIST_URL = "/papers/month/2020-01/"


def load_urls(vocabulary: Vocabulary, seed: int, count: int, warmed: set[str]):
    """The load test's ``count`` distinct (page class, URL) pairs, without the URLs the
    warm-up requested: the page cache holds those, and a reader's first request of one would
    be counted a hit ("/papers/month/2020-01/" in the stream of seed 978439059: 1 hit)."""
    stream = workload.distinct_urls(vocabulary, seed)
    return list(islice(((kind, url) for kind, url in stream if url not in warmed), count))


class Command(BaseCommand):
    help = "Load-test the site under gunicorn with locust, then sweep it as a crawler would."

    def add_arguments(self, parser):
        parser.add_argument("--papers", type=int, default=100_000)
        parser.add_argument("--users", type=int, default=32, help="concurrent locust users")
        parser.add_argument("--duration", type=int, default=60, help="seconds of load")
        parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
        parser.add_argument("--seed", type=int, help="URL stream seed (default: random)")
        parser.add_argument("--corpus-seed", type=int, default=0)
        parser.add_argument("--sweep-concurrency", type=int, default=8)
        parser.add_argument("--sweep-days", type=int, default=366, help="last N day pages")
        parser.add_argument("--sweep-weeks", type=int, default=260, help="last N week pages")
        parser.add_argument("--sweep-months", type=int, help="last N month pages (default: all)")
        parser.add_argument("--skip-load", action="store_true")
        parser.add_argument("--skip-sweep", action="store_true")
        parser.add_argument("--rebuild", action="store_true", help="rebuild the database")
        parser.add_argument("--drop-db", action="store_true", help="drop it at the end")
        parser.add_argument("--db-name", help="default: <name>_load_<papers>")
        parser.add_argument("--cache-dir", type=Path, default=settings.BASE_DIR / ".data/bench")
        parser.add_argument("--output", type=Path, default=settings.BASE_DIR / "docs/benchmarks.md")
        parser.add_argument("--no-docs", action="store_true", help="do not append to --output")

    def handle(self, *args, **options):
        self.options = options
        logging.getLogger("httpx").setLevel(logging.WARNING)
        db = settings.DATABASES["default"]
        db_name = options["db_name"] or f"{db['NAME']}_load_{options['papers']}"
        server_url = url_from_settings(db, "postgres")
        self.env = benchmark.site_env(url_from_settings(db, db_name), settings.REDIS_URL)
        path, _, stats = corpus_file(
            options["papers"], options["corpus_seed"], options["cache_dir"], self.stdout, self._note
        )
        started = dt.datetime.now(dt.UTC)
        sections = []
        with tempfile.TemporaryDirectory(prefix="load-test-") as tmp:
            self.tmp = Path(tmp)
            try:
                self._ensure_database(server_url, db_name, path)
                benchmark.manage(["collectstatic", "--noinput", "-v0"], self.env, settings.BASE_DIR)
                vocabulary = read_vocabulary(path)
                self.warm_url = benchmark.warm_up_url(stats)
                if not options["skip_load"]:
                    sections.append(self._load(vocabulary))
                if not options["skip_sweep"]:
                    sections.append(self._sweep(vocabulary))
            finally:
                if options["drop_db"]:
                    benchmark.drop_database(server_url, db_name)
        if not options["no_docs"]:
            self._append_docs(started, server_url, [text for text, _ in sections])
        failed = [problem for _, problem in sections if problem]
        if failed:
            raise CommandError("; ".join(failed))

    # --- the catalogue ------------------------------------------------------------------------

    def _ensure_database(self, server_url: str, db_name: str, path: Path) -> None:
        """Build the database unless it already holds the corpus (then only migrate it)."""
        papers = self.options["papers"]
        if (
            not self.options["rebuild"]
            and benchmark.paper_count(self.env["DATABASE_URL"]) == papers
        ):
            self._note(f"reusing {db_name} ({papers:,} papers); --rebuild to build it afresh")
            benchmark.manage(["migrate", "-v0"], self.env, settings.BASE_DIR)
            return
        seconds = load_database(server_url, db_name, self.env, path, self._note)
        self._note(f"ingested in {seconds:.0f} s; topics, trending, VACUUM ANALYZE")
        run_stage("prepare", {"today": corpus.END.isoformat()}, self.env, self.tmp)

    def _serve(self, extra_env: dict | None = None, name: str = "gunicorn"):
        env = {**self.env, **(extra_env or {})}
        log = self.tmp / f"{name}.log"
        return benchmark.gunicorn(env, settings.BASE_DIR, log, self.options["workers"])

    def _warm_up(self, base_url: str) -> None:
        """Each worker's imports, templates, connection and embedding model, before timing."""
        with httpx.Client(base_url=base_url, timeout=120) as client:
            benchmark.warm_up(client, WARM_LIST_URL, self.options["workers"])
            benchmark.warm_up(client, self.warm_url, self.options["workers"])

    # --- the load test ------------------------------------------------------------------------

    def _load(self, vocabulary: Vocabulary) -> tuple[str, str]:
        users, duration = self.options["users"], self.options["duration"]
        seed = self.options["seed"]
        seed = random.randrange(1 << 30) if seed is None else seed
        urls_file = self.tmp / "urls.tsv"
        count = max(20_000, users * duration * URLS_PER_USER_SECOND)
        urls = load_urls(vocabulary, seed, count, warmed={WARM_LIST_URL, self.warm_url})
        urls_file.write_text("".join(f"{k}\t{u}\n" for k, u in urls))
        with self._serve(name="load") as base_url:
            self._warm_up(base_url)
            self._note(f"load test: {users} users, {duration} s, URL seed {seed}")
            requests = self._locust(base_url, urls_file, users, duration)
        table = report.load_table(requests, duration)
        failures = sum(r.status != 200 for r in requests)
        hits = sum(r.cache_hit for r in requests)
        self.stdout.write(table + "\n")
        heading = (
            f"Load test: {self.options['papers']:,} papers, {users} users without think time, "
            f"{duration} s, gunicorn -w {self.options['workers']}, URL seed {seed}: "
            f"{len(requests):,} requests, {failures} failures, {hits} page-cache hits, "
            f"{len(requests) / duration:.1f} requests/s."
        )
        problem = f"{failures} load-test requests failed" if failures else ""
        self._show_log_if(problem, "load")
        return f"{heading}\n\n{table}", problem

    def _locust(self, base_url: str, urls_file: Path, users: int, duration: int) -> list[Request]:
        record = self.tmp / "record.json"
        command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{duration}s",
            "--host", base_url, "--only-summary", "--loglevel", "WARNING",
        ]  # fmt: skip
        env = {**os.environ, "LOADTEST_URLS": str(urls_file), "LOADTEST_RECORD": str(record)}
        # Locust exits 1 when a request failed: the record says which.
        child = subprocess.run(command, env=env, capture_output=True, text=True)
        if not record.exists():
            raise CommandError(f"locust recorded nothing ({child.returncode}):\n{child.stderr}")
        return [Request(*row) for row in json.loads(record.read_text())]

    # --- the sweep ----------------------------------------------------------------------------

    def _sweep(self, vocabulary: Vocabulary) -> tuple[str, str]:
        options = self.options
        urls = workload.sweep_urls(
            vocabulary, options["sweep_days"], options["sweep_weeks"], options["sweep_months"]
        )
        concurrency = self.options["sweep_concurrency"]
        caches_off = {"PAGE_CACHE_SECONDS": "0", "SUMMARY_CACHE_SECONDS": "0"}
        parts, bad = [], 0
        with self._serve(caches_off, name="sweep") as base_url:
            self._warm_up(base_url)
            for threads in (1, concurrency):
                self._note(f"sweep: {len(urls):,} URLs, {threads} at a time")
                started = time.monotonic()
                requests = sweep.crawl(base_url, urls, threads)
                seconds = time.monotonic() - started
                bad += report.errors(requests)
                table = report.sweep_table(requests)
                self.stdout.write(table + "\n")
                parts.append(
                    f"Sweep, {'in sequence' if threads == 1 else f'{threads} at a time'}: "
                    f"{len(requests):,} requests in {seconds:.0f} s.\n\n{table}"
                )
        problem = f"{bad} sweep requests answered 5xx or timed out" if bad else ""
        self._show_log_if(problem, "sweep")
        return "\n\n".join(parts), problem

    def _show_log_if(self, problem: str, name: str) -> None:
        """The end of the server's log (tracebacks of 500s) when something failed."""
        if problem:
            log = (self.tmp / f"{name}.log").read_text(errors="replace")
            self._note(f"{problem}; the end of gunicorn's log:\n{log[-5000:]}")

    # --- the report ---------------------------------------------------------------------------

    def _append_docs(self, started: dt.datetime, server_url: str, sections: list[str]) -> None:
        machine = benchmark.machine(server_url)
        arguments = sys.argv[2:] if "load_test" in sys.argv else []
        lines = [
            "",
            f"## {started:%Y-%m-%d %H:%M} UTC: load test and crawler sweep (`make load`)",
            "",
            f"`python -m tests.bench load_test {shlex.join(arguments)}`".replace(" `", "`"),
            "",
            *[f"- {key}: {value}" for key, value in machine.items()],
            "",
            LEGEND,
            "",
            "\n\n".join(sections),
            "",
        ]
        with self.options["output"].open("a", encoding="utf-8") as docs:
            docs.write("\n".join(lines))
        self.stdout.write(f"Appended to {self.options['output']}")

    def _note(self, message: str) -> None:
        self.stderr.write(message)


LEGEND = """\
How to read: the server, PostgreSQL and the load generator share the machine. Latency is the
wall time of each GET as the client saw it; percentiles are exact (nearest rank) over every
request of the run. With users that do not wait between requests, a request queues behind the
others for a free gunicorn worker: in the load test p50 is close to users / requests/s, and
per-class figures differ little. The sweep runs with the page and summary caches off (every
answer computed); its 400s are pages past the last reachable one (the cap); its errors are
5xx answers and timeouts (120 s)."""
