"""The catalogue's admin: curating papers (hide, feature, topics, merge) and topics as rules.

Staff search papers with the readers' syntax over the full-text indexes (never ``icontains``,
which scans the table), or by exact arXiv id. Every custom action and view writes admin
history (``LogEntry``) like the built-in change form does.
"""

from __future__ import annotations

import re

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.admin.views.main import ChangeList
from django.contrib.admin.widgets import AdminURLFieldWidget
from django.contrib.postgres.forms import SimpleArrayField
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import Count, Exists, OuterRef, Prefetch, Q
from django.http import HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from catalogue import merging, provenance, search, tagging
from catalogue.broker import send_on_commit
from catalogue.models import Paper, PaperAlias, PaperTopic, Sighting, Topic
from catalogue.security import WebURLField, WebURLValidator
from catalogue.tasks import tag_papers, tag_topic

# The fields a curator's edit protects from ingest (ingest.upsert.CURATABLE; a test keeps the
# two equal: the catalogue does not import ingest).
CURATABLE = ("title", "abstract", "authors", "code_url", "project_url")
# Fields topic rules read: editing them re-tags the paper.
_RULE_TEXT = ("title", "abstract", "authors")
# "2401.01234", "arXiv:2401.01234v2", "hep-th/9901001", "math.AG/0601001v1"
_ARXIV_ID = re.compile(
    r"^(?:arxiv:)?(\d{4}\.\d{4,5}|[a-z-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$", re.IGNORECASE
)
# Phrases, fields, exclusions, OR: a query in the readers' syntax, used exactly as typed.
_QUERY_SYNTAX = re.compile(r'"|\b(?:title|author|abstract):|(?:^|\s)-|\sOR\s')
# Topic actions list every chosen paper on their confirmation page.
MAX_PAPERS_PER_ACTION = 1000
REFETCH_TASK = "ingest.tasks.refetch_arxiv"


def log_changes(request, objects, message, flag=CHANGE) -> None:
    """Admin history for an action, one entry per object (bulk, one INSERT)."""
    objects = list(objects)
    if objects:
        LogEntry.objects.log_actions(request.user.pk, objects, flag, change_message=message)


def changed_fields_message(*fields: str) -> list:
    """A structured change message: the history page shows it as "Changed Hidden."."""
    return [{"changed": {"fields": [Paper._meta.get_field(f).verbose_name for f in fields]}}]


# --- paper list: filters -------------------------------------------------------------------


class TopicFilter(admin.SimpleListFilter):
    title = "topic"
    parameter_name = "topic"

    def lookups(self, request, model_admin):
        return Topic.objects.values_list("slug", "name")

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        tagged = PaperTopic.objects.filter(paper=OuterRef("pk"), topic__slug=self.value())
        return queryset.filter(Exists(tagged.exclude(reason=PaperTopic.Reason.EXCLUDED)))


class SourceFilter(admin.SimpleListFilter):
    """Papers a listing format has seen (a paper can have several sightings)."""

    title = "source"
    parameter_name = "source"

    def lookups(self, request, model_admin):
        sources = Sighting.objects.order_by("source").values_list("source", flat=True).distinct()
        return [(source, provenance.source_name(source)) for source in sources]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        seen = Sighting.objects.filter(paper=OuterRef("pk"), source=self.value())
        return queryset.filter(Exists(seen))


class HasCodeFilter(admin.SimpleListFilter):
    title = "has code"
    parameter_name = "has_code"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(code_url="")
        if self.value() == "no":
            return queryset.filter(code_url="")
        return queryset


class PaperChangeList(ChangeList):
    """The list loads what its columns show in two extra queries, whatever the page size."""

    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        return queryset.defer("abstract").prefetch_related(
            Prefetch(
                "papertopic_set",
                queryset=PaperTopic.objects.select_related("topic").order_by("topic__name"),
                to_attr="topic_rows",
            ),
            Prefetch(
                "sightings",
                queryset=Sighting.objects.only("paper_id", "source").order_by("source"),
                to_attr="sighting_rows",
            ),
        )


# --- paper form and inlines ----------------------------------------------------------------


