"""Celery tasks: thin wrappers whose arguments are ids and strings.

Both are acknowledged late (a worker killed mid-run has the task redelivered, and the run
re-executes idempotently) and retry transient fetch failures with exponential backoff.
"""

from __future__ import annotations

import random
from urllib.parse import urlencode

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from catalogue.broker import BrokerUnavailable, send
from ingest.models import IngestRun, Source
from ingest.runner import RetryLater, create_run, execute_run
from ingest.sources import arxiv_atom

MAX_RETRIES = 4
# arXiv ids per API request when re-fetching: a short URL, one polite request per run.
REFETCH_BATCH = 100


@shared_task(bind=True, acks_late=True, max_retries=MAX_RETRIES)
def ingest_run(self, run_id: int) -> str:
    """Execute a queued IngestRun; returns its final status."""
    run = IngestRun.objects.select_related("source").get(pk=run_id)
    if run.is_finished:
        # A redelivered task whose run already finished: nothing to do twice.
        return run.status
    try:
        return execute_run(run, final_attempt=self.request.retries >= self.max_retries).status
    except RetryLater as exc:
        raise self.retry(countdown=_backoff(self.request.retries, exc.error.retry_after)) from exc


@shared_task(acks_late=True)
def ingest_source(source_id: int) -> int | None:
    """Beat's entry point: start a run of an enabled Source; returns the run's id."""
    source = Source.objects.filter(pk=source_id, enabled=True).first()
    if source is None:
        return None
    run = create_run(source=source)
    ingest_run.delay(run.pk)
    return run.pk


@shared_task(acks_late=True)
def refetch_arxiv(arxiv_ids: list[str], api_url: str | None = None) -> list[int]:
    """Fetch papers again from the arXiv API; returns the ids of the runs it queued.

    The paper admin sends this by name (the catalogue does not import ingest). Each run reads
    one ``id_list`` query URL as an arxiv_atom payload, so it is an ordinary URL run: listed in
    the runs admin, retried like any other. ``api_url`` points elsewhere (a mirror, a test).
    """
    base = api_url or arxiv_atom.DEFAULT_URL
    run_ids = []
    for start in range(0, len(arxiv_ids), REFETCH_BATCH):
        batch = arxiv_ids[start : start + REFETCH_BATCH]
        query = urlencode({"id_list": ",".join(batch), "max_results": len(batch)})
        run = create_run(f"{base}?{query}", fmt=arxiv_atom.SOURCE)
        ingest_run.delay(run.pk)
        run_ids.append(run.pk)
    return run_ids


def _backoff(retries: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter (30 s, 60 s, 120 s …), or the server's Retry-After."""
    if retry_after:
        return retry_after
    base = settings.INGEST_RETRY_BACKOFF * 2**retries
    return base + random.uniform(0, base / 2)


def queue_run(run: IngestRun) -> None:
    """Send ``run`` to a worker; if the broker is unreachable the run is marked failed (it
    would otherwise wait as "queued" for ever) and ``BrokerUnavailable`` says why."""
    try:
        send(ingest_run, run.pk)
    except BrokerUnavailable as error:
        IngestRun.objects.filter(pk=run.pk).update(
            status=IngestRun.Status.FAILED, error=f"Not queued: {error}", finished_at=timezone.now()
        )
        raise
