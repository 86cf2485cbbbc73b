"""``bench_site``: new-query latency beside SQL floors, and throughput, at several sizes.

For each size: a realistic corpus (``make_corpus``, cached under ``.data/bench/``), a bench
database on the same server (``--db-name``; default ``<name>_bench_site``): reused as it is
when it already holds that many papers (``make load``'s ``<name>_load_100000`` or a copy of
it), else built afresh by the real ingest path (``manage.py ingest FILE --inline`` in a
child), topics tagged, trending refreshed, embeddings backfilled (``manage.py embed``, at
sizes up to ``--embed-up-to``; stand-ins above, ``tests.bench.standin``). Then, against
``gunicorn -w 4`` on loopback (``DEBUG=0``):

1. new queries: ``--per-class`` distinct URLs of each page class of the load test's mix,
   drawn from the corpus's vocabulary, each requested once with the page and summary caches
   off (a server started with them at 0 s), the classes taking turns;
2. throughput at ``--concurrency`` over further distinct URLs of the same mix, caches off;
3. the cache's column: each class's first URL repeated (``--requests`` after ``--warmups``)
   against a server with the production cache settings;
4. the SQL floor of every URL of step 1 (child process on the bench database).

Prints a markdown table per size and writes them all into ``docs/benchmarks.md``, replacing
the section an earlier run wrote there and keeping the rest. See ``tests.bench.benchmark``
for what each figure means.
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
from itertools import islice
from pathlib import Path

import httpx
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from catalogue.dburl import url_from_settings
from tests.bench import benchmark, corpus, standin
from tests.bench.benchmark import ClassResult, Latency, SizeResult
from tests.bench.commands import command
from tests.bench.loadtest import workload
from tests.bench.loadtest.vocabulary import read_vocabulary

URLS_PER_SECOND = 40  # distinct URLs prepared per second of a throughput run and thread
BEGIN = "<!-- bench_site: begin (written by python -m tests.bench bench_site) -->"
END = "<!-- bench_site: end -->"


class Command(BaseCommand):
    help = "Benchmark new queries on the site under gunicorn at several catalogue sizes."

    def add_arguments(self, parser):
        parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
        parser.add_argument("--per-class", type=int, default=30, help="new URLs timed per class")
        parser.add_argument("--url-seed", type=int, default=0, help="seed of the URLs drawn")
        parser.add_argument(
            "--requests", type=int, default=30, help="timed repeats of a URL (cache column)"
        )
        parser.add_argument("--warmups", type=int, default=3, help="untimed repeats before them")
        parser.add_argument(
            "--class-budget",
            type=float,
            default=60,
            help="seconds of repeats after which a class's cache column stops (with 5+ samples)",
        )
        parser.add_argument("--duration", type=float, default=30, help="seconds per throughput run")
        parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
        parser.add_argument("--skip-throughput", action="store_true")
        parser.add_argument(
            "--embed-up-to",
            type=int,
            default=10_000,
            help="run manage.py embed (timed) at sizes up to this many papers, on a database "
            "built by this run; larger sizes get stand-in embeddings (tests.bench.standin)",
        )
        parser.add_argument(
            "--no-standins",
            action="store_true",
            help="no stand-in embeddings above --embed-up-to: hybrid searches then scan an "
            "empty index (cheaper than any real catalogue's)",
        )
        parser.add_argument(
            "--standin-words",
            type=int,
            default=standin.WORDS,
            help="the commonest words the model embeds for stand-ins (their cost: ~200 words "
            "a second; fewer words, vaguer neighbours)",
        )
        parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
        parser.add_argument("--seed", type=int, default=0, help="corpus seed")
        parser.add_argument(
            "--db-name",
            help="bench database (default: <name>_bench_site); reused when it holds the size's "
            "papers, never dropped then",
        )
        parser.add_argument(
            "--rebuild", action="store_true", help="rebuild a --db-name that holds papers"
        )
        parser.add_argument(
            "--corpus", type=Path, help="the corpus (one size only; default: cached)"
        )
        parser.add_argument("--cache-dir", type=Path, default=settings.BASE_DIR / ".data/bench")
        parser.add_argument("--output", type=Path, default=settings.BASE_DIR / "docs/benchmarks.md")
        parser.add_argument(
            "--keep-db", action="store_true", help="keep a database this run built, for EXPLAINs"
        )
        # Internal: a step run in a child process on the bench database.
        parser.add_argument(
            "--stage", choices=["prepare", "describe", "pair", "floors"], help=argparse.SUPPRESS
        )
        parser.add_argument("--stage-file", type=Path, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        if options["stage"]:
            return self._run_stage(options["stage"], options["stage_file"])
        if options["corpus"] and len(options["sizes"]) != 1:
            raise CommandError("--corpus holds one size: give one --sizes")
        self.options = options
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request
        db = settings.DATABASES["default"]
        # Not bench_ingest's "<name>_bench": each drops its database, so they could not share.
        self.db_name = options["db_name"] or f"{db['NAME']}_bench_site"
        self.server_url = url_from_settings(db, "postgres")
        self.env = benchmark.site_env(url_from_settings(db, self.db_name), settings.REDIS_URL)
        self.built = False  # whether this run (re)built the database: only then is it dropped
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
                if self.built and not options["keep_db"]:
                    benchmark.drop_database(self.server_url, self.db_name)
        self.stdout.write(f"Wrote {options['output']}")

    # --- one size --------------------------------------------------------------------------

    def _run_size(self, papers: int) -> SizeResult:
        if self.options["corpus"]:
            path, generated = self.options["corpus"], None
            stats = json.loads(corpus.stats_path(path).read_text())
        else:
            path, generated, stats = corpus_file(
                papers, self.options["seed"], self.options["cache_dir"], self.stdout, self._note
            )
        database = self._database(papers, path)
        database["prewarm"] = benchmark.prewarm(self.env["DATABASE_URL"])
        vocabulary = read_vocabulary(path)
        classes = benchmark.new_query_urls(
            vocabulary, self.options["url_seed"], self.options["per_class"] + 1
        )
        stream = self._throughput_urls(vocabulary)
        new, throughput = self._new_queries(classes, stream, benchmark.warm_up_url(stats))
        cached = self._cached({name: urls[1] for name, urls in classes.items()})
        timed = {name: urls[1:] for name, urls in classes.items()}
        self._note(f"{papers:,} papers: SQL floors of {sum(map(len, timed.values())):,} URLs")
        floors = self._stage("floors", {"classes": timed})
        rows = [
            _class_result(name, timed[name], new[name], cached[name], floors[name])
            for name in classes
        ]
        return SizeResult(
            papers=papers,
            generate_seconds=generated,
            classes=rows,
            throughput=throughput,
            corpus_check=stats["check_summary"],
            embed_up_to=self.options["embed_up_to"],
            database=self.db_name,
            **database,
        )

    def _database(self, papers: int, path: Path) -> dict:
        """The bench database holding the corpus: reused as it is, or built; what the report
        says of it (ingest, reference, prepare, embedding)."""
        count = benchmark.paper_count(self.env["DATABASE_URL"])
        if count == papers and not self.options["rebuild"]:
            self._note(f"reusing {self.db_name} ({papers:,} papers); --rebuild to build it afresh")
            benchmark.manage(["migrate", "-v0"], self.env, settings.BASE_DIR)
            self._stage("pair", {})  # what a migration left pending (0022: every paper)
            described = self._stage("describe", {})
            standins = None
            if not described["embedded"]:  # (a database built before stand-ins existed)
                standins = self._standins(papers)
                described = self._stage("describe", {})
            return {"ingest_seconds": None, "prepare": described, "standins": standins}
        if count and self.options["db_name"] and not self.options["rebuild"]:
            raise CommandError(
                f"{self.db_name} holds {count:,} papers, not {papers:,}: give --rebuild to "
                "drop and rebuild it, or another --db-name"
            )
        self.built = True
        ingest_seconds = load_database(self.server_url, self.db_name, self.env, path, self._note)
        rows, seconds = benchmark.copy_reference(self.env["DATABASE_URL"], limit=100_000)
        self._note(f"{papers:,} papers: topics, trending, VACUUM ANALYZE")
        prepared = self._stage("prepare", {"today": corpus.END.isoformat()})
        embedding = standins = None
        if papers <= self.options["embed_up_to"]:
            self._note(f"{papers:,} papers: manage.py embed")
            embedding = benchmark.embed(self.env, settings.BASE_DIR)
            prepared["embedded"] = embedding["papers"]
            self._note(
                f"{papers:,} papers: embedded {embedding['papers']:,} in "
                f"{embedding['seconds']:.1f} s, {embedding['rate']:,.1f} papers/s"
            )
        else:
            standins = self._standins(papers)
            prepared["embedded"] = prepared["standins"] = standins["papers"] if standins else 0
        return {
            "ingest_seconds": ingest_seconds,
            "reference_rate": rows / seconds,
            "prepare": prepared,
            "embedding": embedding,
            "standins": standins,
        }

    def _standins(self, papers: int) -> dict | None:
        """Stand-in embeddings for every paper (``tests.bench.standin``), unless
        ``--no-standins``: figures of the fill, or None."""
        if self.options["no_standins"]:
            return None
        from catalogue import embedder

        self._note(f"{papers:,} papers: stand-in embeddings")
        return standin.fill(
            self.env["DATABASE_URL"],
            embedder.get_embedder().embed,
            words=self.options["standin_words"],
        )

    def _throughput_urls(self, vocabulary) -> list[str]:
        """Distinct URLs of the mix, more than the throughput runs can ask, none of them one of
        the timed classes' (another seed)."""
        if self.options["skip_throughput"]:
            return []
        most = max(self.options["concurrency"]) * self.options["duration"] * URLS_PER_SECOND
        stream = workload.distinct_urls(vocabulary, self.options["url_seed"] + 1)
        return [url for _, url in islice(stream, int(max(most, 10_000)))]

    def _new_queries(self, classes: dict[str, list[str]], stream: list[str], meaning_url: str):
        """Each class's URLs once, caches off, the classes taking turns (a busy moment of the
        shared machine spreads over all of them); then the throughput runs."""
        workers = self.options["workers"]
        with self._serve(benchmark.caches_off_env(), "new-queries") as base_url:
            with httpx.Client(base_url=base_url, timeout=120) as client:
                self._warm_up(client, meaning_url)
                for urls in classes.values():  # each worker's first page of the class
                    benchmark.warm_up(client, urls[0], workers, rounds=1)
                samples = {name: Latency([], 0) for name in classes}
                self._note(f"  new queries: {self.options['per_class']} per class")
                for turn in range(1, max(map(len, classes.values()))):
                    for name, urls in classes.items():
                        if turn < len(urls):
                            _time_once(client, urls[turn], samples[name])
            throughput = []
            for concurrency in [] if not stream else self.options["concurrency"]:
                self._note(f"  throughput at concurrency {concurrency}")
                used = sum(t.completed + t.errors for t in throughput)
                throughput.append(
                    benchmark.measure_throughput(
                        base_url,
                        stream[used:],
                        concurrency,
                        self.options["duration"],
                        app_pid=base_url.pid,
                        database_pid=benchmark.postmaster_pid(self.env["DATABASE_URL"]),
                    )
                )
        return samples, throughput

    def _cached(self, first_urls: dict[str, str]) -> dict[str, Latency]:
        """Each class's first URL repeated against the production cache settings."""
        options = self.options
        latencies = {}
        with (
            self._serve({}, "cached") as base_url,
            httpx.Client(base_url=base_url, timeout=120) as client,
        ):
            self._warm_up(client, None)
            for name, url in first_urls.items():
                self._note(f"  cached: {name}: {url}")
                latencies[name] = benchmark.measure_latency(
                    client, url, options["requests"], options["warmups"], options["class_budget"]
                )
        return latencies

    def _serve(self, extra_env: dict, name: str):
        log = self.tmp / f"{name}.log"
        env = {**self.env, **extra_env}
        return benchmark.gunicorn(env, settings.BASE_DIR, log, self.options["workers"])

    def _warm_up(self, client: httpx.Client, meaning_url: str | None) -> None:
        """Each worker's imports, templates, connection and (``meaning_url``) embedding model."""
        workers = self.options["workers"]
        benchmark.warm_up(client, "/papers/month/2020-01/", workers)
        if meaning_url:
            benchmark.warm_up(client, meaning_url, workers)

    # --- child stages on the bench database -------------------------------------------------

    def _stage(self, stage: str, payload: dict) -> dict | list:
        """Run ``bench_site --stage STAGE`` in a child on the bench database; its JSON result."""
        return run_stage(stage, payload, self.env, self.tmp)

    def _run_stage(self, stage: str, file: Path) -> None:
        payload = json.loads(file.read_text())
        if stage == "prepare":
            result = benchmark.prepare(dt.date.fromisoformat(payload["today"]))
        elif stage == "describe":
            result = benchmark.describe()
        elif stage == "pair":
            result = benchmark.pair_phrases()
        else:
            result = benchmark.floors(payload["classes"])
        file.write_text(json.dumps(result))

    # --- the report --------------------------------------------------------------------------

    def _write_report(self, results: list[SizeResult], started: dt.datetime) -> None:
        machine = benchmark.machine(self.server_url)
        arguments = sys.argv[2:] if "bench_site" in sys.argv else []
        line = f"python -m tests.bench bench_site {shlex.join(arguments)}".strip()
        section = _report(results, machine, line, started, self.options)
        output = self.options["output"]
        output.parent.mkdir(parents=True, exist_ok=True)
        old = output.read_text() if output.exists() else "# Benchmarks\n"
        output.write_text(replace_section(old, section))

    def _note(self, message: str) -> None:
        self.stderr.write(message)


