"""Steering ingestion from the admin: sources and their schedules, runs and what they rejected.

Sources are for whoever may change them (not curators); runs are read-only history, apart from
retrying a failed one. Every action writes admin history like the change form does.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Prefetch
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince
from django_celery_beat import validators as cron

from catalogue.broker import BrokerUnavailable
from catalogue.provenance import source_name
from catalogue.security import WebURLField
from ingest import sources
from ingest.http import Fetcher
from ingest.models import DeferredIndex, IngestRun, RejectedRecord, Source
from ingest.runner import create_run
from ingest.tasks import queue_run

REJECTIONS_SHOWN = 100
_CRON_FIELDS = [
    ("minute", cron.minute_validator),
    ("hour", cron.hour_validator),
    ("day of month", cron.day_of_month_validator),
    ("month", cron.month_of_year_validator),
    ("day of week", cron.day_of_week_validator),
]


def log_changes(request, objects, message, flag=CHANGE) -> None:
    objects = list(objects)
    if objects:
        LogEntry.objects.log_actions(request.user.pk, objects, flag, change_message=message)


def enqueue(run: IngestRun) -> None:
    """Start the run on a worker once the transaction that created it commits (raises
    BrokerUnavailable, the run marked failed, if the task queue is unreachable)."""
    transaction.on_commit(lambda: queue_run(run))


def _run_link(run: IngestRun) -> str:
    url = reverse("admin:ingest_ingestrun_change", args=[run.pk])
    return format_html('<a href="{}">run {}</a>', url, run.pk)


class FormatFilter(admin.SimpleListFilter):
    """Formats by name ("arXiv API"), not by code (``arxiv_atom``)."""

    title = "format"
    parameter_name = "format"
    field = "format"

    def lookups(self, request, model_admin):
        return [(code, source_name(code)) for code in sources.FORMATS]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class KindFilter(FormatFilter):
    parameter_name = field = "kind"


# --- sources -------------------------------------------------------------------------------


class SourceForm(forms.ModelForm):
    """Checks what an admin typed the way a run would read it, before it is saved."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Formats by name in the menu; the code stays what is stored.
        self.fields["kind"].choices = [
            (code, f"{source_name(code)} ({code})") for code in sources.FORMATS
        ]

    def clean_crontab(self):
        crontab = " ".join(self.cleaned_data["crontab"].split())
        parts = crontab.split(" ")
        if len(parts) != len(_CRON_FIELDS):
            raise ValidationError("Five fields: minute hour day-of-month month day-of-week.")
        for value, (name, validator) in zip(parts, _CRON_FIELDS, strict=True):
            try:
                validator(value)
            except ValidationError:
                raise ValidationError(f"{value!r} is not a valid {name}.") from None
        return crontab

    def clean(self):
        cleaned = super().clean()
        kind, params = cleaned.get("kind"), cleaned.get("params")
        if kind and isinstance(params, dict):
            problem = params_problem(kind, cleaned.get("url") or None, params)
            if problem:
                self.add_error("params", problem)
        return cleaned