class LinesField(SimpleArrayField):
    """A list edited one item per line; blank lines are ignored."""

    def __init__(self, **kwargs):
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 4}))
        super().__init__(forms.CharField(), delimiter="\n", **kwargs)

    def to_python(self, value):
        if isinstance(value, str):
            value = "\n".join(line.strip() for line in value.splitlines() if line.strip())
        return super().to_python(value)


class PaperForm(forms.ModelForm):
    # No Meta: ModelAdmin builds the form for Paper with the fields of its fieldsets.
    authors = LinesField(required=False, help_text="One name per line.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "title" in self.fields:
            self.fields["title"].widget.attrs["rows"] = 2  # a title is a line, not an essay


class PaperTopicInline(admin.TabularInline):
    model = PaperTopic
    fields = ["topic", "reason", "created_at"]
    readonly_fields = ["created_at"]
    extra = 0
    verbose_name = "topic"
    verbose_name_plural = "topics (rule matches, staff pins and exclusions)"

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        # A topic staff add by hand is a pin, not a rule match.
        formset.form.base_fields["reason"].initial = PaperTopic.Reason.PINNED
        return formset


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class SightingInline(ReadOnlyInline):
    model = Sighting
    fields = readonly_fields = ["source_name", "first_seen_at", "last_seen_at", "listed_on"]
    verbose_name_plural = "sightings (where listings saw this paper)"

    @admin.display(description="source")
    def source_name(self, sighting):
        return sighting.source_name


class AliasInline(ReadOnlyInline):
    model = PaperAlias
    fields = readonly_fields = ["key", "created_at"]
    verbose_name_plural = "aliases (keys of papers merged into this one)"


# --- paper admin ---------------------------------------------------------------------------


@admin.register(Paper)
class PaperAdmin(admin.ModelAdmin):
    form = PaperForm
    list_display = ["title", "arxiv_id", "published_on", "upvotes", "has_code", "topic_names"]
    list_display += ["source_names", "hidden", "featured", "withdrawn", "curated"]
    list_filter = [TopicFilter, SourceFilter, "hidden", "featured", "withdrawn", HasCodeFilter]
    # Only so that the search box shows: get_search_results replaces Django's icontains search.
    search_fields = ["title"]
    search_help_text = (
        'arXiv id, or words of title and abstract, or an author\'s name; "exact phrase", '
        "-exclude, OR, title:, author:"
    )
    date_hierarchy = "published_on"
    list_per_page = 100
    # Counts per filter choice would scan the whole table; the list shows what matches.
    show_facets = admin.ShowFacets.NEVER
    show_full_result_count = False
    ordering = ["-id"]
    inlines = [PaperTopicInline, SightingInline, AliasInline]
    readonly_fields = ["curated", "trending_score", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["title", "abstract", "authors", "author_count"]}),
        ("Links", {"fields": ["code_url", "project_url", "doi"]}),
        ("Dates", {"fields": ["published_on", "listed_on", "updated_on"]}),
        ("Popularity", {"fields": ["upvotes", "comments", "github_stars", "trending_score"]}),
        ("Curation", {"fields": ["hidden", "featured", "withdrawn", "curated"]}),
        (
            "Source record",
            {
                "classes": ["collapse"],
                "fields": [
                    "arxiv_id",
                    "source_key",
                    "version",
                    "primary_category",
                    "categories",
                    "keywords",
                    "journal_ref",
                    "arxiv_comment",
                    "created_at",
                    "updated_at",
                ],
            },
        ),
    ]
    actions = [
        "hide",
        "unhide",
        "feature",
        "unfeature",
        "add_to_topic",
        "remove_from_topic",
        "refetch",
        "merge",
        "release_curated_fields",
    ]
    change_list_template = "admin/catalogue/paper/change_list.html"
    # Links typed without a scheme are https (Django 6's default, without the warning); only
    # web links are accepted, and "Currently:" links only a web link (old rows may hold others).
    formfield_overrides = {
        models.URLField: {
            "assume_scheme": "https",
            "form_class": WebURLField,
            "widget": AdminURLFieldWidget(validator_class=WebURLValidator),
        }
    }

    def get_queryset(self, request):
        # The search vectors are large and never shown.
        return super().get_queryset(request).defer("search_vector", "author_vector")

    def get_changelist(self, request, **kwargs):
        return PaperChangeList

    def get_readonly_fields(self, request, obj=None):
        # Natural keys tie a paper to its listings: changing one by hand would orphan it.
        fields = super().get_readonly_fields(request, obj)
        return [*fields, "arxiv_id", "source_key"] if obj else fields

    def get_search_results(self, request, queryset, search_term):
        """Exact arXiv id, else the readers' query syntax over the full-text indexes."""
        term = search_term.strip()
        if not term:
            return queryset, False
        arxiv_id = _ARXIV_ID.match(term)
        if arxiv_id:
            return queryset.filter(arxiv_id=arxiv_id.group(1)), False
        return queryset.filter(_text_or_author(term)), False

    # --- columns ---------------------------------------------------------------------------

    @admin.display(boolean=True, description="code")
    def has_code(self, paper):
        return bool(paper.code_url)

    @admin.display(description="topics")
    def topic_names(self, paper):
        rows = [r for r in paper.topic_rows if r.reason != PaperTopic.Reason.EXCLUDED]
        return ", ".join(_topic_label(row) for row in rows) or "—"

    @admin.display(description="sources")
    def source_names(self, paper):
        return ", ".join(sighting.source_name for sighting in paper.sighting_rows) or "—"

    @admin.display(description="curated fields")
    def curated(self, paper):
        """Fields staff edited: ingest never overwrites them until they are released."""
        return ", ".join(paper.curated_fields) or "—"

    # --- saving ----------------------------------------------------------------------------

    def save_model(self, request, obj, form, change):
        edited = [name for name in CURATABLE if name in form.changed_data]
        if edited:
            obj.curated_fields = sorted({*obj.curated_fields, *edited})
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        text_changed = any(name in form.changed_data for name in _RULE_TEXT)
        if text_changed or any(formset.has_changed() for formset in formsets):
            send_on_commit(
                tag_papers,
                [form.instance.pk],
                queued=lambda: None,  # silent: re-tagging one paper takes a moment
                failed=lambda error: self.message_user(
                    request, f"Saved, but topics were not re-tagged: {error}", messages.ERROR
                ),
            )

    # --- actions ---------------------------------------------------------------------------

    @admin.action(description="Hide selected papers from readers", permissions=["change"])
    def hide(self, request, queryset):
        self._set_flag(request, queryset, "hidden", True, "Hid {n} paper{s}.")

    @admin.action(description="Show selected papers to readers again", permissions=["change"])
    def unhide(self, request, queryset):
        self._set_flag(request, queryset, "hidden", False, "{n} paper{s} visible again.")

    @admin.action(description="Feature selected papers", permissions=["change"])
    def feature(self, request, queryset):
        self._set_flag(request, queryset, "featured", True, "Featured {n} paper{s}.")

    @admin.action(description="Stop featuring selected papers", permissions=["change"])
    def unfeature(self, request, queryset):
        self._set_flag(request, queryset, "featured", False, "Unfeatured {n} paper{s}.")

    def _set_flag(self, request, queryset, field, value, done):
        papers = list(_plain(queryset).exclude(**{field: value}).only("id", "title"))
        # updated_at too: list pages' cached counts are keyed by the latest change.
        Paper.objects.filter(pk__in=[p.pk for p in papers]).update(
            **{field: value, "updated_at": timezone.now()}
        )
        log_changes(request, papers, changed_fields_message(field))
        self.message_user(request, done.format(n=len(papers), s=_s(papers)), messages.SUCCESS)

    @admin.action(description="Add selected papers to a topic (pin)…", permissions=["change"])
    def add_to_topic(self, request, queryset):
        return self._topic_action(request, queryset, PaperTopic.Reason.PINNED)

    @admin.action(
        description="Remove selected papers from a topic (exclude)…", permissions=["change"]
    )
    def remove_from_topic(self, request, queryset):
        return self._topic_action(request, queryset, PaperTopic.Reason.EXCLUDED)

    def _topic_action(self, request, queryset, reason):
        """Ask which topic on an intermediate page; then pin (or exclude) the papers."""
        papers = list(_plain(queryset).only("id", "title")[: MAX_PAPERS_PER_ACTION + 1])
        if len(papers) > MAX_PAPERS_PER_ACTION:
            message = f"Choose at most {MAX_PAPERS_PER_ACTION} papers for a topic action."
            self.message_user(request, message, messages.ERROR)
            return None
        form = TopicChoiceForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self._choose_topic_page(request, papers, form, reason)
        topic = form.cleaned_data["topic"]
        set_topic_reason(papers, topic, reason)
        verb = "Pinned to" if reason == PaperTopic.Reason.PINNED else "Excluded from"
        log_changes(request, papers, f"{verb} topic “{topic}”.")
        lasting = "removes" if reason == PaperTopic.Reason.PINNED else "adds"
        self.message_user(
            request,
            f"{verb} “{topic}”: {len(papers)} paper{_s(papers)}. Re-tagging never {lasting} them.",
            messages.SUCCESS,
        )
        return None

    def _choose_topic_page(self, request, papers, form, reason):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Pin to a topic" if reason == PaperTopic.Reason.PINNED else "Exclude",
            "papers": papers,
            "form": form,
            "action": request.POST.get("action"),
            "reason": reason,
        }
        return TemplateResponse(request, "admin/catalogue/paper/choose_topic.html", context)

    @admin.action(description="Re-fetch selected papers from arXiv", permissions=["change"])
    def refetch(self, request, queryset):
        papers = list(_plain(queryset).only("id", "title", "arxiv_id"))
        arxiv_ids = [p.arxiv_id for p in papers if p.arxiv_id]
        if arxiv_ids:
            refetched = [p for p in papers if p.arxiv_id]
            # By name: the catalogue does not import ingest; the task creates the runs.
            send_on_commit(
                REFETCH_TASK,
                arxiv_ids,
                queued=lambda: self._refetch_queued(request, refetched),
                failed=lambda error: self.message_user(
                    request, f"Re-fetch not queued: {error}", messages.ERROR
                ),
            )
        skipped = len(papers) - len(arxiv_ids)
        if skipped:
            self.message_user(
                request,
                f"Skipped {skipped} paper{_s(range(skipped))} without an arXiv id: only their "
                "listing knows them, and it is re-read on its own schedule.",
                messages.WARNING,
            )

    def _refetch_queued(self, request, refetched):
        log_changes(request, refetched, "Re-fetch from arXiv queued.")
        runs = reverse("admin:ingest_ingestrun_changelist")
        self.message_user(
            request,
            format_html(
                'Re-fetch of {} paper{} from arXiv queued: follow it in <a href="{}">ingest '
                "runs</a>.",
                len(refetched),
                _s(refetched),
                runs,
            ),
            messages.SUCCESS,
        )

    @admin.action(
        description="Merge selected papers (choose the one to keep)…", permissions=["merge"]
    )
    def merge(self, request, queryset):
        ids = list(_plain(queryset).values_list("pk", flat=True)[: merging.MAX_MERGE + 1])
        if not 2 <= len(ids) <= merging.MAX_MERGE:
            message = f"Choose 2 to {merging.MAX_MERGE} papers to merge."
            self.message_user(request, message, messages.ERROR)
            return None
        return HttpResponseRedirect(_merge_url(ids))

    def has_merge_permission(self, request):
        # A merge rewrites the canonical paper and folds the others into it (their keys live
        # on as aliases): a curation change, not a loss of data.
        return self.has_change_permission(request)

    @admin.action(
        description="Release curated fields (ingest may update them again)",
        permissions=["change"],
    )
    def release_curated_fields(self, request, queryset):
        curated = _plain(queryset).exclude(curated_fields=[])
        papers = list(curated.only("id", "title", "curated_fields"))
        Paper.objects.filter(pk__in=[p.pk for p in papers]).update(curated_fields=[])
        for paper in papers:  # each entry names the fields that paper had
            fields = ", ".join(paper.curated_fields)
            log_changes(request, [paper], f"Released curated fields: {fields}.")
        self.message_user(
            request,
            f"Released the curated fields of {len(papers)} paper{_s(papers)}.",
            messages.SUCCESS,
        )

    # --- merge and possible duplicates views -----------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("merge/", view(self.merge_view), name="catalogue_paper_merge"),
            path("duplicates/", view(self.duplicates_view), name="catalogue_paper_duplicates"),
            *super().get_urls(),
        ]

    def merge_view(self, request):
        if not self.has_merge_permission(request):
            raise PermissionDenied
        ids = _ids(request.POST.get("ids") or request.GET.get("ids", ""))[: merging.MAX_MERGE]
        papers = list(Paper.objects.filter(pk__in=ids).order_by("pk").prefetch_related("sightings"))
        if len(papers) < 2:
            message = "Choose at least two existing papers to merge."
            self.message_user(request, message, messages.ERROR)
            return redirect("admin:catalogue_paper_changelist")
        form = MergeForm(request.POST or None, papers=papers)
        if request.method == "POST" and form.is_valid():
            return self._merge(request, form.kept, form.merged_away)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Merge duplicate papers",
            "papers": papers,
            "ids": ",".join(str(p.pk) for p in papers),
            "form": form,
            "chosen": form.chosen_pk,
        }
        return TemplateResponse(request, "admin/catalogue/paper/merge.html", context)

    def _merge(self, request, canonical, duplicates):
        with transaction.atomic():
            described = "; ".join(f"#{d.pk} {d.slug} “{d.title}”" for d in duplicates)
            log_changes(request, duplicates, f"Merged into paper #{canonical.pk}.", DELETION)
            result = merging.merge(canonical, duplicates)
            aliases = ", ".join(result.aliases)
            log_changes(request, [result.canonical], f"Merged {described}; aliases: {aliases}.")
        self.message_user(
            request,
            f"Merged {len(duplicates)} paper{_s(duplicates)} into “{result.canonical}”. "
            "Their old URLs redirect here, and ingest updates this paper for them.",
            messages.SUCCESS,
        )
        return redirect("admin:catalogue_paper_change", result.canonical.pk)

    def duplicates_view(self, request):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Possible duplicates",
            "pairs": merging.possible_duplicates(),
            "recent": merging.DUPLICATE_CANDIDATES,
            "threshold": merging.SIMILARITY_THRESHOLD,
            "merge_url": reverse("admin:catalogue_paper_merge"),
        }
        return TemplateResponse(request, "admin/catalogue/paper/duplicates.html", context)