def _time_once(client: httpx.Client, url: str, latency: Latency) -> None:
    started = time.perf_counter()
    ok = benchmark._get(client, url)
    if ok is None:
        latency.errors += 1
    else:
        latency.samples.append(time.perf_counter() - started)


def _class_result(name: str, urls: list[str], new, cached, floor: dict) -> ClassResult:
    if floor["status"] != 200:
        new.errors += 1  # the in-process run of its first page failed too
    return ClassResult(
        name=name,
        urls=urls,
        new=new,
        cached=cached,
        floor_ms=floor["floor_ms"],
        floor_errors=floor["floor_errors"],
        sql_queries=floor["sql_queries"],
        sql_ms=floor["sql_ms"],
        slowest_ms=floor["slowest_ms"],
        slowest_sql=floor["slowest_sql"],
        plan=floor["plan"],
        statements=floor["statements"],
    )


def replace_section(text: str, section: str) -> str:
    """``text`` with the section between BEGIN and END replaced by ``section`` (inserted after
    the title when there is none yet): other sections' figures stay."""
    block = f"{BEGIN}\n{section.rstrip()}\n{END}\n"
    if BEGIN in text and END in text:
        before, _, rest = text.partition(BEGIN)
        _, _, after = rest.partition(END)
        return before + block + after.removeprefix("\n")
    title, newline, rest = text.partition("\n")
    if not title.startswith("# "):
        return f"# Benchmarks\n\n{block}\n{text}"
    return f"{title}\n\n{block}\n{rest.lstrip(chr(10))}"


