"""``manage.py export FILE``: the whole catalogue as one versioned JSON-lines file.

``-`` writes to stdout; a name ending in ``.gz`` is compressed. The file is written next to
its final name and renamed once complete, so an interrupted export never leaves a file that
looks whole. What is in it, and what is not: ``catalogue.exchange``.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalogue.exchange import export_catalogue


class Command(BaseCommand):
    help = "Write the whole catalogue to a JSON-lines file (- for stdout; .gz compresses)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="where to write; - for stdout, *.gz compresses")
        parser.add_argument(
            "--with-embeddings",
            action="store_true",
            help="also write embeddings (derived data the worker recomputes; large)",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, file, with_embeddings, no_progress, **options):
        started = time.monotonic()
        try:
            with _output(file) as out, progress_bar(disabled=no_progress) as progress:
                counts = export_catalogue(out, with_embeddings=with_embeddings, progress=progress)
        except OSError as exc:
            raise CommandError(f"cannot write {file}: {exc}") from None
        self._report(file, counts, time.monotonic() - started)

    def _report(self, file: str, counts: dict, elapsed: float) -> None:
        rows = ", ".join(f"{name} {count}" for name, count in counts.items())
        papers = counts.get("paper", 0)
        size = "" if file == "-" else f", {os.path.getsize(file) / 1e6:.2f} MB"
        line = (
            f"Exported {rows} in {elapsed:.1f} s "
            f"({papers / elapsed if elapsed else 0:.0f} papers/s{size})."
        )
        # With the file on stdout, the report goes to stderr.
        (self.stderr if file == "-" else self.stdout).write(line)


@contextmanager
def progress_bar(*, disabled: bool):
    """A ``progress`` callback for ``catalogue.exchange``: a tqdm bar on stderr over every row
    the header counts (stdout may be the file itself)."""
    bars = []

    def start(counts: dict):
        bar = tqdm(total=sum(counts.values()), unit=" rows", disable=disabled, file=sys.stderr)
        bars.append(bar)
        return bar.update

    try:
        yield start
    finally:
        for bar in bars:
            bar.close()


@contextmanager
def _output(file: str):
    if file == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    final = Path(file)
    partial = final.with_name(final.name + ".partial")
    try:
        with _open(partial, compress=final.suffix == ".gz") as out:
            yield out
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)


def _open(path: Path, *, compress: bool):
    if compress:
        # Level 3: 11 % larger than the default 6 at under half its time; buffered, because
        # gzip pays a call per write and rows are written one line at a time.
        return io.BufferedWriter(gzip.open(path, "wb", compresslevel=3), 1 << 20)
    return open(path, "wb", buffering=1 << 20)