class TopicChoiceForm(forms.Form):
    topic = forms.ModelChoiceField(Topic.objects.all(), empty_label=None)


class MergeForm(forms.Form):
    canonical = forms.TypedChoiceField(coerce=int, label="Keep")

    def __init__(self, data=None, *, papers):
        initial = {"canonical": merging.suggested_canonical(papers).pk}
        super().__init__(data, initial=initial)
        self.papers = papers
        self.fields["canonical"].choices = [(p.pk, str(p)) for p in papers]

    @property
    def chosen_pk(self) -> int | None:
        try:
            return int(self["canonical"].value())
        except (TypeError, ValueError):
            return None

    @property
    def kept(self) -> Paper:
        return next(p for p in self.papers if p.pk == self.cleaned_data["canonical"])

    @property
    def merged_away(self) -> list[Paper]:
        return [p for p in self.papers if p.pk != self.cleaned_data["canonical"]]


def set_topic_reason(papers, topic: Topic, reason: str) -> None:
    """Pin papers to (or exclude them from) a topic, whatever rows they had for it."""
    PaperTopic.objects.bulk_create(
        [PaperTopic(paper_id=paper.pk, topic=topic, reason=reason) for paper in papers],
        update_conflicts=True,
        unique_fields=["paper", "topic"],
        update_fields=["reason"],
    )


