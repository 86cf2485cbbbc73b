"""Celery tasks: thin wrappers whose arguments are ids and strings."""

from __future__ import annotations

from celery import shared_task

from ingest.models import IngestRun
from ingest.runner import execute_run


@shared_task(acks_late=True)
def ingest_run(run_id: int) -> str:
    """Execute a queued IngestRun; returns its final status."""
    run = IngestRun.objects.get(pk=run_id)
    if run.is_finished:
        # A redelivered task whose run already finished: nothing to do twice.
        return run.status
    return execute_run(run).status
