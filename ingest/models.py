"""What ingestion records about itself: runs and the records they rejected."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class IngestRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial"  # finished, but some records were rejected
        FAILED = "failed"

    FINISHED = (Status.SUCCEEDED, Status.PARTIAL, Status.FAILED)

    source = models.CharField(max_length=200, help_text="Format or named source that was read.")
    location = models.TextField(help_text="File path or URL that was read.")
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    seen = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    expected = models.PositiveIntegerField(null=True, blank=True, help_text="For progress.")
    error = models.TextField(blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at"]
        indexes = [models.Index(fields=["status", "-queued_at"], name="ingestrun_status_idx")]

    def __str__(self):
        return f"{self.source} {self.location} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    def counts_line(self) -> str:
        return (
            f"seen {self.seen}, created {self.created}, updated {self.updated}, "
            f"unchanged {self.unchanged}, rejected {self.rejected}"
        )


class RejectedRecord(models.Model):
    """A record a run could not use: why, where, and an excerpt to find it."""

    run = models.ForeignKey(IngestRun, on_delete=models.CASCADE, related_name="rejections")
    position = models.CharField(max_length=100, blank=True)
    reason = models.TextField()
    raw = models.TextField(blank=True)

    def __str__(self):
        return f"{self.position}: {self.reason}"