def params_problem(kind: str, url: str | None, params: dict) -> str | None:
    """What the format's ``fetch_pages`` says about these params; no request is made.

    ``fetch_pages`` checks its params when called and fetches only when iterated, so this
    fetcher never sends a request and needs none of the runner's settings or its throttle.
    """
    with Fetcher() as fetcher:
        try:
            sources.get_parser(kind).fetch_pages(fetcher, url, params)
        except ValueError as exc:
            return str(exc)
    return None


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    form = SourceForm
    # A source is fetched over http(s) only (Django's URL field also takes ftp).
    formfield_overrides = {
        models.URLField: {"assume_scheme": "https", "form_class": WebURLField},
    }
    list_display = ["name", "kind_name", "enabled", "crontab", "last_run", "last_run_counts"]
    list_filter = ["enabled", KindFilter]
    list_editable = ["enabled"]
    search_fields = ["name", "url"]
    fields = ["name", "kind", "url", "params", "crontab", "enabled", "periodic_task", "recent"]
    readonly_fields = ["periodic_task", "recent"]
    actions = ["run_now", "enable", "disable"]

    def get_queryset(self, request):
        # The newest run of every source in one query (DISTINCT ON), whatever the page size.
        newest = IngestRun.objects.order_by("source_id", "-queued_at").distinct("source_id")
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "runs",
                    queryset=IngestRun.objects.filter(pk__in=newest.values("pk")),
                    to_attr="newest_runs",
                )
            )
        )

    @admin.display(description="kind", ordering="kind")
    def kind_name(self, source):
        return source_name(source.kind)

    @admin.display(description="last run")
    def last_run(self, source):
        run = _newest(source)
        if run is None:
            return "never"
        when = run.finished_at or run.started_at or run.queued_at
        return format_html("{} {} · {}", _run_link(run), run.status, _ago(when))

    @admin.display(description="last run counts")
    def last_run_counts(self, source):
        run = _newest(source)
        return run.counts_line() if run else "—"

    @admin.display(description="recent runs")
    def recent(self, source):
        runs = source.runs.order_by("-queued_at")[:10] if source.pk else []
        if not runs:
            return "No runs yet."
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{} {} · {} · {}</li>",
                ((_run_link(r), r.status, _ago(r.queued_at), r.counts_line()) for r in runs),
            ),
        )

    @admin.action(description="Run selected sources now", permissions=["change"])
    def run_now(self, request, queryset):
        runs = []
        try:
            for source in queryset:
                run = create_run(source=source)
                runs.append(run)
                enqueue(run)
        except BrokerUnavailable as error:
            self.message_user(request, f"Run {runs[-1].pk} failed: {error}", messages.ERROR)
            return
        log_changes(request, runs, "Queued by “Run now”.", ADDITION)
        links = format_html_join(", ", "{}", ((_run_link(run),) for run in runs))
        self.message_user(request, format_html("Queued {}.", links), messages.SUCCESS)

    @admin.action(
        description="Enable selected sources (and their schedules)", permissions=["change"]
    )
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(
        description="Disable selected sources (pause their schedules)", permissions=["change"]
    )
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool):
        changed = [source for source in queryset if source.enabled != enabled]
        for source in changed:
            source.enabled = enabled
            source.save()  # save(), not update(): it keeps the beat entry in step
        log_changes(request, changed, [{"changed": {"fields": ["enabled"]}}])
        state = "enabled" if enabled else "disabled"
        self.message_user(request, f"{len(changed)} source(s) {state}.", messages.SUCCESS)


def _newest(source: Source) -> IngestRun | None:
    return source.newest_runs[0] if source.newest_runs else None


def _ago(when) -> str:
    return f"{timesince(when)} ago" if when else ""


# --- runs ----------------------------------------------------------------------------------


