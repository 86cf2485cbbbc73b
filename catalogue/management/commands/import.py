"""``manage.py import FILE``: restore an export into an empty catalogue, all or nothing.

(The module is named ``import``: Django loads commands with ``importlib.import_module``,
which takes a keyword as a module name; only an ``import`` statement could not.)
"""

from __future__ import annotations

import gzip
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from catalogue.exchange import ImportFailed, ImportRefused, import_catalogue
from catalogue.management.commands.export import progress_bar
from catalogue.models import Paper
from catalogue.tasks import queue_embedding

GZIP_MAGIC = b"\x1f\x8b"


class Command(BaseCommand):
    help = "Restore an export (plain or .gz; - for stdin) into an empty catalogue."

    def add_arguments(self, parser):
        parser.add_argument("file", help="an export; - for stdin; compressed or not")
        parser.add_argument(
            "--no-embed",
            action="store_true",
            help="do not queue embeddings on the worker (run `manage.py embed` later)",
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="delete this database's catalogue, users and sessions first (in the same "
            "transaction: a failed import keeps them)",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, file, no_embed, replace, no_progress, **options):
        started = time.monotonic()
        try:
            with _input(file) as stream, progress_bar(disabled=no_progress) as progress:
                counts = import_catalogue(iter(stream), progress=progress, replace=replace)
        except (ImportRefused, ImportFailed) as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        self._report(counts, time.monotonic() - started)
        self._embeddings(no_embed)

    def _report(self, counts: dict, elapsed: float) -> None:
        rows = ", ".join(f"{name} {count}" for name, count in counts.items())
        rate = counts.get("paper", 0) / elapsed if elapsed else 0
        self.stdout.write(
            self.style.SUCCESS(f"Imported {rows} in {elapsed:.1f} s ({rate:.0f} papers/s).")
        )

    def _embeddings(self, no_embed: bool) -> None:
        missing = Paper.objects.filter(embedding__isnull=True).count()
        if not missing:
            return
        if not no_embed:
            try:
                queue_embedding()
                self.stdout.write(f"{missing} papers lack embeddings: queued on the worker.")
                return
            except Exception as exc:  # a broker that is down must not undo a good restore
                self.stderr.write(f"Could not queue embeddings ({exc}).")
        self.stdout.write(f"{missing} papers lack embeddings: run `manage.py embed`.")


class _input:
    """The file (or stdin) as binary lines, decompressed if it starts with gzip's magic."""

    def __init__(self, file: str):
        self.file = file
        self.raw = None

    def __enter__(self):
        self.raw = sys.stdin.buffer if self.file == "-" else open(self.file, "rb")
        if self.raw.peek(2)[:2] == GZIP_MAGIC:
            return gzip.GzipFile(fileobj=self.raw)
        return self.raw

    def __exit__(self, *exc_info):
        if self.file != "-":
            self.raw.close()
