"""The site benchmark's parts: the pages, the bench database, gunicorn, timing, the report.

``bench_site`` strings these together. Work on the bench database runs in child
processes (``DATABASE_URL`` pointing at it), so the command never touches the catalogue's own
database, and its figures include what a real deployment pays (its own processes, its own
connections).

Definitions used in the report:

- *new queries*: per page class of the load test's mix (``loadtest.workload``: rare and
  common words, two words, phrases of two real adjacent words, authors, topics, date ranges,
  sorted browse pages, the API, paper pages, feeds, day/week/month pages), distinct URLs
  drawn from the corpus's own vocabulary, each requested once, in sequence, from an httpx
  client on 127.0.0.1 to ``gunicorn -w 4`` (sync workers, ``DEBUG=0``) started with the page
  and summary caches off (``PAGE_CACHE_SECONDS=0``, ``SUMMARY_CACHE_SECONDS=0``): every
  answer is computed, as for a query nobody asked before;
- *cached*: the class's first URL requested again and again (after warm-ups) from a gunicorn
  with the production cache settings: what Redis serves a repeated query;
- *floor*: per URL, the cheapest SQL that answers the page, its main query alone, in a child
  process on the bench database (median of 3 runs after one warm-up); the class's floor is
  the median over its URLs (``floor_query`` says what it is for each kind of page). Pages
  run more SQL than that (counts, facets, timeline, highlights): the *page SQL* column gives
  all of it for the class's first URL, measured by running the page once in-process with a
  timing execute wrapper;
- *throughput*: threads requesting distinct URLs of the same mix, each once, caches off;
  the CPU it cost, the whole machine's and split between the database server's processes
  and gunicorn's (``process_tree_cpu``): what the database spends alone bounds what any
  change to the site's Python can reach on these cores.
"""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import httpx
import psycopg

MIN_SAMPLES = 5
SLOW_WARMUP = 2.0  # seconds

# What a new query finds cached: nothing of its own. No page, counts, ranking or neighbours,
# nor its embedding shared by another process (each process keeps its own memo, as in
# production). The server's environment, the floors and the profiler all use it.
CACHES_OFF = {"PAGE_CACHE_SECONDS": 0, "SUMMARY_CACHE_SECONDS": 0, "QUERY_VECTOR_CACHE_SECONDS": 0}


def caches_off_env() -> dict[str, str]:
    """``CACHES_OFF`` as a server's environment variables."""
    return {name: str(value) for name, value in CACHES_OFF.items()}


WORKER_TIMEOUT = 180  # seconds
PAGE_SIZE = 25  # catalogue.views.PAGE_SIZE and the API's default page size
FEED_SIZE = 50  # catalogue.feeds.FEED_SIZE

# Topics the benchmark creates and tags (name, slug, query in the search syntax).
TOPICS = [
    ("Linear attention", "linear-attention", '"linear attention" OR "linear transformer"'),
    ("Diffusion", "diffusion", "diffusion"),
    ("Reinforcement learning", "reinforcement-learning", '"reinforcement learning"'),
]


# --- the pages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One URL of the site, as the floor reads it."""

    url: str

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query))

    @property
    def page(self) -> int:
        return int(self.params.get("page", 1))

    @property
    def size(self) -> int:
        """Papers on the page: the API's ``page_size``, the feed's 50, else the list's 25."""
        if self.path.startswith("/feed/"):
            return FEED_SIZE
        return int(self.params.get("page_size", PAGE_SIZE))


def new_query_urls(vocabulary, seed: int, count: int) -> dict[str, list[str]]:
    """``count`` distinct URLs of each page class of the load test's mix
    (``loadtest.workload``), drawn from the corpus's own vocabulary."""
    from tests.bench.loadtest import workload

    return workload.urls_per_class(vocabulary, seed, count)


def warm_up_url(stats: dict) -> str:
    """A search by meaning outside the mix: each worker loads the embedding model on its first
    one (~0.2 s), once per process, as a live site's workers have long done."""
    word = stats["top_terms"][1][0] if len(stats["top_terms"]) > 1 else "learning"
    return f"/?{urlencode({'q': word, 'mode': 'semantic'})}"


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


