"""``manage.py ingest PATH_OR_URL | --source NAME``: run an ingest on the worker and watch it."""

from __future__ import annotations

import datetime as dt
import time
from argparse import ArgumentTypeError
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from catalogue.broker import BrokerUnavailable
from ingest import sources
from ingest.chunks import MAX_CHUNKS
from ingest.models import IngestRun, Source
from ingest.runner import create_run, execute_run
from ingest.tasks import queue_run

REJECTIONS_SHOWN = 20


def _chunk_count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_CHUNKS:
        raise ArgumentTypeError(f"a number of chunks from 1 to {MAX_CHUNKS}, got {value!r}")
    return count


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--listed-on must be a date like 2025-12-24, got {value!r}") from None


class Command(BaseCommand):
    help = "Ingest a listing (file, URL or named Source) through the Celery worker."

    def add_arguments(self, parser):
        parser.add_argument("location", nargs="?", help="listing file or URL")
        parser.add_argument("--source", help="name of a configured Source to run instead")
        parser.add_argument("--format", choices=sorted(sources.FORMATS), help="skip detection")
        parser.add_argument(
            "--listed-on", type=_date, help="the day the listing was captured (default: today)"
        )
        parser.add_argument(
            "--inline", action="store_true", help="run in this process instead of on a worker"
        )
        parser.add_argument(
            "--timeout", type=float, default=3600, help="seconds to wait for the worker"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument(
            "--chunks",
            type=_chunk_count,
            help="split the listing into this many chunks that workers (on any host) ingest at "
            "once: a JSON-Lines snapshot by byte ranges (a file at the same path on every "
            "worker host, or a URL that serves ranges), an OAI-PMH source by date windows",
        )

    def handle(self, *args, location, source, format, listed_on, inline, timeout, **options):
        run = self._create_run(location, source, format, listed_on, options["chunks"])
        if inline:
            run = execute_run(run)
        else:
            transaction.on_commit(lambda: self._queue(run))
            run = self._wait(run, timeout, progress=not options["no_progress"])
        self._report(run)

    @staticmethod
    def _queue(run: IngestRun) -> None:
        try:
            queue_run(run)
        except BrokerUnavailable as error:
            raise CommandError(f"Run {run.pk} failed: {error}") from None

    def _create_run(self, location, source_name, fmt, listed_on, chunks) -> IngestRun:
        if source_name:
            source = Source.objects.filter(name=source_name).first()
            if source is None:
                names = ", ".join(Source.objects.values_list("name", flat=True)) or "none yet"
                raise CommandError(f"no source named {source_name!r} (configured: {names})")
            return create_run(source=source, fmt=fmt, listed_on=listed_on, chunks=chunks)
        if not location:
            raise CommandError("give a file or URL to ingest, or --source NAME")
        if not location.startswith(("http://", "https://")):
            path = Path(location).resolve()
            if not path.is_file():
                raise CommandError(f"no such file: {location}")
            location = str(path)
        return create_run(location, fmt=fmt, listed_on=listed_on, chunks=chunks)

    def _wait(self, run: IngestRun, timeout: float, progress: bool) -> IngestRun:
        self.stdout.write(f"Run {run.pk} queued; waiting for a worker…")
        deadline = time.monotonic() + timeout
        bar = tqdm(total=None, unit=" records", disable=not progress, file=self.stderr._out)
        with bar:
            while not run.is_finished:
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"run {run.pk} still {run.status} after {timeout:.0f}s: is a worker "
                        "running? (make run starts one; or: celery -A catalogue worker)"
                    )
                time.sleep(0.2)
                run.refresh_from_db()
                self._advance(bar, run)
            self._advance(bar, run)
        return run

    @staticmethod
    def _advance(bar, run: IngestRun) -> None:
        if run.expected and bar.total != run.expected:
            bar.total = run.expected
        bar.update(run.progress_done() - bar.n)

    def _report(self, run: IngestRun) -> None:
        line = f"Run {run.pk} {run.status} ({run.format}): {run.counts_line()}"
        if run.status == IngestRun.Status.FAILED:
            raise CommandError(f"{line}\n{run.error}")
        self.stdout.write(self.style.SUCCESS(line))
        if run.chunk_count:
            self.stdout.write(f"  in {run.chunk_count} chunks, {run.workers_line()}")
        shown = run.all_rejections().order_by("pk")[:REJECTIONS_SHOWN]
        for rejection in shown:
            self.stdout.write(f"  rejected {rejection.position}: {rejection.reason}")
        more_stored = run.rejections_stored - len(shown)
        if more_stored:
            self.stdout.write(f"  … and {more_stored} more (see the run in the admin)")
        if run.rejections_not_stored:
            self.stdout.write(
                f"  … and {run.rejections_not_stored} more counted but not stored "
                f"(INGEST_MAX_STORED_REJECTIONS is {settings.INGEST_MAX_STORED_REJECTIONS})"
            )
