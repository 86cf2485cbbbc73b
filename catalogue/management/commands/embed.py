"""``manage.py embed``: embed every paper missing a current embedding, here, with a progress bar.

The worker does the same after each ingest (``catalogue.tasks.embed_papers``); this is the
backfill, e.g. after a model change. Each batch commits on its own: Ctrl-C loses at most the
batch being computed, and running the command again resumes.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalogue.embedder import MODEL_ID, ModelFilesMissing, get_embedder
from catalogue.embedding import BATCH_SIZE, embed_pending, pending_papers


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Embed the papers without a current embedding (resumable: run it again after Ctrl-C)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size", type=_positive, default=BATCH_SIZE, help="papers per transaction"
        )
        parser.add_argument("--limit", type=_positive, help="stop after this many papers")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, batch_size, limit, no_progress, **options):
        try:
            get_embedder()  # load first: a missing model file is an error, not a traceback
        except ModelFilesMissing as exc:
            raise CommandError(str(exc)) from None
        pending = pending_papers().count()
        total = pending if limit is None else min(pending, limit)
        self.stdout.write(f"{pending} papers to embed with {MODEL_ID}; embedding {total}.")
        started = time.monotonic()
        bar = tqdm(total=total, unit=" papers", disable=no_progress, file=self.stderr._out)
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            bar.update(n)

        try:
            with bar:
                embed_pending(batch_size=batch_size, limit=limit, progress=advance)
        except KeyboardInterrupt:
            self._report(done, started, interrupted=True)
            raise CommandError("interrupted: run it again to go on") from None
        self._report(done, started)

    def _report(self, done: int, started: float, interrupted: bool = False) -> None:
        elapsed = time.monotonic() - started
        rate = done / elapsed if elapsed else 0.0
        line = f"Embedded {done} papers in {elapsed:.1f} s ({rate:.1f} papers/s)"
        if interrupted:
            self.stdout.write(self.style.WARNING(f"{line} before the interruption."))
        else:
            self.stdout.write(self.style.SUCCESS(f"{line}."))