def warm_up(client: httpx.Client, url: str, workers: int, rounds: int = 3) -> None:
    """A worker's first list page pays for imports, URL and template loading and its first
    connection: pay it here (``url``: a cheap list page, so this stays short at any size).
    ``workers`` requests at once, three times: each sync worker takes one of each round, where
    sequential requests may all land on the same worker."""
    base_url = str(client.base_url)
    for _ in range(rounds):
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
    # CPU seconds the run took: the whole machine's (every core, /proc/stat) and the client's
    # own (this process's threads); None where /proc/stat cannot be read.
    machine_cpu: float | None = None
    client_cpu: float = 0.0
    # CPU seconds of the database server's processes and of gunicorn's (``process_tree_cpu``);
    # None where they cannot be read (a database on another machine).
    database_cpu: float | None = None
    app_cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    @property
    def database_cpu_ms(self) -> float | None:
        """CPU a request cost the database server, per answer."""
        return _per_answer(self.database_cpu, self.completed)

    @property
    def app_cpu_ms(self) -> float | None:
        """CPU a request cost gunicorn (the site's Python), per answer."""
        return _per_answer(self.app_cpu, self.completed)

    @property
    def server_cpu_ms(self) -> float | None:
        """CPU a request cost the server (gunicorn and PostgreSQL, and whatever else ran on
        the machine meanwhile): the machine's busy time less the client's, per answer."""
        if self.machine_cpu is None or not self.completed:
            return None
        return max(self.machine_cpu - self.client_cpu, 0.0) * 1000 / self.completed

    def capacity(self, cores: int) -> float | None:
        """Requests a second the server could answer with every core busy on it alone: what
        the rate would be without the client sharing the machine (the client runs beside the
        server here, and on two cores its share is no small one)."""
        cost = self.server_cpu_ms
        return cores * 1000 / cost if cost else None


def _per_answer(cpu_seconds: float | None, answers: int) -> float | None:
    return cpu_seconds * 1000 / answers if cpu_seconds is not None and answers else None


def process_tree_cpu(pid: int | None) -> float | None:
    """CPU seconds process ``pid`` and every process under it have spent, those that have
    exited included (a parent's ``/proc/<pid>/stat`` counts the children it has reaped):
    a server's master and its workers or backends, whichever come and go. None where the
    process cannot be read (another machine's, or off Linux)."""
    if pid is None:
        return None
    processes = _processes()
    if pid not in processes:
        return None
    children: dict[int, list[int]] = {}
    for child, (parent, _) in processes.items():
        children.setdefault(parent, []).append(child)
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        total += processes[current][1]
        pending += children.get(current, [])
    return total


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of it and its reaped children) of every process
    ``/proc`` shows (``proc(5)``: utime, stime, cutime, cstime are fields 14-17)."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
        except OSError:  # gone meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after the command, which may hold spaces
        found[int(entry.name)] = (int(fields[1]), sum(map(int, fields[11:15])) / tick)
    return found


def postmaster_pid(database_url: str) -> int | None:
    """The database server's main process (a backend's parent), where it runs on this
    machine; else None."""
    with psycopg.connect(database_url) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        parent = _processes().get(backend)
    return parent[0] if parent else None