@admin.register(IngestRun)
class IngestRunAdmin(admin.ModelAdmin):
    """Read-only history; a failed run can be retried (as a new run with the same inputs)."""

    list_display = ["id", "source", "format_name", "status", "progress", "seen", "created"]
    list_display += ["updated", "unchanged", "rejected", "duration_shown", "queued_at", "part_of"]
    list_filter = ["status", FormatFilter, "source"]
    list_select_related = ["source", "parent"]
    date_hierarchy = "queued_at"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "source",
                    "format_name",
                    "location",
                    "options",
                    "status",
                    "attempts",
                    "worker",
                    "part_of",
                ]
            },
        ),
        ("Chunks", {"fields": ["chunks_shown"]}),
        ("Error", {"fields": ["error"]}),
        (
            "Counts",
            {
                "fields": [
                    "progress",
                    "expected",
                    "seen",
                    "created",
                    "updated",
                    "unchanged",
                    "rejected",
                    "rejections_stored",
                    "deleted",
                ]
            },
        ),
        ("Times", {"fields": ["queued_at", "started_at", "finished_at", "duration_shown"]}),
        ("Rejected records", {"fields": ["rejections_shown"]}),
    ]
    readonly_fields = [f.name for f in IngestRun._meta.fields]
    readonly_fields += ["format_name", "progress", "duration_shown", "rejections_shown"]
    readonly_fields += ["part_of", "chunks_shown"]
    actions = ["retry"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_retry_permission(self, request):
        # Retrying creates a run: whoever may add runs (not curators, who only watch).
        return request.user.has_perm("ingest.add_ingestrun")

    @admin.display(description="progress")
    def progress(self, run):
        """A bar while running: records handled of those the source announced (if it did)."""
        if run.status != IngestRun.Status.RUNNING:
            return "—"
        done = run.progress_done()
        if run.expected:
            return format_html(
                '<progress value="{done}" max="{expected}">{done} of {expected}</progress> '
                "{done} / {expected}",
                done=done,
                expected=run.expected,
            )
        return format_html("<progress></progress> {} so far", done)

    @admin.display(description="part of", ordering="parent")
    def part_of(self, run):
        """A chunk's place: "chunk 3 of 7 of run 12", linked to that run."""
        if run.parent_id is None:
            return "—"
        place = f"chunk {run.options.get('chunk', '?')} of {run.options.get('of', '?')} of "
        return format_html("{}{}", place, _run_link(run.parent))

    @admin.display(description="chunks")
    def chunks_shown(self, run):
        """A split run's chunks: what each reads, who executed it, how far it got."""
        chunks = run.chunks.order_by("pk")
        if not chunks:
            return "Not split." if not run.is_split else "Not planned yet."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (_run_link(chunk), _share(chunk), chunk.status, chunk.worker or "—",
                 chunk.counts_line())
                for chunk in chunks
            ),
        )  # fmt: skip
        return format_html(
            "<p>{}</p><table><tr><th>run</th><th>reads</th><th>status</th><th>worker</th>"
            "<th>counts</th></tr>{}</table>",
            run.workers_line(),
            rows,
        )

    @admin.display(description="format", ordering="format")
    def format_name(self, run):
        return source_name(run.format) if run.format else "—"

    @admin.display(description="duration")
    def duration_shown(self, run):
        if run.duration is not None:
            return _short(run.duration)
        if run.status == IngestRun.Status.RUNNING and run.started_at:
            return f"{_short(timezone.now() - run.started_at)} so far"
        return "—"

    @admin.display(description="rejected records")
    def rejections_shown(self, run):
        """The first rejections with their reasons; all of them in the rejected-records list."""
        rejections = run.all_rejections().order_by("pk")[:REJECTIONS_SHOWN]
        if not rejections:
            return "None."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            ((r.position, r.reason, r.raw[:200]) for r in rejections),
        )
        changelist = reverse("admin:ingest_rejectedrecord_changelist")
        # A split run's rejections are its chunks'.
        url = changelist + (
            f"?run__parent__id__exact={run.pk}" if run.chunk_count else f"?run__id__exact={run.pk}"
        )
        return format_html(
            "<table><tr><th>where</th><th>reason</th><th>record</th></tr>{}</table>"
            '<p><a href="{}">All {} stored rejected records of this run</a>{}</p>',
            rows,
            url,
            run.rejections_stored,
            _not_stored(run),
        )

    @admin.action(description="Retry selected failed runs", permissions=["retry"])
    def retry(self, request, queryset):
        failed = list(queryset.filter(status=IngestRun.Status.FAILED))
        try:
            retries = [_retry(run) for run in failed]
        except BrokerUnavailable as error:
            self.message_user(request, f"Not retried: {error}", messages.ERROR)
            return
        log_changes(request, retries, "Retry of a failed run.", ADDITION)
        if retries:
            links = format_html_join(", ", "{}", ((_run_link(run),) for run in retries))
            self.message_user(request, format_html("Queued {}.", links), messages.SUCCESS)
        skipped = len(queryset) - len(failed)
        if skipped:
            self.message_user(
                request, f"Skipped {skipped} run(s) that did not fail.", messages.WARNING
            )


def _share(chunk: IngestRun) -> str:
    """What a chunk reads of its run's listing: a byte range or a date window."""
    if byte_range := chunk.options.get("byte_range"):
        start, end = byte_range
        return f"bytes {start:,} to {end:,}"
    if params := chunk.options.get("params"):
        return f"{params.get('from')} to {params.get('until')}"
    return "—"


def _not_stored(run: IngestRun) -> str:
    if not run.rejections_not_stored:
        return ""
    return (
        f"; {run.rejections_not_stored} more were counted but not stored (a run stores "
        f"the first {settings.INGEST_MAX_STORED_REJECTIONS}: INGEST_MAX_STORED_REJECTIONS)"
    )


def _retry(run: IngestRun) -> IngestRun:
    """A new run with the same inputs: the failed one stays as it was, for the record."""
    retry = IngestRun.objects.create(
        source=run.source, format=run.format, location=run.location, options=run.options
    )
    enqueue(retry)
    return retry


def _short(duration) -> str:
    seconds = int(duration.total_seconds())
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


@admin.register(RejectedRecord)
class RejectedRecordAdmin(admin.ModelAdmin):
    list_display = ["run", "position", "reason"]
    list_select_related = ["run", "run__source"]
    search_fields = ["reason"]
    readonly_fields = ["run", "position", "reason", "raw"]

    def lookup_allowed(self, lookup, value, request=None):
        # A split run's page links to its chunks' rejections, all in one list.
        return lookup == "run__parent__id__exact" or super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DeferredIndex)
class DeferredIndexAdmin(admin.ModelAdmin):
    """Indexes a large run dropped and builds at its end (ingest.deferral): while any is listed,
    pages that need it scan the papers. Read-only: its record is how the index comes back."""

    list_display = ["name", "run", "size", "deferred_at", "error"]
    list_select_related = ["run", "run__source"]
    readonly_fields = ["name", "definition", "size", "run", "deferred_at", "error"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
