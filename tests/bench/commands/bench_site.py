"""``bench_site``: page latency, SQL floors and throughput at 10k, 100k and 1M papers.

For each size: a realistic corpus (``make_corpus``, cached under ``.data/bench/``), a fresh
``<name>_bench_site`` database on the same server, the real ingest path (``manage.py ingest FILE
--inline`` in a child), topics tagged and trending refreshed, embeddings backfilled
(``manage.py embed``, at sizes up to ``--embed-up-to``), then ``gunicorn -w 4`` on
loopback measured with a fixed query mix. Prints a markdown table per size and writes them all
to ``docs/benchmarks.md``. See ``tests.bench.benchmark`` for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from catalogue.dburl import url_from_settings
from tests.bench import benchmark, corpus
from tests.bench.benchmark import ClassResult, QueryClass, SizeResult
from tests.bench.commands import command


class Command(BaseCommand):
    help = "Benchmark the site under gunicorn at several catalogue sizes (make bench)."

    def add_arguments(self, parser):
        parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
        parser.add_argument("--requests", type=int, default=30, help="timed requests per class")
        parser.add_argument("--warmups", type=int, default=3, help="untimed requests per class")
        parser.add_argument(
            "--class-budget",
            type=float,
            default=120,
            help="seconds of timed requests after which a class stops (with 5+ samples)",
        )
        parser.add_argument("--duration", type=float, default=30, help="seconds per throughput run")
        parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
        parser.add_argument("--skip-throughput", action="store_true")
        parser.add_argument(
            "--embed-up-to",
            type=int,
            default=10_000,
            help="run manage.py embed (timed) at sizes up to this many papers; larger sizes "
            "search by meaning among no embeddings",
        )
        parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
        parser.add_argument("--seed", type=int, default=0, help="corpus seed")
        parser.add_argument("--db-name", help="bench database (default: <name>_bench_site)")
        parser.add_argument("--cache-dir", type=Path, default=settings.BASE_DIR / ".data/bench")
        parser.add_argument("--output", type=Path, default=settings.BASE_DIR / "docs/benchmarks.md")
        parser.add_argument(
            "--keep-db", action="store_true", help="keep the last size's database for EXPLAINs"
        )
        # Internal: a step run in a child process on the bench database.
        parser.add_argument("--stage", choices=["prepare", "floors"], help=argparse.SUPPRESS)
        parser.add_argument("--stage-file", type=Path, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        if options["stage"]:
            return self._run_stage(options["stage"], options["stage_file"])
        self.options = options
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request
        db = settings.DATABASES["default"]
        # Not bench_ingest's "<name>_bench": each drops its database, so they could not share.
        self.db_name = options["db_name"] or f"{db['NAME']}_bench_site"
        self.server_url = url_from_settings(db, "postgres")
        self.env = benchmark.site_env(url_from_settings(db, self.db_name), settings.REDIS_URL)
        started = dt.datetime.now(dt.UTC)
        results: list[SizeResult] = []
        with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
            self.tmp = Path(tmp)
            # DEBUG=0 serves static files through the manifest: build it once.
            benchmark.manage(["collectstatic", "--noinput", "-v0"], self.env, settings.BASE_DIR)
            try:
                for size in options["sizes"]:
                    results.append(self._run_size(size))
                    self.stdout.write(benchmark.markdown_table(results[-1]) + "\n")
                    self._write_report(results, started)
            finally:
                if not options["keep_db"]:
                    benchmark.drop_database(self.server_url, self.db_name)
        self.stdout.write(f"Wrote {options['output']}")

    # --- one size --------------------------------------------------------------------------

    def _run_size(self, papers: int) -> SizeResult:
        path, generated, stats = corpus_file(
            papers, self.options["seed"], self.options["cache_dir"], self.stdout, self._note
        )
        ingest_seconds = load_database(self.server_url, self.db_name, self.env, path, self._note)
        rows, seconds = benchmark.copy_reference(self.env["DATABASE_URL"], limit=100_000)
        self._note(f"{papers:,} papers: topics, trending, VACUUM ANALYZE")
        prepared = self._stage("prepare", {"today": corpus.END.isoformat()})
        embedding = None
        if papers <= self.options["embed_up_to"]:
            self._note(f"{papers:,} papers: manage.py embed")
            embedding = benchmark.embed(self.env, settings.BASE_DIR)
            self._note(
                f"{papers:,} papers: embedded {embedding['papers']:,} in "
                f"{embedding['seconds']:.1f} s, {embedding['rate']:,.1f} papers/s"
            )
        classes = benchmark.query_mix(stats, like=prepared.get("like"))
        latencies, throughput = self._serve_and_measure(classes, benchmark.warm_up_url(stats))
        self._note(f"{papers:,} papers: floors and page SQL")
        floors = self._stage("floors", {"classes": benchmark.to_json(classes)})
        return SizeResult(
            papers=papers,
            generate_seconds=generated,
            ingest_seconds=ingest_seconds,
            prepare=prepared,
            classes=[
                self._class_result(*row) for row in zip(classes, latencies, floors, strict=True)
            ],
            throughput=throughput,
            corpus_check=stats["check_summary"],
            reference_rate=rows / seconds,
            embedding=embedding,
            embed_up_to=self.options["embed_up_to"],
        )

    def _serve_and_measure(self, classes: list[QueryClass], meaning_url: str):
        log = self.tmp / "gunicorn.log"
        workers = self.options["workers"]
        with benchmark.gunicorn(self.env, settings.BASE_DIR, log, workers) as base_url:
            latencies = []
            with httpx.Client(base_url=base_url, timeout=120) as client:
                month_page = next(q for q in classes if q.scope.startswith("month:"))
                benchmark.warm_up(client, month_page.url, workers)
                if any(q.uses_meaning for q in classes):
                    benchmark.warm_up(client, meaning_url, workers)  # the model, per worker
                for query in classes:
                    self._note(f"  {query.name}: {query.url}")
                    latencies.append(
                        benchmark.measure_latency(
                            client,
                            query.url,
                            self.options["requests"],
                            self.options["warmups"],
                            self.options["class_budget"],
                        )
                    )
            throughput = []
            if not self.options["skip_throughput"]:
                urls = benchmark.throughput_urls(classes)
                for concurrency in self.options["concurrency"]:
                    self._note(f"  throughput at concurrency {concurrency}")
                    throughput.append(
                        benchmark.measure_throughput(
                            base_url, urls, concurrency, self.options["duration"]
                        )
                    )
        return latencies, throughput

    @staticmethod
    def _class_result(query: QueryClass, latency, floor: dict) -> ClassResult:
        if floor["status"] != 200:
            latency.errors += 1  # the in-process run of the page failed too
        return ClassResult(
            query=query,
            latency=latency,
            floor_ms=floor["floor_ms"],
            matches=floor["matches"],
            sql_queries=floor["sql_queries"],
            sql_ms=floor["sql_ms"],
            slowest_ms=floor["slowest_ms"],
            slowest_sql=floor["slowest_sql"],
            plan=floor["plan"],
            statements=floor["statements"],
            floor_error=floor.get("floor_error", ""),
        )

    # --- child stages on the bench database -------------------------------------------------

    def _stage(self, stage: str, payload: dict) -> dict | list:
        """Run ``bench_site --stage STAGE`` in a child on the bench database; its JSON result."""
        return run_stage(stage, payload, self.env, self.tmp)

    def _run_stage(self, stage: str, file: Path) -> None:
        payload = json.loads(file.read_text())
        if stage == "prepare":
            result = benchmark.prepare(dt.date.fromisoformat(payload["today"]))
        else:
            result = benchmark.floors(benchmark.from_json(payload["classes"]))
        file.write_text(json.dumps(result))

    # --- the report --------------------------------------------------------------------------

    def _write_report(self, results: list[SizeResult], started: dt.datetime) -> None:
        machine = benchmark.machine(self.server_url)
        arguments = sys.argv[2:] if "bench_site" in sys.argv else []
        command = f"python -m tests.bench bench_site {shlex.join(arguments)}".strip()
        text = _report(results, machine, command, started, self.options)
        self.options["output"].parent.mkdir(parents=True, exist_ok=True)
        self.options["output"].write_text(text)

    def _note(self, message: str) -> None:
        self.stderr.write(message)


def _report(results, machine: dict, command: str, started: dt.datetime, options: dict) -> str:
    largest = max(results, key=lambda r: r.papers)
    lines = [
        "# Benchmarks",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} UTC by `make bench` (`{command}`).",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in machine.items()],
        f"- gunicorn: {options['workers']} sync workers on 127.0.0.1 (worker timeout "
        f"{benchmark.WORKER_TIMEOUT} s); PostgreSQL on the same machine; the load generator "
        "(Python threads + httpx) too",
        "",
        "## Commands",
        "",
        "```",
        "make bench                               # sizes 10000 100000 1000000",
        "make bench BENCH_ARGS='--sizes 10000 100000 --skip-throughput'",
        ".venv/bin/python -m tests.bench make_corpus --papers 1000000 --out corpus.jsonl",
        "```",
        "",
        "## How to read the tables",
        "",
        f"- p50/p95/p99: {options['requests']} sequential full-page GETs per class after "
        f"{options['warmups']} warm-ups (nearest rank: with 30 samples p99 is the slowest); "
        f"a class stops after {options['class_budget']:g} s of timed requests once it has "
        f"{benchmark.MIN_SAMPLES} samples (n: samples taken).",
        "- first: the first request of the class, before anything of it was cached (counts, "
        "facets and rankings for two minutes, whole anonymous pages for one, in Redis): what "
        "a new query costs.",
        "- floor: the page's main query alone, on the bench database (median of 5, after a "
        "warm-up); p50/floor is how much the page costs beyond it. Newest, upvotes, trending "
        "order: `PaperFilter(params).qs[offset:offset + 25]` evaluated through the ORM. "
        "Relevance order (every class with `q` or `like`): the filter built, the ranking "
        "computed with every cache off (Redis summaries, the process's memos of parsed queries "
        "and query embeddings: the query parsed and embedded, its nearest neighbours scanned, "
        "its keyword candidates ranked) and the page's 25 papers loaded by id, what a new "
        "query pays before the page's counts, facets and highlights.",
        "- search modes: the `q` classes without `mode` (rare word … JSON API) run in hybrid "
        "mode, the default: the keyword ranking fused with the cosine similarity of the "
        f"{settings.SEMANTIC_NEIGHBOURS} nearest papers by meaning (pgvector HNSW). `keyword "
        "mode, two words` is the same search by words alone, `semantic` by meaning alone; "
        "`more like this` lists the papers nearest the most upvoted paper. Each gunicorn worker "
        "loads the embedding model before the timed classes (a semantic search outside the "
        "mix, in the warm-up).",
        f"- embeddings: computed by `manage.py embed` at sizes up to "
        f"{options['embed_up_to']:,} papers (`--embed-up-to`); above, classes searching by "
        f"meaning are marked{benchmark.NO_EMBEDDINGS}.",
        "- page SQL: every statement the page runs (count, facets, timeline, highlights, "
        "topics), timed in-process; the slowest one is listed with its plan below.",
        "- matches: papers the class's filter matches, counted exactly (pages estimate counts "
        "over 100,000-paper catalogues from a sample; see catalogue.summary).",
        f"- throughput: {options['duration']:g} s per concurrency level, threads looping over "
        "the whole mix; errors are non-200 answers and timeouts.",
        "- corpus: `tests.bench.corpus` (see its docstring), built from the real listing samples; "
        "upvotes for papers listed on HF (null for the others), code links on ~15 %.",
        "",
        "## Results",
        "",
    ]
    for result in results:
        lines += [benchmark.markdown_table(result), "", f"Corpus check: {result.corpus_check}", ""]
    if largest.papers < 1_000_000:
        lines += [
            "**Not measured at 1,000,000 papers in this run**: `make bench` gives the full table.",
            "",
        ]
    lines += benchmark.before_after(results)
    lines += ["## Query plans", "", benchmark.plans_section(largest), ""]
    return "\n".join(lines)


# --- shared with ``load_test`` --------------------------------------------------------------------


def corpus_file(
    papers: int, seed: int, cache_dir: Path, stdout, note
) -> tuple[Path, float | None, dict]:
    """The cached corpus of this size and seed (built by make_corpus when missing): its path,
    the seconds generating it took (None: it came from the cache) and its statistics."""
    real_dir = corpus.default_real_dir()
    name = f"corpus-{papers}-seed{seed}-{corpus.fingerprint(real_dir)}.jsonl"
    path = cache_dir / name
    generated = None
    if not (path.exists() and corpus.stats_path(path).exists()):
        note(f"{papers:,} papers: generating {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        call_command(
            command("make_corpus"), papers=papers, out=path, seed=seed, real=real_dir, stdout=stdout
        )
        generated = time.perf_counter() - started
    return path, generated, json.loads(corpus.stats_path(path).read_text())


def load_database(server_url: str, db_name: str, env: dict, path: Path, note) -> float:
    """A fresh database ``db_name``, migrated, with the corpus at ``path`` ingested by the real
    path (``manage.py ingest FILE --inline`` in a child); the ingest's seconds."""
    note(f"fresh database {db_name}, migrate, ingest {path.name}")
    benchmark.recreate_database(server_url, db_name)
    benchmark.manage(["migrate", "-v0"], env, settings.BASE_DIR)
    ingest = ["ingest", str(path), "--inline", "--no-progress"]
    return benchmark.manage(ingest, env, settings.BASE_DIR)


def run_stage(stage: str, payload: dict, env: dict, tmp: Path) -> dict | list:
    """Run ``bench_site --stage STAGE`` in a child on the database of ``env``; its JSON result."""
    file = tmp / f"{stage}.json"
    file.write_text(json.dumps(payload))
    arguments = ["bench_site", "--stage", stage, "--stage-file", str(file)]
    benchmark.manage(arguments, env, settings.BASE_DIR)
    return json.loads(file.read_text())
