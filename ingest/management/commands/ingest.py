"""``manage.py ingest FILE``: enqueue an ingest on the Celery worker, wait, print the counts."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from ingest import sources
from ingest.models import IngestRun
from ingest.runner import create_run, execute_run
from ingest.tasks import ingest_run


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--listed-on must be a date like 2025-12-24, got {value!r}") from None


class Command(BaseCommand):
    help = "Ingest a listing file through the Celery worker and print what the run did."

    def add_arguments(self, parser):
        parser.add_argument("path", help="listing file to ingest")
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

    def handle(self, *args, path, format, listed_on, inline, timeout, **options):
        location = Path(path).resolve()
        if not location.is_file():
            raise CommandError(f"no such file: {path}")
        run = create_run(str(location), fmt=format, listed_on=listed_on)
        if inline:
            run = execute_run(run)
        else:
            transaction.on_commit(lambda: ingest_run.delay(run.pk))
            run = self._wait(run, timeout)
        self._report(run)

    def _wait(self, run: IngestRun, timeout: float) -> IngestRun:
        self.stdout.write(f"Run {run.pk} queued; waiting for a worker…")
        deadline = time.monotonic() + timeout
        while not run.is_finished:
            if time.monotonic() > deadline:
                raise CommandError(
                    f"run {run.pk} still {run.status} after {timeout:.0f}s: is a worker running? "
                    "(make run starts one; or: celery -A catalogue worker)"
                )
            time.sleep(0.2)
            run.refresh_from_db()
        return run

    def _report(self, run: IngestRun) -> None:
        line = f"Run {run.pk} {run.status} ({run.source}): {run.counts_line()}"
        if run.status == IngestRun.Status.FAILED:
            raise CommandError(f"{line}\n{run.error}")
        self.stdout.write(self.style.SUCCESS(line))
        for rejection in run.rejections.all()[:20]:
            self.stdout.write(f"  rejected {rejection.position}: {rejection.reason}")
