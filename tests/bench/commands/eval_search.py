"""``eval_search``: relevance of the catalogue's search, against a plain-FTS baseline.

Judgements come from the Hugging Face daily-papers files (``tests.bench.evaluation``): a lexical
development set (keywords tagging 5-14 papers), a held-out lexical set (15-40 papers: report
it, never tune on it) and a known-item set (reworded titles and first sentences of abstracts).

The evaluation runs on a database of its own on the same server, ``<name>_eval``: created and
migrated when missing, the daily files ingested with ``manage.py ingest --inline`` when it
lacks their papers, then ``manage.py embed`` (when the command exists) so semantic modes have
vectors. A child ``eval_search --here`` with ``DATABASE_URL`` pointing there then asks,
for every query, the baseline SQL (``websearch_to_tsquery`` matches ordered by ``ts_rank_cd``)
and the product's own answer, ``/api/papers?q=…&mode=…&page_size=50`` through the test client
with the caches off. ``--here`` alone evaluates whatever database this process uses, as is.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from django.conf import settings
from django.core.management import get_commands
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import Client, override_settings

from catalogue.dburl import url_from_settings
from catalogue.models import Paper
from tests.bench import evaluation
from tests.bench.evaluation import HELD_OUT, KNOWN, LEXICAL, Query

DAILY_DIR = Path(settings.BASE_DIR) / "tests/data/formats/hf_daily_papers/daily"
MODES = ("keyword", "semantic", "hybrid")
BASELINE = "baseline FTS"
DEFAULT = "api (no mode)"
DEPTH = evaluation.RECALL_DEPTH
HOST = "127.0.0.1"

# The plain-FTS reference the product must beat: all words required, cover density.
BASELINE_SQL = """
    SELECT arxiv_id FROM {table}
    WHERE NOT hidden AND search_vector @@ websearch_to_tsquery('english', %(q)s)
    ORDER BY ts_rank_cd(search_vector, websearch_to_tsquery('english', %(q)s)) DESC, id
    LIMIT %(depth)s
"""


def system_name(mode: str | None) -> str:
    return DEFAULT if mode is None else f"api mode={mode}"


@dataclass
class SystemRun:
    """One system's answers: rankings by query key and per-query wall time (ms)."""

    name: str
    rankings: dict[str, list[str]] = field(default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)
    rejected: str | None = None  # why the API refused this mode (reported as n/a)
    errors: int = 0  # queries answered 400 for another reason (scored as empty rankings)

    def median_ms(self) -> float | None:
        return statistics.median(self.ms.values()) if self.ms else None


# --- the core: rankings from the current database connection ----------------------------------


def baseline_ranking(text: str, depth: int = DEPTH) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(BASELINE_SQL.format(table=Paper._meta.db_table), {"q": text, "depth": depth})
        return [row[0] for row in cursor.fetchall()]


def api_ranking(client: Client, text: str, mode: str | None, depth: int = DEPTH):
    """(status, arXiv ids in the API's order, errors) of ``/api/papers`` for ``text``."""
    params = {"q": text, "page_size": depth}
    if mode is not None:
        params["mode"] = mode
    response = client.get("/api/papers", params, HTTP_HOST=HOST)
    body = response.json()
    if response.status_code != 200:
        return response.status_code, [], body.get("errors", {})
    return 200, [paper["arxiv_id"] for paper in body["results"] if paper["arxiv_id"]], {}


