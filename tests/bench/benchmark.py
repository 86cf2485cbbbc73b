"""The site benchmark's parts: the query mix, the bench database, gunicorn, timing, the report.

``bench_site`` strings these together. Work on the bench database runs in child
processes (``DATABASE_URL`` pointing at it), so the command never touches the catalogue's own
database, and its figures include what a real deployment pays (its own processes, its own
connections).

Definitions used in the report:

- *latency*: wall time of one full GET (status, headers, body) from a keep-alive-less httpx
  client on 127.0.0.1 to ``gunicorn -w 4`` (sync workers), sequential requests after warm-ups;
- *floor*: the page's main query alone, in a child process on the bench database (median of
  5 runs after one warm-up). For newest, upvotes, trending (…) order it is
  ``PaperFilter(params).qs[offset:offset + 25]`` evaluated through the ORM, the query text
  built before timing. For relevance order (a query, ``like``) it is what a new query pays
  before its papers are on the page: the filter built and validated, the relevance ranking
  computed with the caches off (Redis summaries, the query-embedding and parse memos of the
  process), i.e. the query parsed, embedded, its nearest neighbours scanned and its keyword
  candidates ranked, then the page's 25 papers loaded by id, as ``PaperFilter.results``
  does for the page. Pages run more SQL than that (counts, facets, timeline, highlights):
  the *SQL* columns give all of it, measured by running the page once in-process with a
  timing execute wrapper.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psycopg

MIN_SAMPLES = 5
SLOW_WARMUP = 2.0  # seconds
WORKER_TIMEOUT = 180  # seconds
PAGE_SIZE = 25  # catalogue.views.PAGE_SIZE and the API's default page size
DEEP_PAGE = 50

# Topics the benchmark creates and tags (name, slug, query in the search syntax).
TOPICS = [
    ("Linear attention", "linear-attention", '"linear attention" OR "linear transformer"'),
    ("Diffusion", "diffusion", "diffusion"),
    ("Reinforcement learning", "reinforcement-learning", '"reinforcement learning"'),
]
TOPIC_FILTERED = "diffusion"


# --- the query mix ----------------------------------------------------------------------------


@dataclass
class QueryClass:
    name: str
    path: str
    params: dict = field(default_factory=dict)
    scope: str = "list"  # list | api | month:YYYY-MM (what the floor query starts from)

    @property
    def url(self) -> str:
        return f"{self.path}?{urlencode(self.params, doseq=True)}" if self.params else self.path

    @property
    def page(self) -> int:
        return int(self.params.get("page", 1))

    @property
    def uses_meaning(self) -> bool:
        """Whether the page searches by meaning (embeddings): ``like``, or ``q`` in hybrid
        (the default) or semantic mode."""
        return bool(self.params.get("like")) or (
            bool(self.params.get("q")) and self.params.get("mode", "hybrid") != "keyword"
        )


def query_mix(stats: dict, like: str | None = None) -> list[QueryClass]:
    """The fixed mix, with words chosen from the generated corpus's own statistics; ``like``:
    a paper's public id for "more like this" (``prepare`` picks one in the bench database).

    The ``q`` classes without ``mode`` run in hybrid mode, the default: what readers get.
    """
    common = stats["top_terms"][0][0]  # the most frequent term (in >= 10 % of papers)
    rare = stats["rare_terms"][0] if stats["rare_terms"] else "accompaniment"
    phrase = "linear attention" if stats.get("linear_attention") else _first_phrase(stats)
    common_phrase = _first_phrase(stats)
    year, month, _ = stats["months"][-1]
    surname = stats["top_surnames"][0][0]
    last = f"{year}-{month:02d}"
    words = common_phrase  # two real adjacent words, unquoted: every word required
    dates = {"since": f"{year - 1}-01-01", "until": f"{year}-06-30"}
    meaning = [
        QueryClass("keyword mode, two words", "/", {"q": words, "mode": "keyword"}),
        QueryClass("hybrid, two words", "/", {"q": words}),
        QueryClass("semantic, two words", "/", {"q": words, "mode": "semantic"}),
        QueryClass("semantic + dates", "/", {"q": words, "mode": "semantic", **dates}),
    ]
    if like:
        meaning.append(QueryClass("more like this", "/", {"like": like}))
    return [
        QueryClass("rare word", "/", {"q": rare}),
        QueryClass("common word", "/", {"q": common}),
        QueryClass("phrase", "/", {"q": f'"{phrase}"'}),
        QueryClass("common phrase", "/", {"q": f'"{common_phrase}"'}),
        QueryClass(
            "phrase + dates",
            "/",
            {"q": f'"{phrase}"', "since": f"{year - 1}-01-01", "until": f"{year}-06-30"},
        ),
        QueryClass("top of a month", f"/papers/month/{last}/", {}, f"month:{last}"),
        QueryClass("trending", "/", {"sort": "trending"}),
        QueryClass("topic", "/", {"topic": TOPIC_FILTERED}),
        QueryClass("author", "/", {"author": surname}),
        QueryClass("page 50, common word", "/", {"q": common, "page": deep_page(stats)}),
        QueryClass("JSON API, common word", "/api/papers", {"q": common}, "api"),
        *meaning,
    ]


def deep_page(stats: dict) -> int:
    """``DEEP_PAGE``, or in a corpus too small to have it, a page that exists: a page past
    the last reachable one is a 400 (the relevance ranking reaches its newest candidates
    only). Four fifths of the estimated matches: the share is a sample's."""
    from django.conf import settings

    matches = stats["top_terms"][0][1] * stats["papers"]
    reachable = min(matches, settings.SEARCH_RANK_CANDIDATES) * 0.8
    return max(1, min(DEEP_PAGE, int(reachable // PAGE_SIZE)))


def warm_up_url(stats: dict) -> str:
    """A search by meaning outside the mix: each worker loads the embedding model on its first
    one (~0.2 s), once per process, as a live site's workers have long done."""
    word = stats["top_terms"][1][0] if len(stats["top_terms"]) > 1 else "learning"
    return f"/?{urlencode({'q': word, 'mode': 'semantic'})}"


def _first_phrase(stats: dict) -> str:
    """The most frequent bigram that is not a piece of a URL."""
    for phrase, _ in stats["top_phrases"]:
        if not {"https", "http", "github", "com", "www"} & set(phrase.split()):
            return phrase
    return "language models"


# --- timing -------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (with 30 samples, p99 is the slowest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass
class Latency:
    samples: list[float]  # seconds
    errors: int
    first: float = float("nan")  # seconds: the first request, before anything was cached

    def ms(self, pct: float) -> float:
        return percentile(self.samples, pct) * 1000 if self.samples else float("nan")


def measure_latency(
    client: httpx.Client, url: str, requests: int, warmups: int, budget: float = math.inf
) -> Latency:
    """Sequential GETs: ``warmups`` untimed, then ``requests`` timed (errors are non-200s).

    A class whose timed requests have taken ``budget`` seconds stops early once it has
    ``MIN_SAMPLES``: at a million papers a seconds-slow page would otherwise take the
    benchmark hours, and its percentiles say "slow" with five samples as well as with 30.
    """
    errors = 0
    first = float("nan")
    for attempt in range(warmups):
        started = time.perf_counter()
        errors += _get(client, url) is None
        elapsed = time.perf_counter() - started
        if attempt == 0:
            first = elapsed
        if elapsed > SLOW_WARMUP:
            break  # caches are warm after one such request; more would only cost minutes
    samples: list[float] = []
    spent = 0.0
    for _ in range(requests):
        started = time.perf_counter()
        ok = _get(client, url)
        elapsed = time.perf_counter() - started
        spent += elapsed
        if ok is None:
            errors += 1
        else:
            samples.append(elapsed)
        if spent > budget and len(samples) >= MIN_SAMPLES:
            break
    return Latency(samples, errors, first)


def warm_up(client: httpx.Client, url: str, workers: int) -> None:
    """A worker's first list page pays for imports, URL and template loading and its first
    connection: pay it here (``url``: a cheap list page, so this stays short at any size).
    ``workers`` requests at once, three times: each sync worker takes one of each round, where
    sequential requests may all land on the same worker."""
    base_url = str(client.base_url)
    for _ in range(3):
        threads = [
            threading.Thread(target=_get_new_client, args=(base_url, url)) for _ in range(workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _get_new_client(base_url: str, url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=120) as client:
        _get(client, url)


def _get(client: httpx.Client, url: str) -> bytes | None:
    try:
        response = client.get(url)
    except httpx.HTTPError:
        return None
    return response.content if response.status_code == 200 else None


@dataclass
class Throughput:
    concurrency: int
    seconds: float
    completed: int
    errors: int

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def measure_throughput(base_url: str, urls: list[str], concurrency: int, duration: float):
    """``concurrency`` threads, each looping over the mix until ``duration`` has passed."""
    deadline = time.monotonic() + duration
    counts = [[0, 0] for _ in range(concurrency)]

    def worker(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            turn = index
            while time.monotonic() < deadline:
                ok = _get(client, urls[turn % len(urls)])
                counts[index][0 if ok is not None else 1] += 1
                turn += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return Throughput(concurrency, elapsed, sum(c[0] for c in counts), sum(c[1] for c in counts))


# --- the bench database and child processes -------------------------------------------------


def recreate_database(server_url: str, name: str) -> None:
    drop_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_version(server_url: str) -> str:
    with psycopg.connect(server_url) as conn:
        return conn.execute("SELECT version()").fetchone()[0]


def site_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The environment of a production-like process on the bench database."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DEBUG": "0",
        "HTTPS_ONLY": "0",  # served on loopback http: no redirect to https, no HSTS
        "SECRET_KEY": "bench-" + "x" * 44,  # 50 characters; nothing here is secret
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }


def command_line(arguments: list[str]) -> list[str]:
    """``manage.py ARGUMENTS``, or ``python -m tests.bench ARGUMENTS`` for a benchmark command
    (they are not ``manage.py``'s)."""
    from tests.bench.commands import NAMES

    runner = ["-m", "tests.bench"] if arguments[0] in NAMES else ["manage.py"]
    return [sys.executable, *runner, *arguments]


def manage(arguments: list[str], env: dict[str, str], cwd: Path) -> float:
    """Run ``manage.py ARGUMENTS`` (or a benchmark command) in a child; its wall time in
    seconds. Fails loudly."""
    return manage_output(arguments, env, cwd)[0]


def manage_output(arguments: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """``manage`` that also returns what the command printed (its stdout)."""
    started = time.perf_counter()
    child = subprocess.run(
        command_line(arguments), cwd=cwd, env=env, capture_output=True, text=True
    )
    if child.returncode != 0:
        raise RuntimeError(
            f"{' '.join(arguments)} failed ({child.returncode}):\n"
            f"{child.stdout[-3000:]}\n{child.stderr[-3000:]}"
        )
    return time.perf_counter() - started, child.stdout


_EMBEDDED = re.compile(r"Embedded (\d+) papers in ([\d.]+) s \(([\d.]+) papers/s\)")


def embed(env: dict[str, str], cwd: Path) -> dict:
    """``manage.py embed`` (the backfill) on the bench database in a child, then VACUUM ANALYZE
    of the embeddings (what autovacuum would soon do: the planner sees them, index-only
    scans work). Its papers, the command's own seconds and rate (papers read, embedded and
    upserted, after the model's load) and the child's wall time (Python and Django start too)."""
    wall, printed = manage_output(["embed", "--no-progress"], env, cwd)
    found = _EMBEDDED.search(printed)
    if found is None:
        raise RuntimeError(f"manage.py embed printed no rate:\n{printed[-3000:]}")
    started = time.perf_counter()
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE catalogue_paperembedding")
    return {
        "papers": int(found[1]),
        "seconds": float(found[2]),
        "rate": float(found[3]),
        "wall_seconds": wall,
        "analyze_seconds": time.perf_counter() - started,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn(env: dict[str, str], cwd: Path, log: Path, workers: int = 4) -> Iterator[str]:
    """``gunicorn catalogue.wsgi`` on a free loopback port; yields its base URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "catalogue.wsgi", "-w", str(workers),
        "-b", f"127.0.0.1:{port}", "--error-logfile", str(log),
        # Above gunicorn's default 30 s: a page slower than that is measured, not killed.
        "--timeout", str(WORKER_TIMEOUT),
    ]  # fmt: skip
    # The application's own log lines (a 500's traceback) go to the log too.
    with open(log, "ab") as application_log:
        server = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=application_log
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(server, base_url, log)
        yield base_url
    finally:
        server.terminate()  # gunicorn's graceful stop: workers finish their request
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_serving(server: subprocess.Popen, base_url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            # The login page: served by every worker without touching the papers.
            if httpx.get(f"{base_url}/admin/login/", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within 60 s:\n{log.read_text()[-3000:]}")


# --- machine ----------------------------------------------------------------------------------


def machine(server_url: str) -> dict[str, str]:
    return {
        "cores": str(os.cpu_count()),
        "memory": _memory(),
        "cpu": _cpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": server_version(server_url).split(" on ")[0],
        # The machine is shared: other work running during the benchmark shows here.
        "load average at the end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _memory() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# --- results and the report -------------------------------------------------------------------


@dataclass
class ClassResult:
    query: QueryClass
    latency: Latency
    floor_ms: float
    matches: int
    sql_queries: int
    sql_ms: float
    slowest_ms: float
    slowest_sql: str = ""
    plan: str = ""
    statements: list = field(default_factory=list)  # [ms, gist] of every statement of the page
    floor_error: str = ""  # the floor's exception, when it raised one (the page fails too)

    @property
    def ratio(self) -> float:
        return self.latency.ms(50) / self.floor_ms if self.floor_ms else float("nan")


@dataclass
class SizeResult:
    papers: int
    generate_seconds: float | None  # None: the corpus came from the cache
    ingest_seconds: float
    prepare: dict
    classes: list[ClassResult]
    throughput: list[Throughput]
    corpus_check: str
    reference_rate: float | None = None  # rows/s of copy_reference, taken after the ingest
    embedding: dict | None = None  # ``embed``'s figures; None: no embeddings at this size
    embed_up_to: int | None = None  # the largest size embedded (--embed-up-to)

    @property
    def ingest_rate(self) -> float:
        return self.papers / self.ingest_seconds


# The search vector's expression as the migrations created it.
_VECTOR_EXPRESSION = """
    SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
    JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
    WHERE d.adrelid = 'catalogue_paper'::regclass AND a.attname = 'search_vector'
"""


def copy_reference(database_url: str, limit: int | None = None) -> tuple[int, float]:
    """(rows, seconds) of PostgreSQL's bare cost for papers already in the catalogue: one
    connection COPYing their titles and abstracts (read beforehand) into a table with the
    catalogue's generated search vector and its GIN index.

    These machines' speed drifts by tens of percent within an hour; an ingest rate is only
    comparable across runs as a ratio to this reference, taken at the same moment.
    """
    source = "SELECT title, abstract FROM catalogue_paper ORDER BY id"
    if limit:
        source += f" LIMIT {int(limit)}"
    with psycopg.connect(database_url) as conn:
        with conn.cursor().copy(f"COPY ({source}) TO STDOUT") as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
        (vector,) = conn.execute(_VECTOR_EXPRESSION).fetchone()
        conn.execute(
            "CREATE TEMP TABLE reference (title text, abstract text, search_vector tsvector"
            f" GENERATED ALWAYS AS ({vector}) STORED)"
        )
        conn.execute("CREATE INDEX ON reference USING gin (search_vector)")
        started = time.perf_counter()
        with conn.cursor().copy("COPY reference (title, abstract) FROM STDIN") as copy:
            copy.write(data)
        conn.commit()
        seconds = time.perf_counter() - started
        (rows,) = conn.execute("SELECT count(*) FROM reference").fetchone()
    return rows, seconds


def _reference_line(result: SizeResult) -> str:
    if not result.reference_rate:
        return ""
    return (
        f" Reference at the same moment (one connection COPYing the papers' text into a table"
        f" with the generated search vector and its GIN index): {result.reference_rate:,.0f}"
        f" rows/s, so ingest ran at {result.ingest_rate / result.reference_rate:.2f}x it."
    )


NO_EMBEDDINGS = " (no embeddings at this size)"


def _embedding_line(result: SizeResult) -> str:
    e = result.embedding
    if e is None:
        limit = f" (`--embed-up-to {result.embed_up_to}`)" if result.embed_up_to else ""
        return (
            f"No embeddings at this size{limit}: classes marked{NO_EMBEDDINGS} search by "
            "meaning among no papers (hybrid = the keyword ranking + the query's embedding + "
            "an empty nearest-neighbour scan; semantic and more like this find nothing)."
        )
    return (
        f"Embeddings (`manage.py embed`, the backfill, child process, after ingest and "
        f"prepare): {e['papers']:,} papers in {e['seconds']:.1f} s, **{e['rate']:,.1f} "
        f"papers/s** ({e['wall_seconds']:.1f} s with the process's start and the model's "
        f"load); VACUUM ANALYZE of the embeddings {e['analyze_seconds']:.1f} s."
    )


def class_label(result: SizeResult, query: QueryClass) -> str:
    marked = result.embedding is None and query.uses_meaning
    return query.name + (NO_EMBEDDINGS if marked else "")


def markdown_table(result: SizeResult) -> str:
    lines = [
        f"### {result.papers:,} papers",
        "",
        f"Ingest (`manage.py ingest FILE --inline`, child process): {result.ingest_seconds:.1f} s, "
        f"**{result.ingest_rate:,.0f} papers/s**.{_reference_line(result)} "
        f"{_prepare_line(result.prepare)}",
        "",
        _embedding_line(result),
        "",
        "| query class | URL | matches | first ms | n | p50 ms | p95 ms | p99 ms | floor ms "
        "| p50/floor | page SQL (queries, ms) | slowest query ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result.classes:
        lines.append(
            f"| {class_label(result, row.query)} | `{row.query.url}` | {row.matches:,} "
            f"| {row.latency.first * 1000:.1f} | {len(row.latency.samples)} "
            f"| {row.latency.ms(50):.1f} "
            f"| {row.latency.ms(95):.1f} | {row.latency.ms(99):.1f} | {row.floor_ms:.1f} "
            f"| {row.ratio:.1f}x | {row.sql_queries}, {row.sql_ms:.1f} | {row.slowest_ms:.1f} "
            f"| {row.latency.errors} |"
        )
    failed = [row for row in result.classes if row.floor_error]
    if failed:
        lines += ["", "Floors that raised (their pages answer 500 too):", ""]
        lines += [f"- {row.query.name}: `{row.floor_error[:300]}`" for row in failed]
    if result.throughput:
        lines += ["", "| concurrency | seconds | requests | requests/s | errors |"]
        lines.append("|---:|---:|---:|---:|---:|")
        for t in result.throughput:
            figures = f"{t.seconds:.1f} | {t.completed:,} | {t.rate:.1f} | {t.errors}"
            lines.append(f"| {t.concurrency} | {figures} |")
    return "\n".join(lines)


# p50 / p95 ms at 1,000,000 papers before the search work of issue 6 (docs/benchmarks.md of
# 2026-11-30, commit 7e727fb: ts_rank over every match, exact counts and facets).
BASELINE_1M = {
    "rare word": (1359.7, 1937.0),
    "common word": (17615.1, 21365.2),
    "phrase": (1301.8, 1525.3),
    "common phrase": (15289.4, 19240.0),
    "phrase + dates": (174.5, 216.8),
    "top of a month": (96.8, 127.8),
    "trending": (4318.3, 4572.1),
    "topic": (2546.7, 3203.7),
    "author": (10624.9, 15453.4),
    "page 50, common word": (17047.7, 17677.8),
    "JSON API, common word": (9900.6, 11054.5),
}
BASELINE_1M_THROUGHPUT = {8: 0.2, 32: 0.2}


def before_after(results: list[SizeResult]) -> list[str]:
    """At 1,000,000 papers: this run beside the baseline, class by class."""
    result = next((r for r in results if r.papers == 1_000_000), None)
    if result is None:
        return []
    lines = [
        "## Before and after at 1,000,000 papers",
        "",
        "Before: the run of 2026-11-30 (commit 7e727fb), ranking every match and counting "
        "every match exactly. After: this run.",
        "",
        "| query class | before p50 ms | before p95 ms | first ms | p50 ms | p95 ms "
        "| p95 speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result.classes:
        before = BASELINE_1M.get(row.query.name)
        if before is None:
            continue
        p95 = row.latency.ms(95)
        lines.append(
            f"| {row.query.name} | {before[0]:,.1f} | {before[1]:,.1f} "
            f"| {row.latency.first * 1000:,.1f} | {row.latency.ms(50):,.1f} | {p95:,.1f} "
            f"| {before[1] / p95:,.0f}x |"
        )
    lines.append("")
    for t in result.throughput:
        old = BASELINE_1M_THROUGHPUT.get(t.concurrency)
        if old is not None:
            lines.append(f"- requests/s at concurrency {t.concurrency}: {old} → {t.rate:.1f}")
    return [*lines, ""]


def _prepare_line(prepare: dict) -> str:
    topics = ", ".join(f"{slug} {count:,}" for slug, count in prepare.get("topics", {}).items())
    tagging = f"Topics tagged (papers): {topics}." if topics else prepare.get("note", "")
    estimate = prepare.get("estimated_rows")
    if estimate is not None:
        from django.conf import settings

        below = estimate < settings.SUMMARY_EXACT_BELOW
        estimate = (
            f" PostgreSQL's estimate of the papers: {estimate:,} rows, so "
            + (
                "every count and facet is exact"
                if below
                else "large result sets are summarised from the sample"
            )
            + f" (the switch: {settings.SUMMARY_EXACT_BELOW:,})."
        )
    return (
        f"VACUUM ANALYZE {prepare['analyze_seconds']:.1f} s; {tagging} Trending scores refreshed "
        f"for {prepare['trending_changed']:,} papers in {prepare['trending_seconds']:.1f} s."
        f"{estimate or ''}"
    )


def plans_section(result: SizeResult) -> str:
    """EXPLAIN ANALYZE of each class's slowest statement, for whoever optimises them."""
    parts = [f"### Slowest statement of each page at {result.papers:,} papers", ""]
    for row in result.classes:
        parts += [
            f"**{row.query.name}** (`{row.query.url}`): its statements, in order:",
            "",
            *[f"- {ms:.1f} ms: `{gist}`" for ms, gist in row.statements],
            "",
            f"The slowest ({row.slowest_ms:.1f} ms) with its plan:",
            "",
            "```",
            row.slowest_sql[:1500],
            "",
            row.plan,
            "```",
            "",
        ]
    return "\n".join(parts)


def throughput_urls(classes: list[QueryClass]) -> list[str]:
    return [q.url for q in classes]


def to_json(classes: list[QueryClass]) -> str:
    return json.dumps([asdict(q) for q in classes])


def from_json(text: str) -> list[QueryClass]:
    return [QueryClass(**item) for item in json.loads(text)]


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


# --- inside the bench database (run by ``bench_site --stage`` in a child process) -------------


def prepare(today) -> dict:
    """Topics tagged by their rules, trending scores, then VACUUM ANALYZE: a settled catalogue.
    Also picks the paper of "more like this" (``like``)."""
    from catalogue import trending

    result = {"topics": {}, "note": "", "like": like_paper()}
    try:
        from catalogue import tagging
    except ImportError:
        tagging = None
        result["note"] = "catalogue.tagging is missing: topics were not tagged."
    if tagging is not None:
        result["topics"] = _tag_topics(tagging)
    started = time.perf_counter()
    result["trending_changed"] = trending.refresh_scores(today)
    result["trending_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    from django.db import connection

    with connection.cursor() as cursor:
        # Vacuum too: a live catalogue's visibility map is set (autovacuum), so index-only scans
        # work; a freshly loaded one's is not.
        cursor.execute("VACUUM ANALYZE")
    result["analyze_seconds"] = time.perf_counter() - started
    # Pages summarise exactly below SUMMARY_EXACT_BELOW papers by this estimate, from a
    # sample above: at a size near it (100,000) ANALYZE's estimate picks the path.
    from catalogue.summary import _table_rows

    result["estimated_rows"] = _table_rows()
    return result


def like_paper() -> str | None:
    """The public id of the visible paper with the most upvotes (the lowest id among equals):
    the kind of paper a reader asks for more like."""
    from django.db.models import F

    from catalogue.models import Paper

    paper = Paper.objects.visible().order_by(F("upvotes").desc(nulls_last=True), "id").first()
    return paper.slug if paper else None


def _tag_topics(tagging) -> dict[str, int]:
    from catalogue.models import PaperTopic, Topic

    counts = {}
    for name, slug, query in TOPICS:
        defaults = {"name": name, "query": query}
        topic, _ = Topic.objects.update_or_create(slug=slug, defaults=defaults)
        tagging.retag(topic)
        counts[slug] = PaperTopic.objects.filter(topic=topic).count()
    return counts


def floors(classes: list[QueryClass], runs: int = 5) -> list[dict]:
    """Per class: the floor (main query alone), the match count and the page's SQL."""
    from catalogue.filters import Sort

    rows = []
    for query in classes:
        paper_filter = main_filter(query)
        try:
            if paper_filter.sort_order == Sort.RELEVANCE:
                page = relevance_page(query)
            else:
                queryset = paper_filter.qs
                offset = (query.page - 1) * PAGE_SIZE

                def page(queryset=queryset, offset=offset):
                    return list(queryset[offset : offset + PAGE_SIZE])

            floor_ms = _timed_median(page, runs)
        except Exception as exc:  # noqa: BLE001 - the page fails too: reported as its error
            floor_ms, floor_error = float("nan"), f"{type(exc).__name__}: {exc}"
        else:
            floor_error = ""
        # Every match, exactly (pages estimate large counts; see catalogue.summary).
        floor = {"floor_ms": floor_ms, "floor_error": floor_error}
        floor["matches"] = paper_filter.matches.count()
        rows.append({**floor, **page_sql(query)})
    return rows


def _timed_median(run, runs: int) -> float:
    """Median ms of ``run()`` over ``runs`` calls after one untimed warm-up (caches, plans)."""
    started = time.perf_counter()
    run()
    slow = time.perf_counter() - started > SLOW_WARMUP
    samples = []
    for _ in range(3 if slow else runs):  # seconds-slow queries: fewer runs say as much
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return median_ms(samples)


def relevance_page(query: QueryClass):
    """A function loading the page of a relevance-ordered class as a new query does: the
    filter built and validated, its ranking computed with every cache off (Redis, and the
    process's memos of parsed queries and query embeddings), the page's papers loaded by id.
    The match count the ranking is given (it picks how the newest candidates are found) is
    the page's summary count, computed once beforehand."""
    from django.test import override_settings

    from catalogue import embedder, search
    from catalogue.summary import summarise

    count = summarise(main_filter(query).matches).count
    offset = (query.page - 1) * PAGE_SIZE

    # The memos of parsing (whatever catalogue.search keeps) and of query embeddings; not the
    # model itself, which a worker loads once.
    memos = [f for f in vars(search).values() if hasattr(f, "cache_clear")]
    memos += [f for f in [getattr(embedder, "_embed_query", None)] if f is not None]

    def page() -> list:
        for memo in memos:
            memo.cache_clear()
        with override_settings(SUMMARY_CACHE_SECONDS=0):
            results = main_filter(query).results(matches=count)
            return list(results[offset : offset + PAGE_SIZE])

    return page


def main_filter(query: QueryClass):
    """The page's FilterSet: ``.qs`` is the ordered QuerySet whose slice the page shows."""
    from django.http import QueryDict

    from catalogue.filters import PaperFilter, Sort
    from catalogue.models import Paper

    params = {k: v for k, v in query.params.items() if k != "page"}
    data = QueryDict(urlencode(params, doseq=True), mutable=True)
    papers = Paper.objects.visible()
    if query.scope.startswith("month:"):
        start, end = _month_bounds(query.scope.removeprefix("month:"))
        papers = papers.published_between(start, end)
        data.setdefault("sort", Sort.UPVOTES)  # as catalogue.views._window does
    return PaperFilter(data, queryset=papers)


def _month_bounds(month: str):
    import datetime as dt

    start = dt.date.fromisoformat(f"{month}-01")
    end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return start, end


def page_sql(query: QueryClass) -> dict:
    """Run the page once in-process (after a warm-up), timing every SQL statement, with the
    caches off: the SQL a new query costs (repeated ones are served from Redis)."""
    from django.db import connection
    from django.test import Client, override_settings

    # The page as a new query costs it: neither its counts, ranking nor HTML cached.
    with override_settings(PAGE_CACHE_SECONDS=0, SUMMARY_CACHE_SECONDS=0):
        # A failing page is a status 500 here (an error in the report), not a crash.
        return _timed_page(Client(raise_request_exception=False), connection, query)


def _timed_page(client, connection, query: QueryClass) -> dict:
    client.get(query.url, HTTP_HOST="127.0.0.1")
    statements: list[tuple[float, str, object, dict]] = []
    planner: dict[str, str] = {}  # SET LOCAL settings in force (catalogue.summary sets some)

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append((time.perf_counter() - started, sql, params, dict(planner)))
            _follow_settings(sql, planner)

    with connection.execute_wrapper(timed):
        status = client.get(query.url, HTTP_HOST="127.0.0.1").status_code
    seconds, sql, params, settings = max(
        statements, key=lambda s: s[0], default=(0.0, "", None, {})
    )
    return {
        "statements": [[s[0] * 1000, _shorten(s[1])] for s in statements],
        "status": status,
        "sql_queries": len(statements),
        "sql_ms": sum(s[0] for s in statements) * 1000,
        "slowest_ms": seconds * 1000,
        "slowest_sql": _compose(sql, params),
        "plan": explain(sql, params, settings) if sql else "",
    }


def _follow_settings(sql: str, planner: dict[str, str]) -> None:
    words = sql.split()
    if words[:2] == ["SET", "LOCAL"] and len(words) == 5:
        planner[words[2]] = words[4]
    elif words[:1] == ["RESET"] and len(words) == 2:
        planner.pop(words[1], None)


def _shorten(sql: str, length: int = 150) -> str:
    """A statement's gist: a long column list is noise, the rest tells."""
    head, _, rest = sql.partition(" FROM ")
    if head.count(",") > 5:
        head = "SELECT <columns>"
    text = f"{head} FROM {rest}" if rest else head
    return text if len(text) <= length else text[: length - 1] + "…"


def _cut(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def _compose(sql: str, params) -> str:
    from django.db import connection

    try:
        return connection.ops.compose_sql(sql, params)
    except Exception:  # noqa: BLE001 - only for display
        return f"{sql}  -- params: {params!r}"


def explain(sql: str, params, settings: dict | None = None, max_lines: int = 40) -> str:
    """The statement's plan, with the planner settings it ran with."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        for name, value in (settings or {}).items():
            cursor.execute(f"SET LOCAL {name} = {value}")
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        # A query embedding's 384 numbers in a sort key or filter line: cut them short.
        lines = [_cut(row[0], 300) for row in cursor.fetchall()]
        transaction.set_rollback(True)  # the settings end here
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"… {len(lines) - max_lines} more lines"]
    settings_line = [", ".join(f"{n} = {v}" for n, v in settings.items())] if settings else []
    return "\n".join(settings_line + lines)