def machine_busy_seconds() -> float | None:
    """CPU seconds every core has spent busy since boot (``/proc/stat``: all but idle and
    waiting for I/O); None off Linux."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4] - ticks[7]  # steal: another guest's, not ours
    return busy / os.sysconf("SC_CLK_TCK")


def measure_throughput(
    base_url: str,
    urls: list[str],
    concurrency: int,
    duration: float,
    *,
    app_pid: int | None = None,
    database_pid: int | None = None,
):
    """``concurrency`` threads taking the next URL of ``urls`` in turn until ``duration`` has
    passed: each URL is requested once at most (distinct URLs: new queries, never the cache);
    ``urls`` should hold more than the run can ask. ``app_pid`` and ``database_pid``: gunicorn's
    and the database server's main processes, whose CPU (theirs and their children's) the run
    measures too."""
    deadline = time.monotonic() + duration
    counts = [[0, 0] for _ in range(concurrency)]
    pending = iter(urls)
    lock = threading.Lock()

    def worker(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            while time.monotonic() < deadline:
                with lock:
                    url = next(pending, None)
                if url is None:
                    return
                ok = _get(client, url)
                counts[index][0 if ok is not None else 1] += 1

    database, app = process_tree_cpu(database_pid), process_tree_cpu(app_pid)
    started, busy, client = time.monotonic(), machine_busy_seconds(), time.process_time()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    client = time.process_time() - client
    busy_after = machine_busy_seconds()
    machine = None if busy is None or busy_after is None else busy_after - busy
    database = _grown(database, process_tree_cpu(database_pid))
    app = _grown(app, process_tree_cpu(app_pid))
    completed, errors = sum(c[0] for c in counts), sum(c[1] for c in counts)
    return Throughput(concurrency, elapsed, completed, errors, machine, client, database, app)


def _grown(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


# --- the bench database and child processes -------------------------------------------------


def recreate_database(server_url: str, name: str) -> None:
    drop_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def paper_count(database_url: str) -> int | None:
    """Papers in the database; None when it or its table does not exist."""
    try:
        with psycopg.connect(database_url) as conn:
            return conn.execute("SELECT count(*) FROM catalogue_paper").fetchone()[0]
    except psycopg.Error:
        return None


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


class ServedAt(str):
    """A server's base URL (a ``str``, as its callers use it) that knows the server's main
    process, ``pid``: what its workers' CPU is read under (``process_tree_cpu``)."""

    pid: int


@contextlib.contextmanager
def gunicorn(env: dict[str, str], cwd: Path, log: Path, workers: int = 4) -> Iterator[ServedAt]:
    """``gunicorn catalogue.wsgi`` on a free loopback port; yields its base URL (``ServedAt``)."""
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
    base_url = ServedAt(f"http://127.0.0.1:{port}")
    base_url.pid = server.pid
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
    name: str
    urls: list[str]  # the timed URLs, each requested once
    new: Latency  # one request per URL, the page and summary caches off
    cached: Latency  # the first URL again and again, caches on: what Redis serves
    floor_ms: float  # median over the URLs of each one's floor
    floor_errors: list[str] = field(default_factory=list)  # floors that raised
    sql_queries: int = 0  # the page SQL of the first URL, in-process, caches off
    sql_ms: float = 0.0
    slowest_ms: float = 0.0
    slowest_sql: str = ""
    plan: str = ""
    statements: list = field(default_factory=list)  # [ms, gist] of every statement of the page

    @property
    def ratio(self) -> float:
        return self.new.ms(50) / self.floor_ms if self.floor_ms else float("nan")

    @property
    def errors(self) -> int:
        return self.new.errors + self.cached.errors + len(self.floor_errors)


@dataclass
class SizeResult:
    papers: int
    generate_seconds: float | None  # None: the corpus came from the cache
    ingest_seconds: float | None  # None: an existing database was reused
    prepare: dict
    classes: list[ClassResult]
    throughput: list[Throughput]
    corpus_check: str
    reference_rate: float | None = None  # rows/s of copy_reference, taken after the ingest
    embedding: dict | None = None  # ``embed``'s figures; None: not run at this size
    embed_up_to: int | None = None  # the largest size embedded (--embed-up-to)
    standins: dict | None = None  # ``standin.fill``'s figures; None: none made by this run
    database: str = ""  # the bench database's name
    # (blocks read into the OS cache, seconds, blocks of them loaded into the shared buffers)
    prewarm: tuple[int, float, int] | None = None

    @property
    def ingest_rate(self) -> float:
        return self.papers / self.ingest_seconds if self.ingest_seconds else float("nan")


# The search vector's expression as the migrations created it.
_VECTOR_EXPRESSION = """
    SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
    JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
    WHERE d.adrelid = 'catalogue_paper'::regclass AND a.attname = 'search_vector'
"""