def evaluate(
    queries: list[Query], modes: list[str], *, default: bool = True, on_progress=None
) -> list[SystemRun]:
    """Every system's ranking of every query, from the current connection, caches off.

    Systems are asked in turn for each query (not one system after another), so a machine
    whose speed drifts during the run slows them all alike. ``default``: also ask without a
    mode (the API's default). The baseline's time is its SQL alone; an API system's is a whole
    request (parsing, count, ranking, JSON)."""
    baseline = SystemRun(BASELINE)
    asked = [None, *modes] if default else modes
    api_runs = {mode: SystemRun(system_name(mode)) for mode in asked}
    client = Client()
    # Its own host allowed: with DEBUG=0 the production settings allow only the site's.
    caches_off = {"SUMMARY_CACHE_SECONDS": 0, "PAGE_CACHE_SECONDS": 0}
    with override_settings(ALLOWED_HOSTS=[HOST], **caches_off):
        for number, query in enumerate(queries, 1):
            started = time.perf_counter()
            baseline.rankings[query.key] = baseline_ranking(query.text)
            baseline.ms[query.key] = (time.perf_counter() - started) * 1000
            # Rotated: the first to ask pays for what later ones find cached in-process.
            order = list(api_runs.items())
            for mode, run in order[number % len(order) :] + order[: number % len(order)]:
                if run.rejected is None:
                    _ask_api(client, run, query, mode)
            if on_progress:
                on_progress(number, len(queries))
    return [baseline, *api_runs.values()]


def _ask_api(client: Client, run: SystemRun, query: Query, mode: str | None) -> None:
    started = time.perf_counter()
    status, ranking, errors = api_ranking(client, query.text, mode)
    elapsed = (time.perf_counter() - started) * 1000
    if status == 400 and "mode" in errors:
        run.rejected = "; ".join(errors["mode"])
        run.rankings.clear()
        run.ms.clear()
        return
    if status != 200:
        run.errors += 1
    run.rankings[query.key] = ranking
    run.ms[query.key] = elapsed


def figures(runs: list[SystemRun], sets: dict[str, list[Query]]) -> dict:
    """{system: {set: Figures or None}} (None: the mode was rejected or the set is empty)."""
    return {
        run.name: {
            name: None if run.rejected else evaluation.score(queries, run.rankings)
            for name, queries in sets.items()
        }
        for run in runs
    }


def select_sets(papers, which: str, limit: int | None) -> dict[str, list[Query]]:
    built = evaluation.build_sets(papers)
    wanted = {"lexical": (LEXICAL, HELD_OUT), "known": (KNOWN,), "both": (LEXICAL, HELD_OUT, KNOWN)}
    return {name: built[name][:limit] for name in wanted[which]}


# --- the command ------------------------------------------------------------------------------


