"""What ingestion knows about itself: the sources it reads, its runs, what they rejected."""

from __future__ import annotations

import json

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from ingest import sources
from ingest.lease import LEASE_HELD_SQL, NAMESPACE

FORMAT_CHOICES = [(name, name) for name in sources.FORMATS]


class Source(models.Model):
    """A listing the catalogue reads on a schedule: a format, an endpoint and its parameters."""

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=FORMAT_CHOICES)
    url = models.URLField(
        max_length=500, blank=True, help_text="Endpoint; empty means the format's usual one."
    )
    params = models.JSONField(
        default=dict,
        blank=True,
        help_text='Query parameters, e.g. {"date": "yesterday"} or {"set": "cs"}.',
    )
    enabled = models.BooleanField(default=True)
    crontab = models.CharField(
        max_length=100,
        default="15 6 * * *",
        help_text="When beat runs it: minute hour day-of-month month day-of-week (UTC).",
    )
    # ETag / Last-Modified per URL from the last successful run, for conditional GETs.
    validators = models.JSONField(default=dict, blank=True, editable=False)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        editable=False,
        related_name="ingest_source",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        with transaction.atomic():
            super().save(*args, **kwargs)
            self._sync_schedule()

    def clean(self):
        if len(self.crontab.split()) != 5:
            raise ValidationError({"crontab": "Five fields: minute hour day month weekday."})
        if not isinstance(self.params, dict):
            raise ValidationError({"params": "A JSON object of parameter names and values."})

    def _sync_schedule(self) -> None:
        """Keep one beat entry per source, enabled exactly when the source is."""
        from django_celery_beat.models import CrontabSchedule, PeriodicTask

        minute, hour, day_of_month, month_of_year, day_of_week = self.crontab.split()
        schedule, _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            timezone="UTC",
        )
        task, _ = PeriodicTask.objects.update_or_create(
            name=f"ingest source {self.pk}",
            defaults={
                "task": "ingest.tasks.ingest_source",
                "args": json.dumps([self.pk]),
                "crontab": schedule,
                "enabled": self.enabled,
                "description": f"Ingest the listing source {self.name!r}.",
            },
        )
        if self.periodic_task_id != task.pk:
            Source.objects.filter(pk=self.pk).update(periodic_task=task)
            self.periodic_task = task

    def delete(self, *args, **kwargs):
        task = self.periodic_task
        result = super().delete(*args, **kwargs)
        if task is not None:
            task.delete()
        return result


class IngestRunQuerySet(models.QuerySet):
    def orphaned(self):
        """Runs said to be running whose lease nobody holds: their worker died (or lost its
        database session) mid-run, and they wait for the reaper to queue them again."""
        leased = RawSQL(LEASE_HELD_SQL, [NAMESPACE], output_field=BooleanField())
        return (
            self.filter(status=IngestRun.Status.RUNNING)
            # A split run whose chunks were all queued holds no lease: its chunks do the work.
            .filter(chunk_count__isnull=True)
            .alias(leased=leased)
            .filter(leased=False)
        )

    def never_started(self, queued_before):
        """Runs queued before then that no worker ever started. Usually they wait their turn;
        but a worker lost after taking a task and before starting it holds its message
        unacknowledged until the broker's visibility timeout (hours)."""
        return self.filter(status=IngestRun.Status.QUEUED, attempts=0, queued_at__lt=queued_before)

    def unfinished(self):
        return self.exclude(status__in=IngestRun.FINISHED)