def prewarm(database_url: str) -> tuple[int, float, int] | None:
    """(blocks, seconds, buffered): every table, index and TOAST table of the database read
    once into the OS cache (``pg_prewarm``'s read mode), then as many as fit into nine
    tenths of the server's shared buffers loaded there too, the indexes first, then the
    smallest tables (its buffer mode), as a server up for a while has them; None where the
    server lacks the extension.

    Without it a freshly built catalogue measured pages not yet in memory: at a million
    papers a statement of 45 ms warm took 303 ms on its first run, and which URLs paid it
    depended on what the build had left in the cache. The OS cache alone was not enough:
    right after a restart (9.6 GB of buffers, 1M papers), a run's two-word p95 was 243 ms
    against 82 after two warm-up runs, each page it touched first copied into the buffers."""
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            started = time.perf_counter()
            relations = conn.execute(_PREWARMED).fetchall()
            blocks = sum(conn.execute(_PREWARM_READ, [oid]).fetchone()[0] for oid, _ in relations)
            buffered = _into_the_buffers(conn, relations)
    except psycopg.errors.FeatureNotSupported:
        return None
    except psycopg.errors.UndefinedFile:  # the extension's files are not installed
        return None
    return int(blocks), time.perf_counter() - started, buffered


# The database's own relations (no catalogs), indexes first, then by size, smallest first.
_PREWARMED = """
    SELECT c.oid, pg_relation_size(c.oid) / 8192 FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'i', 't', 'm')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND c.relpersistence = 'p'
    ORDER BY c.relkind <> 'i', pg_relation_size(c.oid), c.oid
"""
_PREWARM_READ = "SELECT pg_prewarm(%s, 'read')"


def _into_the_buffers(conn, relations: list[tuple[int, int]]) -> int:
    """Load into the shared buffers the ``relations`` (oid, blocks) ``buffer_plan`` picks
    for nine tenths of them (the rest is left for the pages' own work); the blocks loaded."""
    (room,) = conn.execute(
        "SELECT setting::bigint * 9 / 10 FROM pg_settings WHERE name = 'shared_buffers'"
    ).fetchone()
    loaded = (
        conn.execute("SELECT pg_prewarm(%s, 'buffer')", [oid])
        for oid in buffer_plan(relations, room)
    )
    return int(sum(cursor.fetchone()[0] for cursor in loaded))


def buffer_plan(relations: list[tuple[int, int]], room: int) -> list[int]:
    """The oids of ``relations`` (oid, blocks), in their order, each one whole that still
    fits in ``room`` blocks: one too large for the room left is skipped for smaller ones."""
    plan = []
    for oid, size in relations:
        if 0 < size <= room:
            plan.append(oid)
            room -= size
    return plan


def copy_reference(
    database_url: str, limit: int | None = None, *, newest: bool = False
) -> tuple[int, float]:
    """(rows, seconds) of PostgreSQL's bare cost for papers already in the catalogue: one
    connection COPYing their titles and abstracts (read beforehand) into a table with the
    catalogue's generated search vector and its GIN index. ``limit``: the first papers
    ingested, or with ``newest`` the last (those a run just added to a copy of a catalogue).

    These machines' speed drifts by tens of percent within an hour; an ingest rate is only
    comparable across runs as a ratio to this reference, taken at the same moment.
    """
    source = "SELECT id, title, abstract FROM catalogue_paper ORDER BY id"
    if newest:
        source += " DESC"
    if limit:
        source += f" LIMIT {int(limit)}"
    source = f"SELECT title, abstract FROM ({source}) AS papers ORDER BY id"
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


def _ingest_line(result: SizeResult) -> str:
    if result.ingest_seconds is None:
        return (
            f"Reused the database `{result.database}` (it held the corpus's "
            f"{result.papers:,} papers): not rebuilt, not re-ingested."
        )
    return (
        f"Ingest (`manage.py ingest FILE --inline`, child process): "
        f"{result.ingest_seconds:.1f} s, **{result.ingest_rate:,.0f} papers/s**."
        f"{_reference_line(result)}"
    )


def _prewarm_line(result: SizeResult) -> str:
    if result.prewarm is None:
        return (
            "The database was not read into memory before measuring (the server lacks "
            "pg_prewarm): the first requests may read from disk."
        )
    blocks, seconds, buffered = result.prewarm
    return (
        f"Before measuring, every table and index was read once into the OS cache "
        f"(`pg_prewarm`, {blocks * 8 / 1024:,.0f} MB in {seconds:.1f} s), and "
        f"{buffered * 8 / 1024:,.0f} MB of them (the indexes first, then the smallest tables, "
        "as many as fit in nine tenths of the shared buffers) into PostgreSQL's buffers, as "
        "on a server up for a while."
    )


