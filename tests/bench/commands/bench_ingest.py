"""``python -m tests.bench bench_ingest``: papers/second and peak memory of a bulk snapshot ingest.

Each measurement runs ``manage.py ingest FILE --inline`` in a child process against a fresh
benchmark database on the same server (``<name>_bench``, dropped and re-created: never the
catalogue's own), so figures include start-up, parsing, the upsert and its indexes. The child's
peak resident memory comes from the kernel (``wait4``). Files are synthetic snapshots built
from the bundled real sample (``tests.bench.synthetic``).

These machines are shared and their speed drifts (the same SQL has run 40 % slower an hour
later), so each size also measures a reference on the same papers at the same moment: one
connection COPYing their titles and abstracts into a table that generates the search vector,
PostgreSQL's bare cost per paper. The ratio to it is the figure to compare across runs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand

from catalogue.dburl import url_from_settings
from tests.bench.benchmark import copy_reference
from tests.bench.synthetic import write_snapshot

REFERENCE = "reference: COPY + vector, 1 connection"


class Command(BaseCommand):
    help = "Benchmark bulk snapshot ingest: papers/s (median of runs) and peak memory."

    def add_arguments(self, parser):
        parser.add_argument("--records", type=int, nargs="+", default=[100_000, 200_000])
        parser.add_argument("--runs", type=int, default=3, help="runs per size (median shown)")

    def handle(self, *args, records, runs, **options):
        db = settings.DATABASES["default"]
        bench_name = f"{db['NAME']}_bench"
        server_url = url_from_settings(db, "postgres")
        bench_url = url_from_settings(db, bench_name)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for count in records:
                path = write_snapshot(Path(tmp) / f"snapshot-{count}.jsonl", count)
                first, again, reference = [], [], []
                for _ in range(runs):
                    self._recreate(server_url, bench_name, bench_url)
                    first.append(self._ingest(path, bench_url))
                    again.append(self._ingest(path, bench_url))
                    reference.append(self._reference(bench_url))
                rows.append(self._row(count, "new papers", first))
                rows.append(self._row(count, "re-ingest (unchanged)", again))
                rows.append(self._row(count, REFERENCE, reference))
            self._drop(server_url, bench_name)
        self._print(rows, runs)

    def _recreate(self, server_url: str, name: str, bench_url: str) -> None:
        self._drop(server_url, name)
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self._manage(["migrate", "-v0"], bench_url)

    @staticmethod
    def _drop(server_url: str, name: str) -> None:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _ingest(self, path: Path, bench_url: str) -> tuple[float, float]:
        """(seconds, peak RSS in MiB) of one inline ingest in a child process."""
        started = time.perf_counter()
        rusage = self._manage(["ingest", str(path), "--inline", "--no-progress"], bench_url)
        return time.perf_counter() - started, rusage.ru_maxrss / 1024

    @staticmethod
    def _reference(bench_url: str) -> tuple[float, float]:
        """(seconds, no memory figure) of ``copy_reference`` over the papers just ingested."""
        _, seconds = copy_reference(bench_url)
        return seconds, 0.0

    @staticmethod
    def _manage(arguments: list[str], database_url: str):
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": settings.REDIS_URL}
        child = subprocess.Popen(
            [sys.executable, "manage.py", *arguments],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        _, status, rusage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(arguments)} failed ({child.returncode})")
        return rusage

    @staticmethod
    def _row(count: int, label: str, samples: list[tuple[float, float]]) -> tuple:
        seconds = statistics.median(s for s, _ in samples)
        peak = max(m for _, m in samples)
        return count, label, seconds, count / seconds, peak

    def _print(self, rows: list[tuple], runs: int) -> None:
        self._print_table(rows, runs)
        references = {count: rate for count, label, _, rate, _ in rows if label == REFERENCE}
        for count, label, _, rate, _ in rows:
            if label == "new papers":
                self.stdout.write(
                    f"{count:,} new papers: {rate / references[count]:.2f}x the reference "
                    "(one connection's COPY with the generated search vector)"
                )

    def _print_table(self, rows: list[tuple], runs: int) -> None:
        self.stdout.write(
            f"Bulk snapshot ingest, median of {runs} runs, {settings.INGEST_WRITERS} writers, "
            f"batches of {settings.INGEST_BATCH_SIZE}, {os.cpu_count()} cores\n"
        )
        self.stdout.write("| records | run | seconds | papers/s | peak RSS (MiB) |")
        self.stdout.write("|---:|---|---:|---:|---:|")
        for count, label, seconds, rate, peak in rows:
            memory = f"{peak:.0f}" if label != REFERENCE else "-"
            self.stdout.write(f"| {count:,} | {label} | {seconds:.1f} | {rate:,.0f} | {memory} |")