def _report(results, machine: dict, command: str, started: dt.datetime, options: dict) -> str:
    largest = max(results, key=lambda r: r.papers)
    lines = [
        f"## {started:%Y-%m-%d %H:%M} UTC: site benchmark, new queries (`make bench`)",
        "",
        f"`{command}`",
        "",
        *[f"- {key}: {value}" for key, value in machine.items()],
        f"- gunicorn: {options['workers']} sync workers on 127.0.0.1, `DEBUG=0` (worker "
        f"timeout {benchmark.WORKER_TIMEOUT} s); PostgreSQL on the same machine; the client "
        "(Python threads + httpx) too",
        "",
        "How to read the tables:",
        "",
        f"- n, p50/p95/p99: {options['per_class']} distinct URLs per page class (the load "
        "test's mix, drawn from the corpus's own vocabulary: different words, phrases of two "
        "real adjacent words, authors, topics, date ranges, months, sorts and pages), each "
        "requested once, in sequence, the classes taking turns, from a gunicorn started with "
        "the page and summary caches off and no query's embedding shared (`PAGE_CACHE_SECONDS=0 "
        "SUMMARY_CACHE_SECONDS=0 QUERY_VECTOR_CACHE_SECONDS=0`): "
        "what a new query costs (what every query shares, the sample's topic links, is read "
        "once per process and catalogue change, as in production). Nearest-rank percentiles "
        "(with 30 samples p99 is the slowest).",
        "- SQL floor: per URL, the cheapest SQL that answers the page, its main query alone "
        "(median of 3 runs after a warm-up, in a child process on the bench database); the "
        "class's floor is the median over its URLs. Newest, upvotes, trending order (sorted "
        "browse, date ranges, day/week/month pages, sorted searches): the filter's ordered "
        "QuerySet, the page's slice (the feed: its 50 newest). Relevance order (a query "
        "without a sort): the ranking computed with every cache off (the query parsed and "
        "embedded, its nearest neighbours scanned, its keyword candidates ranked) and the "
        "page's papers loaded by id. A paper's page: the paper by its id. p50/floor and "
        "p95/floor: what the page costs beyond it.",
        f"- cached p50/p95: the class's first URL requested {options['requests']} times after "
        f"{options['warmups']} warm-ups from a gunicorn with the production cache settings "
        "(whole anonymous pages for one minute, counts and rankings for two, in Redis): what "
        "a repeated query costs, the old benchmark's figure.",
        "- page SQL: every statement of the class's first page (count, facets, timeline, "
        "highlights, topics), timed in-process, caches off; the slowest one is listed with "
        "its plan below. errors: non-200 answers of either column and floors that raised.",
        f"- throughput: {options['duration']:g} s per concurrency level, threads requesting "
        "further distinct URLs of the same mix (another seed), each once, caches off; errors "
        "are non-200 answers and timeouts.",
        "- corpus: `tests.bench.corpus` (see its docstring), built from the real listing "
        "samples; upvotes for papers listed on HF (null for the others), code links on ~15 %.",
        "",
    ]
    for result in results:
        lines += [benchmark.markdown_table(result), "", f"Corpus check: {result.corpus_check}", ""]
    lines += ["### Query plans", "", benchmark.plans_section(largest), ""]
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