def _embedding_line(result: SizeResult) -> str:
    e = result.embedding
    if e is None:
        embedded = result.prepare.get("embedded", 0)
        standins = result.prepare.get("standins", 0)
        line = (
            f"Papers with an embedding: {embedded:,} (`manage.py embed` runs at sizes up to "
            f"{result.embed_up_to or 0:,} papers, `--embed-up-to`)"
        )
        if standins:
            line += (
                f", {standins:,} of them stand-ins (`tests.bench.standin`: the model's vectors "
                "of the corpus's commonest words averaged over each paper's words, so the HNSW "
                "index and its scans are a real catalogue's size)"
            )
        line += (
            "; hybrid search (the default with `q`) adds the query's embedding and a "
            "nearest-neighbour scan among those."
        )
        s = result.standins
        if s:
            line += (
                f" Stand-ins made by this run: {s['papers']:,} papers from {s['words']:,} "
                f"words in {s['word_seconds']:.0f} s, written in {s['copy_seconds']:.0f} s, "
                f"HNSW index built in {s['index_seconds']:.0f} s."
            )
        return line
    return (
        f"Embeddings (`manage.py embed`, the backfill, child process, after ingest and "
        f"prepare): {e['papers']:,} papers in {e['seconds']:.1f} s, **{e['rate']:,.1f} "
        f"papers/s** ({e['wall_seconds']:.1f} s with the process's start and the model's "
        f"load); VACUUM ANALYZE of the embeddings {e['analyze_seconds']:.1f} s."
    )


TABLE_HEADER = (
    "| page class | n | p50 ms | p95 ms | p99 ms | SQL floor ms | p50/floor | p95/floor "
    "| cached p50 ms | cached p95 ms | page SQL (queries, ms) | errors | e.g. |"
)


