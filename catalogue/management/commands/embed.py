"""``manage.py embed``: embed every paper missing a current embedding, with a progress bar.

The workers do the same after each ingest (``catalogue.tasks.embed_papers``); this is the
backfill, e.g. after a model change. By default it embeds here, in this process. Each batch
commits on its own: Ctrl-C loses at most the batch being computed, and running the command
again resumes. With ``--on-workers`` it sends the backfill to the workers as chains over
disjoint id ranges (``catalogue.backfill``), one per worker process that can embed, and
follows it to the end: so many hosts embed at once.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalogue import tasks
from catalogue.backfill import STALL_SECONDS, Backfill
from catalogue.embedder import MODEL_ID, ModelFilesMissing, get_embedder
from catalogue.embedding import BATCH_SIZE, embed_pending, pending_papers

STALL_MINUTES = STALL_SECONDS // 60
# How often the progress of a backfill on the workers is read from Redis.
POLL_SECONDS = 0.5


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
        parser.add_argument(
            "--on-workers",
            action="store_true",
            help="embed on the Celery workers, in chains over disjoint id ranges, and wait",
        )
        parser.add_argument(
            "--chains",
            type=_positive,
            help="with --on-workers: how many chains (default: EMBEDDING_CHAINS)",
        )

    def handle(self, *args, batch_size, limit, no_progress, on_workers, chains, **options):
        if on_workers:
            if limit is not None:
                raise CommandError("--limit applies to embedding here, not --on-workers")
            return self._on_workers(chains or settings.EMBEDDING_CHAINS, no_progress)
        if chains is not None:
            raise CommandError("--chains needs --on-workers")
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

    # --- on the workers ------------------------------------------------------------------------

    def _on_workers(self, chains: int, no_progress: bool) -> None:
        started = time.monotonic()
        backfill = self._start_or_follow(chains)
        bar = tqdm(
            total=backfill.meta().get("pending"),
            unit=" papers",
            disable=no_progress,
            file=self.stderr._out,
        )
        try:
            with bar:
                meta = self._follow(backfill, bar)
        except KeyboardInterrupt:
            raise CommandError(
                "interrupted: the backfill goes on on the workers (run this again to follow it)"
            ) from None
        self._report_workers(backfill, meta, time.monotonic() - started)

    def _start_or_follow(self, chains: int) -> Backfill:
        queue = tasks.embed_papers.app.conf.task_default_queue
        backfill = Backfill.start(queue)
        if backfill is None:
            backfill = Backfill.running(queue)
            if backfill is not None:
                self.stdout.write(
                    "A backfill is already running on the workers (after an ingest?): following it."
                )
                return backfill
            backfill = Backfill.start(queue)  # it ended in between
            if backfill is None:
                raise CommandError("another backfill keeps starting: try again")
        slices, pending = tasks.send_chains(backfill, chains)
        self.stdout.write(
            f"{pending} papers to embed with {MODEL_ID}, in {len(slices)} chains "
            f"on the workers of queue {queue}."
        )
        return backfill

    def _follow(self, backfill: Backfill, bar: tqdm) -> dict[str, int]:
        """Until every chain of ``backfill`` ended; its meta at the end."""
        while True:
            meta = backfill.meta()
            if bar.total is None and "pending" in meta:
                bar.total = meta["pending"]
                bar.refresh()
            bar.update(sum(backfill.counts().values()) - bar.n)
            if meta.get("ended"):
                return meta
            if not backfill.is_current() and not backfill.meta().get("ended"):
                raise CommandError(
                    f"the backfill stopped: no chain went on for {STALL_MINUTES} minutes "
                    "(workers lost?). Run this again to embed what is left."
                )
            time.sleep(POLL_SECONDS)

    def _report_workers(self, backfill: Backfill, meta: dict[str, int], elapsed: float) -> None:
        counts = backfill.counts()
        done = sum(counts.values())
        workers = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        rate = done / elapsed if elapsed else 0.0
        self.stdout.write(
            self.style.SUCCESS(
                f"Embedded {done} papers in {meta.get('chains', 0)} chains over "
                f"{len(counts)} workers in {elapsed:.1f} s ({rate:.1f} papers/s)"
                + (f": {workers}." if workers else ".")
            )
        )
        left = pending_papers().count()
        if meta.get("failed"):
            raise CommandError(
                f"a chain failed (see the workers' logs): {left} papers are still pending"
            )
        if left:
            self.stdout.write(
                f"{left} papers changed or arrived meanwhile: a new backfill embeds them."
            )
