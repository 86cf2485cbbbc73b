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

``--into NAME`` measures ingest into a large catalogue without building one each run: every
run's database is a file copy of the database NAME (e.g. ``make bench``'s
``catalogue_load_1000000``, which is left as it was), and the snapshot's papers are new to it
(ids from ``INTO_FIRST_ID``); the reference then copies those papers. 100,000 papers into a
copy of the 1M catalogue take ~30 s a run, where a whole 1M ingest takes five minutes.

``--corpus FILE`` ingests that snapshot instead of synthetic ones (e.g. ``bench_site``'s
1M corpus, ``python -m tests.bench make_corpus --papers 1000000``): a catalogue's first load,
its secondary indexes deferred as any load of 250,000+ records into an empty one, then the
reference of ``bench_site``'s build on its first 100,000 papers. Its figure is the one
``bench_site``'s build prints, in ~3 minutes a run at 1M instead of a 40-minute build.
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
from django.core.management.base import BaseCommand, CommandError

from catalogue.dburl import url_from_settings
from tests.bench.benchmark import copy_reference
from tests.bench.synthetic import synthetic_id, write_snapshot

REFERENCE = "reference: COPY + vector, 1 connection"
# The snapshot's first record number with --into: ids from 3091.00000, which a catalogue holds
# only if it was given nine million synthetic papers.
INTO_FIRST_ID = 9_000_000
# The papers ``--corpus``'s reference copies: as many as ``bench_site``'s build copies.
CORPUS_REFERENCE_PAPERS = 100_000


class Command(BaseCommand):
    help = "Benchmark bulk snapshot ingest: papers/s (median of runs) and peak memory."

    def add_arguments(self, parser):
        parser.add_argument("--records", type=int, nargs="+", default=[100_000, 200_000])
        parser.add_argument("--runs", type=int, default=3, help="runs per size (median shown)")
        parser.add_argument(
            "--into",
            metavar="NAME",
            help="ingest into a copy of this database (on the same server) instead of an empty one",
        )
        parser.add_argument(
            "--corpus",
            type=Path,
            metavar="FILE",
            help="ingest this snapshot (JSON lines) instead of synthetic ones; --records is "
            "then its line count",
        )

    def handle(self, *args, records, runs, into=None, corpus=None, **options):
        db = settings.DATABASES["default"]
        bench_name = f"{db['NAME']}_bench"
        server_url = url_from_settings(db, "postgres")
        if corpus and into:
            raise CommandError("--corpus is a first load: give it without --into")
        self.into, self.corpus = into, corpus and corpus.resolve()  # the child's cwd differs
        rows = []
        try:
            if self.corpus:
                count = _lines(self.corpus)
                rows += self._size_rows(count, 0, self.corpus, runs, server_url, bench_name)
            else:
                rows += self._synthetic_rows(records, runs, server_url, bench_name)
        finally:
            self._drop(server_url, bench_name)
        self._print(rows, runs)

    def _synthetic_rows(self, records, runs, server_url, bench_name) -> list[tuple]:
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for count in records:
                start = INTO_FIRST_ID if self.into else 0
                path = write_snapshot(Path(tmp) / f"snapshot-{count}.jsonl", count, start=start)
                rows += self._size_rows(count, start, path, runs, server_url, bench_name)
        return rows

    def _size_rows(self, count, start, path, runs, server_url, bench_name) -> list[tuple]:
        """The table's three rows of one size: new papers, re-ingest, the reference."""
        bench_url = url_from_settings(settings.DATABASES["default"], bench_name)
        first, again, reference = [], [], []
        for _ in range(runs):
            self._recreate(server_url, bench_name, bench_url)
            if self.into:
                self._check_new(bench_url, start, count)
            first.append(self._ingest(path, bench_url))
            again.append(self._ingest(path, bench_url))
            reference.append(self._reference(bench_url, count))
        return [
            self._row(count, "new papers", first),
            self._row(count, "re-ingest (unchanged)", again),
            self._row(count, REFERENCE, reference),
        ]

    def _recreate(self, server_url: str, name: str, bench_url: str) -> None:
        """The run's database: empty, or a file copy of ``--into`` (its files copied, no WAL
        written: 6-23 s for the 1M bench catalogue); migrated either way."""
        self._drop(server_url, name)
        create = f'CREATE DATABASE "{name}"'
        if self.into:
            create += f' TEMPLATE "{self.into}" STRATEGY FILE_COPY'
        with psycopg.connect(server_url, autocommit=True) as conn:
            try:
                conn.execute(create)
            except psycopg.errors.ObjectInUse as error:
                raise CommandError(f"--into {self.into}: {error} (stop what uses it)") from None
            except psycopg.errors.InvalidCatalogName as error:
                raise CommandError(f"--into {self.into}: {error}") from None
        self._manage(["migrate", "-v0"], bench_url)

    @staticmethod
    def _check_new(bench_url: str, start: int, count: int) -> None:
        """Refuse a copy that already holds the snapshot's first or last id: its papers would
        be updates, not the new papers the figures are about."""
        ids = [synthetic_id(start), synthetic_id(start + count - 1)]
        with psycopg.connect(bench_url) as conn:
            cursor = conn.execute(
                "SELECT count(*) FROM catalogue_paper WHERE arxiv_id = ANY(%s)", [ids]
            )
            (held,) = cursor.fetchone()
        if held:
            raise CommandError(f"the copy already holds the snapshot's ids {ids[0]}..{ids[1]}")

    @staticmethod
    def _drop(server_url: str, name: str) -> None:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _ingest(self, path: Path, bench_url: str) -> tuple[float, float]:
        """(seconds, peak RSS in MiB) of one inline ingest in a child process."""
        started = time.perf_counter()
        rusage = self._manage(["ingest", str(path), "--inline", "--no-progress"], bench_url)
        return time.perf_counter() - started, rusage.ru_maxrss / 1024

    def _reference(self, bench_url: str, count: int) -> tuple[float, float]:
        """(seconds, no memory figure) of ``copy_reference`` over the papers just ingested
        (with ``--into``, the newest ``count``: the copy held the others before; with
        ``--corpus``, the first ``CORPUS_REFERENCE_PAPERS``, as ``bench_site``'s build). The
        figure is seconds for ``count`` papers at the reference's rate."""
        if self.into:
            rows, seconds = copy_reference(bench_url, count, newest=True)
        elif self.corpus:
            rows, seconds = copy_reference(bench_url, CORPUS_REFERENCE_PAPERS)
        else:
            rows, seconds = copy_reference(bench_url)
        return seconds * count / rows, 0.0

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
        into = f", into a copy of {self.into}" if self.into else ""
        self.stdout.write(
            f"Bulk snapshot ingest{into}, median of {runs} runs, {settings.INGEST_WRITERS} "
            f"writers, batches of {settings.INGEST_BATCH_SIZE}, {os.cpu_count()} cores\n"
        )
        self.stdout.write("| records | run | seconds | papers/s | peak RSS (MiB) |")
        self.stdout.write("|---:|---|---:|---:|---:|")
        for count, label, seconds, rate, peak in rows:
            memory = f"{peak:.0f}" if label != REFERENCE else "-"
            self.stdout.write(f"| {count:,} | {label} | {seconds:.1f} | {rate:,.0f} | {memory} |")


def _lines(path: Path) -> int:
    """A snapshot's records: its lines."""
    if not path.is_file():
        raise CommandError(f"--corpus {path}: no such file")
    with path.open("rb") as snapshot:
        return sum(1 for _ in snapshot)