def markdown_table(result: SizeResult) -> str:
    lines = [
        f"### {result.papers:,} papers",
        "",
        f"{_ingest_line(result)} {_prepare_line(result.prepare)}",
        "",
        _embedding_line(result),
        "",
        _prewarm_line(result),
        "",
        TABLE_HEADER,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result.classes:
        new, cached = row.new, row.cached
        floor = row.floor_ms
        lines.append(
            f"| {row.name} | {len(new.samples)} | {new.ms(50):.1f} | {new.ms(95):.1f} "
            f"| {new.ms(99):.1f} | {floor:.1f} | {row.ratio:.1f}x "
            f"| {new.ms(95) / floor if floor else float('nan'):.1f}x "
            f"| {cached.ms(50):.1f} | {cached.ms(95):.1f} "
            f"| {row.sql_queries}, {row.sql_ms:.1f} | {row.errors} | `{row.urls[0]}` |"
        )
    failed = [row for row in result.classes if row.floor_errors]
    if failed:
        lines += ["", "Floors that raised (their pages answer 500 too):", ""]
        lines += [f"- {row.name}: `{row.floor_errors[0][:300]}`" for row in failed]
    if result.throughput:
        lines += [
            "",
            "Throughput over distinct URLs of the same mix (each requested once, caches off):",
            "",
            "| concurrency | seconds | requests | requests/s | errors "
            "| machine CPU busy | client CPU | server CPU ms/request | server capacity req/s "
            "| PostgreSQL ms/request | gunicorn ms/request | PostgreSQL alone req/s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        cores = os.cpu_count() or 1
        for t in result.throughput:
            figures = f"{t.seconds:.1f} | {t.completed:,} | {t.rate:.1f} | {t.errors}"
            cpu = f"{_cpu_figures(t, cores)} | {_process_figures(t, cores)}"
            lines.append(f"| {t.concurrency} | {figures} | {cpu} |")
        lines += ["", THROUGHPUT_CPU_NOTE]
    return "\n".join(lines)


THROUGHPUT_CPU_NOTE = (
    "CPU columns (`/proc/stat`): the machine's busy share of all its cores during the run and"
    " the client's (the benchmark's own threads, on the same machine); the server's CPU per"
    " request is the machine's busy time less the client's, over the answers; its capacity"
    " is what every core spent on the server alone would answer (cores x 1000 / that)."
    " PostgreSQL's and gunicorn's columns: the CPU of the database server's processes and of"
    " gunicorn's (master, workers and their threads), `/proc/<pid>/stat` of each and of the"
    ' children it has reaped, over the answers; "PostgreSQL alone" is what every core would'
    " answer spending no CPU but the database's (cores x 1000 / its figure): a ceiling no"
    " change to the site's Python can lift."
)


def _process_figures(run: Throughput, cores: int) -> str:
    """The per-process CPU columns of a throughput row: the database's and gunicorn's
    milliseconds per request, and what the cores would answer with the database's alone."""
    database, app = run.database_cpu_ms, run.app_cpu_ms
    alone = f"{cores * 1000 / database:.0f}" if database else "-"
    return f"{_ms_or_dash(database)} | {_ms_or_dash(app)} | {alone}"


def _ms_or_dash(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.1f}"


def _cpu_figures(run: Throughput, cores: int) -> str:
    """The CPU columns of a throughput row: busy shares of the machine's cores, the server's
    milliseconds per request and what the cores would answer serving it alone."""
    if run.machine_cpu is None or not run.seconds:
        return "- | - | - | -"
    whole = cores * run.seconds
    shares = f"{run.machine_cpu / whole:.0%} | {run.client_cpu / whole:.0%}"
    cost, capacity = run.server_cpu_ms, run.capacity(cores)
    if not cost or not capacity:
        return f"{shares} | - | -"
    return f"{shares} | {cost:.1f} | {capacity:.0f}"


def _prepare_line(prepare: dict) -> str:
    topics = ", ".join(f"{slug} {count:,}" for slug, count in prepare.get("topics", {}).items())
    tagging = f"Topics (papers): {topics}." if topics else prepare.get("note", "")
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
    if "analyze_seconds" not in prepare:  # a reused database: prepared when it was built
        return f"{tagging}{estimate or ''}"
    return (
        f"VACUUM ANALYZE {prepare['analyze_seconds']:.1f} s; {tagging} Trending scores refreshed "
        f"for {prepare['trending_changed']:,} papers in {prepare['trending_seconds']:.1f} s. "
        f"Word pairs (phrases) of {prepare.get('paired', 0):,} papers in "
        f"{prepare.get('pairing_seconds', 0):.1f} s; common words' months: "
        f"{prepare.get('word_months', 0):,} built in {prepare.get('word_months_seconds', 0):.1f} s."
        f"{estimate or ''}"
    )


def plans_section(result: SizeResult) -> str:
    """EXPLAIN ANALYZE of each class's slowest statement, for whoever optimises them."""
    parts = [f"#### Slowest statement of each page at {result.papers:,} papers", ""]
    for row in result.classes:
        parts += [
            f"**{row.name}** (`{row.urls[0]}`): its statements, in order:",
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


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


# --- inside the bench database (run by ``bench_site --stage`` in a child process) -------------


def prepare(today) -> dict:
    """Topics tagged by their rules, trending scores, then VACUUM ANALYZE: a settled catalogue."""
    from catalogue import trending

    result = {"topics": {}, "note": ""}
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
    result.update(pair_phrases())
    started = time.perf_counter()
    from django.db import connection

    with connection.cursor() as cursor:
        # Vacuum too: a live catalogue's visibility map is set (autovacuum), so index-only scans
        # work; a freshly loaded one's is not.
        cursor.execute("VACUUM ANALYZE")
    result["analyze_seconds"] = time.perf_counter() - started
    return {**result, **describe()}


def pair_phrases() -> dict:
    """Every pending paper's word pairs (``catalogue.phrases``), as the worker's task makes them
    after an ingest: a bench catalogue is measured settled."""
    from catalogue import phrases

    started = time.perf_counter()
    paired = phrases.pair_all()
    return {
        "paired": paired,
        "pairing_seconds": time.perf_counter() - started,
        **build_word_months(),
    }


def build_word_months() -> dict:
    """A common word's month rows (``catalogue.wordmonths``), as the worker's task builds them
    after an ingest: the common words counted where none were, then every logged month."""
    from catalogue import wordmonths

    started = time.perf_counter()
    wordmonths.count_if_needed()
    built = wordmonths.build_all()
    return {"word_months": built, "word_months_seconds": time.perf_counter() - started}


def describe() -> dict:
    """What a prepared catalogue holds that the report tells: papers tagged per topic, papers
    with an embedding (stand-ins among them), and PostgreSQL's estimate of its papers (pages
    summarise exactly below SUMMARY_EXACT_BELOW by it, from a sample above: near it, at
    100,000, it picks the path)."""
    from catalogue.models import PaperEmbedding, PaperTopic
    from catalogue.summary import catalogue_size
    from tests.bench.standin import STANDIN_MODEL

    topics = {slug: PaperTopic.objects.filter(topic__slug=slug).count() for _, slug, _ in TOPICS}
    return {
        "topics": topics,
        "embedded": PaperEmbedding.objects.count(),
        "standins": PaperEmbedding.objects.filter(model=STANDIN_MODEL).count(),
        "estimated_rows": catalogue_size(),
    }


def _tag_topics(tagging) -> dict[str, int]:
    from catalogue.models import PaperTopic, Topic

    counts = {}
    for name, slug, query in TOPICS:
        defaults = {"name": name, "query": query}
        topic, _ = Topic.objects.update_or_create(slug=slug, defaults=defaults)
        tagging.retag(topic)
        counts[slug] = PaperTopic.objects.filter(topic=topic).count()
    return counts


def floors(classes: dict[str, list[str]], runs: int = 3) -> dict[str, dict]:
    """Per class: the median over its URLs of each URL's floor (its main query alone), the
    floors that raised, and the page SQL of its first URL."""
    rows = {}
    for name, urls in classes.items():
        samples, errors = [], []
        for url in urls:
            try:
                samples.append(_timed_median(floor_query(Page(url)), runs))
            except Exception as exc:  # noqa: BLE001 - the page fails too: reported as its error
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
        floor_ms = statistics.median(samples) if samples else float("nan")
        rows[name] = {"floor_ms": floor_ms, "floor_errors": errors, **page_sql(Page(urls[0]))}
    return rows


def _timed_median(run, runs: int) -> float:
    """Median ms of ``run()`` over ``runs`` calls after one untimed warm-up (caches, plans)."""
    started = time.perf_counter()
    run()
    slow = time.perf_counter() - started > SLOW_WARMUP
    samples = []
    for _ in range(1 if slow else runs):  # seconds-slow queries: fewer runs say as much
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return median_ms(samples)


def floor_query(page: Page):
    """A function running the cheapest SQL that answers ``page``: its main query alone.

    - a list, API or feed page in relevance order (a query or ``like`` without a sort):
      ``relevance_page``, the ranking computed afresh and the page's papers loaded;
    - in any other order: the filter's ordered QuerySet, the page's slice (the feed: its 50
      newest); a day, week or month page starts from the papers of its window;
    - a paper's page: the paper by its id.
    """
    from catalogue.filters import Sort

    if page.path.startswith("/papers/") and not page.path.startswith(WINDOWS):
        return _paper_by_id(page)
    paper_filter = main_filter(page)
    if not paper_filter.is_valid():
        raise ValueError(f"invalid parameters: {dict(paper_filter.errors)}")
    if page.path.startswith("/feed/"):
        queryset = paper_filter.qs
        if not paper_filter.cleaned.get("sort"):
            queryset = queryset.newest_first()  # as catalogue.feeds does
        return lambda: list(queryset[: page.size])
    if paper_filter.sort_order == Sort.RELEVANCE:
        return relevance_page(page)
    offset = (page.page - 1) * page.size
    queryset = paper_filter.qs
    return lambda: list(queryset[offset : offset + page.size])


WINDOWS = ("/papers/daily/", "/papers/week/", "/papers/month/")


def _paper_by_id(page: Page):
    from catalogue.models import Paper

    slug = unquote(page.path.removeprefix("/papers/").rstrip("/"))

    def paper():
        found = Paper.objects.visible().with_slug(slug).first()
        if found is None:
            raise LookupError(f"no paper {slug}")
        return found

    return paper


def relevance_page(page: Page):
    """A function loading a relevance-ordered page as a new query does: the filter built and
    validated, its ranking computed with every cache off (Redis, and the process's memos of
    parsed queries and query embeddings), the page's papers loaded by id. The match count
    the ranking is given (it picks how the newest candidates are found) is the page's
    summary count, computed once beforehand."""
    from django.test import override_settings

    from catalogue.summary import Summary, summarise

    count = summarise(main_filter(page).matches).count
    offset = (page.page - 1) * page.size

    def papers() -> list:
        forget_queries()
        with override_settings(**CACHES_OFF):
            # The ranking from its own matching (the summary's ids left out): what answers
            # the page's main query alone.
            results = main_filter(page).results(summary=Summary(count=count, exact=False))
            return list(results[offset : offset + page.size])

    return papers


def forget_queries() -> None:
    """Forget this process's memos of queries: their parsing (whatever catalogue.search keeps)
    and their embeddings, so the next request of a query pays for both as a new query does;
    not the model itself, which a worker loads once."""
    from catalogue import hybrid, search

    memos = [f for f in vars(search).values() if hasattr(f, "cache_clear")]
    for memo in [*memos, hybrid._query_vector]:
        memo.cache_clear()


def main_filter(page: Page):
    """The page's FilterSet: ``.qs`` is the ordered QuerySet whose slice the page shows."""
    from django.http import QueryDict

    from catalogue.filters import PaperFilter, Sort
    from catalogue.models import Paper

    params = {k: v for k, v in page.params.items() if k not in ("page", "page_size")}
    data = QueryDict(urlencode(params), mutable=True)
    papers = Paper.objects.visible()
    if page.path.startswith(WINDOWS):
        papers = papers.published_between(*window_bounds(page.path))
        data.setdefault("sort", Sort.UPVOTES)  # as catalogue.views._window does
    return PaperFilter(data, queryset=papers)


def window_bounds(path: str):
    """First and last day of a day, week or month page: /papers/daily/2025-11-27/,
    /papers/week/2025-W48/, /papers/month/2025-11/."""
    import calendar
    import datetime as dt

    kind, value = path.strip("/").split("/")[1:3]
    if kind == "daily":
        day = dt.date.fromisoformat(value)
        return day, day
    if kind == "week":
        year, week = value.split("-W")
        monday = dt.date.fromisocalendar(int(year), int(week), 1)
        return monday, monday + dt.timedelta(days=6)
    first = dt.date.fromisoformat(f"{value}-01")
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def page_sql(page: Page) -> dict:
    """Run the page once in-process (after a warm-up), timing every SQL statement, with the
    caches off: the SQL a new query costs (repeated ones are served from Redis)."""
    from django.db import connection
    from django.test import Client, override_settings

    # The page as a new query costs it: neither its counts, ranking nor HTML cached.
    with override_settings(**CACHES_OFF):
        # A failing page is a status 500 here (an error in the report), not a crash.
        return _timed_page(Client(raise_request_exception=False), connection, page)


def _timed_page(client, connection, page: Page) -> dict:
    client.get(page.url, HTTP_HOST="127.0.0.1")
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
        status = client.get(page.url, HTTP_HOST="127.0.0.1").status_code
    seconds, sql, params, settings = slowest_query(statements)
    return {
        "statements": [[s[0] * 1000, _shorten(s[1])] for s in statements],
        "status": status,
        "sql_queries": len(statements),
        "sql_ms": sum(s[0] for s in statements) * 1000,
        "slowest_ms": seconds * 1000,
        "slowest_sql": _compose(sql, params),
        "plan": explain(sql, params, settings) if sql else "",
    }


def slowest_query(statements: list[tuple[float, str, object, dict]]) -> tuple:
    """The slowest query of (seconds, sql, params, settings): a SET LOCAL or a savepoint can
    take longer on a busy machine, and has no plan to show."""
    queries = [s for s in statements if s[1].lstrip().upper().startswith(("SELECT", "WITH"))]
    return max(queries, key=lambda s: s[0], default=(0.0, "", None, {}))


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
