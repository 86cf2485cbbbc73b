"""Celery tasks: thin wrappers whose arguments are ids and strings.

``ingest_run`` is acknowledged late and retries transient failures (network, a lost database
connection) with exponential backoff, never bad data. A worker killed mid-run does not wait
for Redis to redeliver its task (the visibility timeout is hours, sized to the longest task):
the reaper, ``requeue_orphaned_runs``, sees the run's lease gone within 30 seconds (beat) or
when a worker starts, and queues it again; it resumes where its batches stopped. A delivery
that finds the run leased by another worker does nothing.
"""

from __future__ import annotations

import datetime as dt
import random
from urllib.parse import urlencode

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.utils import timezone

from catalogue.broker import BrokerUnavailable, send
from ingest import runner
from ingest.models import IngestRun, Source
from ingest.runner import RetryLater, create_run, execute_run
from ingest.sources import arxiv_atom

MAX_RETRIES = 4
# A split run's chunks wait in the queue behind every short task (kombu's Redis pops 0 first):
# the reaper (which expires after 25 s), tagging and digests never wait for a backfill's
# dozens of queued chunks; the embedding backfill (9) still waits for them.
CHUNK_PRIORITY = 5
# arXiv ids per API request when re-fetching: a short URL, one polite request per run.
REFETCH_BATCH = 100


@shared_task(
    bind=True,
    acks_late=True,
    max_retries=MAX_RETRIES,
    # The database unreachable before or after the run could be marked: try again later
    # (the run resumes; were it left "running", the reaper would queue it again).
    autoretry_for=runner.TRANSIENT_DB_ERRORS,
    retry_backoff=True,
)
def ingest_run(self, run_id: int) -> str:
    """Execute a queued IngestRun; returns its status (a run executed elsewhere: "running")."""
    run = IngestRun.objects.select_related("source").get(pk=run_id)
    if run.is_finished:
        # A redelivered task whose run already finished: nothing to do twice.
        return run.status
    try:
        final_attempt = self.request.retries >= self.max_retries
        # A split run's chunks go to any worker of the cluster, each a task of its own.
        return execute_run(
            run,
            final_attempt=final_attempt,
            enqueue=_queue_chunk,
            worker=self.request.hostname,  # the node name (-n): which worker of which host
        ).status
    except RetryLater as exc:
        raise self.retry(countdown=_backoff(self.request.retries, exc.retry_after)) from exc


def _queue_chunk(run_id: int) -> None:
    ingest_run.apply_async(args=[run_id], priority=CHUNK_PRIORITY)


# Expires: a reaper that waited longer than the next one's interval is superseded by it.
@shared_task(expires=25)
def requeue_orphaned_runs(resend_queued_before: str | None = None) -> list[int]:
    """Beat's reaper (every 30 s) and every worker's at start: queue runs whose worker died.
    ``resend_queued_before`` (ISO time): also send again every run queued before then and
    never started (``runner.requeue_orphaned_runs``)."""
    before = dt.datetime.fromisoformat(resend_queued_before) if resend_queued_before else None
    return runner.requeue_orphaned_runs(ingest_run.delay, resend_queued_before=before)


@worker_ready.connect
def _requeue_orphaned_runs_at_start(**kwargs) -> None:
    # A worker restarted after a crash resumes its runs at once, beat or no beat. The runs
    # queued before it started are sent again too: the worker that died may have taken their
    # messages (reserved, not yet started), which Redis holds for the visibility timeout
    # (hours) and the periodic reaper sends again only after INGEST_RESEND_QUEUED_AFTER (10
    # minutes; `make run`'s demo waits 5). A run merely waiting its turn finds the second
    # message a no-op.
    requeue_orphaned_runs.delay(timezone.now().isoformat())


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