class IngestRun(models.Model):
    """One ingest of a file, URL or Source, and its progress.

    Progress is a checkpoint in batches (a run is parsed into numbered batches of
    ``batch_size`` results): batches below ``checkpoint`` and those in ``batches_ahead`` are
    written, each in the transaction that added its counts here. A run resumed after its worker
    died parses its input again and writes only the other batches, so its counts end as if it
    had run once. Batches, not bytes: parsers yield records, not offsets, and several writers
    commit batches out of order (``batches_ahead`` holds those past a gap, a few at most).
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial"  # finished, but some records were rejected
        FAILED = "failed"

    FINISHED = (Status.SUCCEEDED, Status.PARTIAL, Status.FAILED)

    source = models.ForeignKey(
        Source, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    format = models.CharField(max_length=32, blank=True, help_text="Detected or given format.")
    location = models.TextField(help_text="File path or URL that was read.")
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    seen = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    # Rejections are all counted; the first INGEST_MAX_STORED_REJECTIONS are stored as samples.
    rejections_stored = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    expected = models.PositiveIntegerField(null=True, blank=True, help_text="For progress.")
    error = models.TextField(blank=True)
    batch_size = models.PositiveIntegerField(null=True, blank=True)
    checkpoint = models.PositiveIntegerField(default=0, help_text="Batches written before any gap.")
    batches_ahead = ArrayField(models.PositiveIntegerField(), default=list, blank=True)
    # A large listing is split into chunk runs that workers on several hosts execute at once
    # (``ingest.chunks``): each chunk points at its run, which holds their summed counts once
    # the last chunk is finished. ``chunk_count`` is set when every chunk was queued.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="chunks"
    )
    chunk_count = models.PositiveIntegerField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="Host and pid executing it.")
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = IngestRunQuerySet.as_manager()

    class Meta:
        ordering = ["-queued_at"]
        indexes = [models.Index(fields=["status", "-queued_at"], name="ingestrun_status_idx")]

    def __str__(self):
        return f"Run {self.pk} of {self.source or self.location} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def done(self) -> int:
        """Records handled so far, for progress."""
        return self.seen + self.rejected

    @property
    def is_split(self) -> bool:
        """A run whose work is done by its chunks (asked for with the ``chunks`` option)."""
        return bool(self.options.get("chunks")) and self.parent_id is None

    def progress_done(self) -> int:
        """Records handled so far; a split run's are its chunks' until they are summed."""
        if self.is_finished or not self.is_split:
            return self.done
        totals = self.chunks.aggregate(seen=models.Sum("seen"), rejected=models.Sum("rejected"))
        return (totals["seen"] or 0) + (totals["rejected"] or 0)

    def all_rejections(self):
        """Its rejected records; a split run's are stored by its chunks."""
        return RejectedRecord.objects.filter(models.Q(run=self) | models.Q(run__parent=self))

    def workers_line(self) -> str:
        """Which hosts executed a split run's chunks: "executed on a (3), b (2)"."""
        # ``worker`` is "<host> pid <pid>" of the process that executed the chunk last.
        host = models.Func(
            models.F("worker"),
            models.Value(" pid "),
            models.Value(1),
            function="split_part",
            output_field=models.CharField(),
        )
        hosts = self.chunks.annotate(host=host).values("host")
        per_host = hosts.annotate(n=models.Count("pk")).order_by("-n", "host")
        shown = ", ".join(f"{row['host'] or 'nobody yet'} ({row['n']})" for row in per_host)
        return f"executed on {shown}"

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    @property
    def rejections_not_stored(self) -> int:
        return self.rejected - self.rejections_stored

    def is_written(self, batch: int) -> bool:
        return batch < self.checkpoint or batch in self.batches_ahead

    def counts_line(self) -> str:
        line = (
            f"seen {self.seen}, created {self.created}, updated {self.updated}, "
            f"unchanged {self.unchanged}, rejected {self.rejected}"
        )
        if self.rejections_not_stored:
            line += f" ({self.rejections_not_stored} not stored)"
        return line


def checkpoint_after(checkpoint: int, ahead: list[int], batch: int) -> tuple[int, list[int]]:
    """The checkpoint once ``batch`` is written too: the gap-free prefix grows over ``ahead``."""
    ahead = sorted({*ahead, batch})
    while ahead and ahead[0] == checkpoint:
        ahead.pop(0)
        checkpoint += 1
    return checkpoint, ahead


def storable(text: str, limit: int | None = None) -> str:
    """``text`` as PostgreSQL can store it whatever a listing held: a NUL (which no text
    column accepts) becomes ``\\x00`` and a lone surrogate (which UTF-8 cannot encode)
    ``\\udc80``; the rest is kept as it was."""
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:limit] if limit else text


class RejectedRecord(models.Model):
    """A record a run could not use: why, where, and an excerpt to find it."""

    run = models.ForeignKey(IngestRun, on_delete=models.CASCADE, related_name="rejections")
    position = models.CharField(max_length=100, blank=True)
    reason = models.TextField()
    raw = models.TextField(blank=True)

    def __str__(self):
        return f"{self.position}: {self.reason}"

    @classmethod
    def sample(cls, run_id: int, rejected, where: str = "") -> RejectedRecord:
        """The stored sample of a ``Rejected``: always storable (see ``storable``); ``where``
        precedes its position (a chunk's place in its run)."""
        return cls(
            run_id=run_id,
            reason=storable(rejected.reason),
            raw=storable(rejected.raw),
            position=storable(where + rejected.position, 100),
        )


class DeferredIndex(models.Model):
    """An index of the papers a large run dropped to load faster, kept here to be built again
    (``ingest.deferral``). Dropped and recorded in one transaction, built and forgotten in
    one: whatever stops a run, no index is lost, only waiting here."""

    name = models.CharField(max_length=63, unique=True)
    definition = models.TextField(help_text="CREATE INDEX statement, from pg_indexes.")
    size = models.BigIntegerField(help_text="Bytes when dropped: the largest is built first.")
    run = models.ForeignKey(
        IngestRun, null=True, on_delete=models.SET_NULL, related_name="deferred_indexes"
    )
    deferred_at = models.DateTimeField(auto_now_add=True)
    error = models.TextField(blank=True, help_text="Why its last build failed, if it did.")

    class Meta:
        ordering = ["-size", "name"]

    def __str__(self):
        return self.name