def _text_or_author(term: str) -> Q:
    """Plain words match title and abstract, or an author's name; syntax is taken as typed."""
    condition = search.condition(search.parse(term))
    if _QUERY_SYNTAX.search(term):
        return condition
    as_author = search.parse(f'author:"{term}"')
    return condition | search.condition(as_author) if not as_author.is_empty else condition


def _topic_label(row: PaperTopic) -> str:
    pinned = row.reason == PaperTopic.Reason.PINNED
    return f"{row.topic.name} (pinned)" if pinned else row.topic.name


def _plain(queryset):
    """The selected papers without the change list's prefetches (actions need ids, titles)."""
    return Paper.objects.filter(pk__in=queryset.values("pk"))


def _ids(text: str) -> list[int]:
    # ASCII digits only: int() refuses digits such as "²" that str.isdigit() accepts.
    parts = (part.strip() for part in text.split(","))
    return [int(part) for part in parts if part.isascii() and part.isdigit() and len(part) < 19]


def _merge_url(ids) -> str:
    return f"{reverse('admin:catalogue_paper_merge')}?ids={','.join(map(str, ids))}"


def _s(items) -> str:
    return "" if len(items) == 1 else "s"


# --- topics --------------------------------------------------------------------------------


class TopicForm(forms.ModelForm):
    """A topic; a "Preview" submit validates it and shows what it would tag, without saving."""

    previewing = False  # set by TopicAdmin.get_form for a Preview submit
    preview: tagging.Preview | None = None

    def clean_query(self):
        query = self.cleaned_data["query"].strip()
        problem = tagging.query_problem(query)
        if problem:
            raise ValidationError(problem)
        return query

    def is_valid(self):
        valid = super().is_valid()
        if valid and self.previewing:
            self.preview = tagging.preview(self.cleaned_data["query"])
            # Not valid *for saving*: ModelAdmin then renders this bound form again, with no
            # error, and the template shows the preview under it.
            return False
        return valid


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    form = TopicForm
    list_display = ["name", "query", "tagged", "pinned", "excluded", "updated_at"]
    search_fields = ["name", "query"]  # a few hundred topics at most: icontains is fine here
    prepopulated_fields = {"slug": ["name"]}
    fields = ["name", "slug", "description", "query", "staff_choices"]
    readonly_fields = ["staff_choices"]
    actions = ["retag"]
    change_form_template = "admin/catalogue/topic/change_form.html"

    def get_queryset(self, request):
        reason = PaperTopic.Reason
        return (
            super()
            .get_queryset(request)
            .annotate(
                tagged_count=Count("papertopic", filter=~Q(papertopic__reason=reason.EXCLUDED)),
                pinned_count=Count("papertopic", filter=Q(papertopic__reason=reason.PINNED)),
                excluded_count=Count("papertopic", filter=Q(papertopic__reason=reason.EXCLUDED)),
            )
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if request.method == "POST" and "_preview" in request.POST:
            return type(form.__name__, (form,), {"previewing": True})
        return form

    @admin.display(description="papers", ordering="tagged_count")
    def tagged(self, topic):
        return topic.tagged_count

    @admin.display(description="pinned", ordering="pinned_count")
    def pinned(self, topic):
        return topic.pinned_count

    @admin.display(description="excluded", ordering="excluded_count")
    def excluded(self, topic):
        return topic.excluded_count

    @admin.display(description="staff choices")
    def staff_choices(self, topic):
        """Papers staff pinned or excluded: the rule never changes these."""
        if topic.pk is None:
            return "Pin or exclude papers from the paper list's actions."
        rows = (
            PaperTopic.objects.filter(topic=topic)
            .exclude(reason=PaperTopic.Reason.RULE)
            .select_related("paper")
            .only("reason", "paper__id", "paper__title")
            .order_by("reason", "paper__title")[:STAFF_CHOICES_SHOWN]
        )
        if not rows:
            return "None yet: pin or exclude papers from the paper list's actions."
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                '<li>{}: <a href="{}">{}</a></li>',
                (
                    (row.get_reason_display(), _paper_admin_url(row.paper_id), row.paper.title)
                    for row in rows
                ),
            ),
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        form = context["adminform"].form
        preview = form.preview
        if preview is None and obj is not None and not form.is_bound:
            preview = tagging.preview(obj.query)  # what the saved rule matches now
        context["preview"] = preview
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change or "query" in form.changed_data:
            self._queue_tagging(request, obj)

    @admin.action(description="Re-tag the catalogue for selected topics", permissions=["change"])
    def retag(self, request, queryset):
        for topic in queryset:
            self._queue_tagging(request, topic)
        log_changes(request, queryset, "Re-tagging queued.")

    def _queue_tagging(self, request, topic):
        send_on_commit(
            tag_topic,
            topic.pk,
            queued=lambda: self.message_user(
                request,
                f"Tagging papers with “{topic}” in the background; the count updates in a moment.",
                messages.INFO,
            ),
            failed=lambda error: self.message_user(
                request, f"Papers were not tagged with “{topic}”: {error}", messages.ERROR
            ),
        )


STAFF_CHOICES_SHOWN = 50


def _paper_admin_url(paper_id: int) -> str:
    return reverse("admin:catalogue_paper_change", args=[paper_id])