class Command(BaseCommand):
    help = "Search relevance (nDCG@10, recall@50, MRR) per API mode beside a plain-FTS baseline."

    def add_arguments(self, parser):
        parser.add_argument("--modes", nargs="*", default=list(MODES), help="API modes to ask")
        parser.add_argument("--set", dest="which", choices=["lexical", "known", "both"])
        parser.add_argument("--limit", type=int, help="at most N queries per set")
        parser.add_argument("--per-query", action="store_true", help="each lexical query's figures")
        parser.add_argument(
            "--json", dest="json_path", type=Path, help="write every ranking and figure here"
        )
        parser.add_argument("--data", type=Path, default=DAILY_DIR, help="HF daily JSON files")
        parser.add_argument(
            "--here",
            action="store_true",
            help="evaluate this process's own database as it is (no <name>_eval, no ingest)",
        )

    def handle(self, *args, here, data, **options):
        files = sorted(data.glob("*.json"))
        if not files:
            raise CommandError(f"no HF daily JSON files in {data}")
        if here:
            self._evaluate(files, **options)
            return
        started = time.perf_counter()
        eval_url = self._prepare(files)
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.bench",
                "eval_search",
                "--here",
                *self._passed_on(data, options),
            ],
            cwd=settings.BASE_DIR,
            env={**os.environ, "DATABASE_URL": eval_url},
        )
        if child.returncode != 0:
            raise CommandError(f"the evaluation failed ({child.returncode})")
        self.stdout.write(f"Total {time.perf_counter() - started:.0f} s")

    # The parent: the evaluation database, filled and embedded.

    def _prepare(self, files: list[Path]) -> str:
        db = settings.DATABASES["default"]
        name = f"{db['NAME']}_eval"
        server_url, eval_url = url_from_settings(db, "postgres"), url_from_settings(db, name)
        with psycopg.connect(server_url, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                self.stdout.write(f"Creating database {name}")
                conn.execute(f'CREATE DATABASE "{name}"')
        self._manage(["migrate", "-v0"], eval_url)
        papers = evaluation.read_daily(files)
        missing = self._missing(eval_url, [p.arxiv_id for p in papers])
        if missing:
            self.stdout.write(f"{name} lacks {missing:,} of {len(papers):,} papers: ingesting")
            started = time.perf_counter()
            for path in files:
                listed_on = ["--listed-on", path.stem] if _is_date(path.stem) else []
                self._manage(
                    ["ingest", "--inline", "--no-progress", *listed_on, str(path)], eval_url
                )
            self.stdout.write(
                f"Ingested {len(files)} files in {time.perf_counter() - started:.0f} s"
            )
        if "embed" in get_commands():
            started = time.perf_counter()
            self._manage(["embed"], eval_url, quiet=False)
            self.stdout.write(f"Embeddings up to date ({time.perf_counter() - started:.0f} s)")
        else:
            self.stdout.write("No `manage.py embed` command: semantic modes have no vectors")
        return eval_url

    @staticmethod
    def _missing(eval_url: str, arxiv_ids: list[str]) -> int:
        with psycopg.connect(eval_url) as conn:
            found = conn.execute(
                f"SELECT count(DISTINCT arxiv_id) FROM {Paper._meta.db_table} "
                "WHERE arxiv_id = ANY(%s)",
                [arxiv_ids],
            ).fetchone()[0]
        return len(set(arxiv_ids)) - found

    @staticmethod
    def _manage(arguments: list[str], database_url: str, quiet: bool = True) -> None:
        child = subprocess.run(
            [sys.executable, "manage.py", *arguments],
            cwd=settings.BASE_DIR,
            env={**os.environ, "DATABASE_URL": database_url},
            stdout=subprocess.DEVNULL if quiet else None,
        )
        if child.returncode != 0:
            raise CommandError(f"manage.py {' '.join(arguments)} failed ({child.returncode})")

    @staticmethod
    def _passed_on(data: Path, options: dict) -> list[str]:
        arguments = ["--data", str(data), "--modes", *options["modes"]]
        if options["which"]:
            arguments += ["--set", options["which"]]
        if options["limit"] is not None:
            arguments += ["--limit", str(options["limit"])]
        if options["per_query"]:
            arguments.append("--per-query")
        if options["json_path"]:
            arguments += ["--json", str(options["json_path"].resolve())]
        return arguments

    # The child (or --here): ask, score, print.

    def _evaluate(self, files: list[Path], *, modes, which, limit, per_query, json_path, **options):
        papers = evaluation.read_daily(files)
        sets = select_sets(papers, which or "both", limit)
        queries = [q for name in sets for q in sets[name]]
        in_db = Paper.objects.visible().filter(arxiv_id__in=[p.arxiv_id for p in papers]).count()
        self.stdout.write(
            f"Database {connection.settings_dict['NAME']}: {in_db:,} of {len(papers):,} papers "
            f"of {len(files)} daily files; "
            + ", ".join(f"{name} {len(qs)} queries" for name, qs in sets.items())
        )
        started = time.perf_counter()
        runs = evaluate(queries, modes, on_progress=self._progress)
        seconds = time.perf_counter() - started
        self.stderr.write("")
        scores = figures(runs, sets)
        self._print_tables(runs, sets, scores, seconds)
        if per_query and LEXICAL in sets:
            self._print_per_query(runs, sets[LEXICAL])
        if json_path:
            json_path.write_text(_dumps(runs, sets, scores, seconds))
            self.stdout.write(f"Wrote {json_path}")

    def _progress(self, number: int, total: int) -> None:
        if number % 25 == 0 or number == total:
            self.stderr.write(f"\r{number}/{total} queries", ending="")
            self.stderr.flush()

    def _print_tables(self, runs, sets, scores, seconds: float) -> None:
        w = self.stdout.write
        w(f"\nSearch relevance, {sum(len(q) for q in sets.values())} queries in {seconds:.0f} s\n")
        w(
            "| system | lexical dev nDCG@10 | R@50 | known-item nDCG@10 | R@50 | MRR "
            "| median ms | queries (dev + known) |"
        )
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for run in runs:
            dev, known = scores[run.name].get(LEXICAL), scores[run.name].get(KNOWN)
            cells = [*_cells(dev, "ndcg", "recall"), *_cells(known, "ndcg", "recall", "mrr")]
            median = run.median_ms()
            timing = "n/a" if run.rejected else f"{median:.1f}" if median is not None else "-"
            count = f"{dev.queries if dev else 0} + {known.queries if known else 0}"
            w(f"| {run.name} | {' | '.join(cells)} | {timing} | {count} |")
        if HELD_OUT in sets:
            w("\nheld-out (report only; do not tune): keywords tagging 15-40 papers\n")
            w("| system | held-out nDCG@10 | R@50 | queries |")
            w("|---|---:|---:|---:|")
            for run in runs:
                held = scores[run.name][HELD_OUT]
                count = held.queries if held else 0
                w(f"| {run.name} | {' | '.join(_cells(held, 'ndcg', 'recall'))} | {count} |")
        if KNOWN in sets:
            self._print_known_kinds(runs, sets[KNOWN])
        self._print_notes(runs)

    def _print_known_kinds(self, runs, queries: list[Query]) -> None:
        kinds = list(evaluation.count_by(queries, "kind"))
        w = self.stdout.write
        w("\nknown-item by rewording: MRR (R@50)\n")
        w(f"| system | {' | '.join(f'{k} ({n})' for k, n in _counted(queries, kinds))} |")
        w("|---|" + "---:|" * len(kinds))
        for run in runs:
            cells = []
            for kind in kinds:
                part = None
                if not run.rejected:
                    part = evaluation.score([q for q in queries if q.kind == kind], run.rankings)
                cells.append("n/a" if part is None else f"{part.mrr:.3f} ({part.recall:.2f})")
            w(f"| {run.name} | {' | '.join(cells)} |")

    def _print_notes(self, runs) -> None:
        for run in runs:
            if run.rejected:
                self.stdout.write(f"{run.name}: n/a, the API rejects it ({run.rejected})")
            elif run.errors:
                self.stdout.write(f"{run.name}: {run.errors} queries answered 400 (scored 0)")

    def _print_per_query(self, runs, queries: list[Query]) -> None:
        live = [run for run in runs if not run.rejected]
        w = self.stdout.write
        w("\nlexical dev, per query: nDCG@10 / R@50 (delta: first API system minus baseline)\n")
        w(f"| query | relevant | {' | '.join(r.name for r in live)} | delta nDCG |")
        w("|---|---:|" + "---:|" * len(live) + "---:|")
        for query in queries:
            per = [evaluation.query_figures(query, run.rankings[query.key]) for run in live]
            cells = [f"{f['ndcg']:.2f} / {f['recall']:.2f}" for f in per]
            delta = per[1]["ndcg"] - per[0]["ndcg"] if len(per) > 1 else 0.0
            w(f"| {query.text} | {len(query.relevant)} | {' | '.join(cells)} | {delta:+.2f} |")


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _cells(scores: evaluation.Figures | None, *names: str) -> list[str]:
    return ["n/a" if scores is None else f"{getattr(scores, name):.3f}" for name in names]


def _counted(queries: list[Query], kinds: list[str]):
    counts = evaluation.count_by(queries, "kind")
    return [(kind, counts[kind]) for kind in kinds]


def _dumps(runs: list[SystemRun], sets: dict[str, list[Query]], scores: dict, seconds) -> str:
    document = {
        "database": connection.settings_dict["NAME"],
        "seconds": seconds,
        "sets": {
            name: [
                {"key": q.key, "kind": q.kind, "text": q.text, "relevant": sorted(q.relevant)}
                for q in queries
            ]
            for name, queries in sets.items()
        },
        "systems": {
            run.name: {
                "rejected": run.rejected,
                "errors": run.errors,
                "median_ms": None if run.rejected else run.median_ms(),
                "figures": {
                    name: asdict(value) if value else None
                    for name, value in scores[run.name].items()
                },
                "queries": {
                    key: {"ranking": ranking, "ms": run.ms.get(key)}
                    for key, ranking in run.rankings.items()
                },
            }
            for run in runs
        },
    }
    return json.dumps(document, indent=1)
