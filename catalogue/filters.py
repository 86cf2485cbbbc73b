"""The list pages' public URL parameters. They are the bookmark format: keep names stable.

``q``            query (see catalogue.search): stemmed words, "exact phrase", OR, -exclude,
                 title:, author:
``topic``        topic slug; repeat for several (papers must have all of them)
``author``       an author's name (words adjacent, unstemmed)
``since``        published on or after this ISO date
``until``        published on or before this ISO date
``period``       day, week, month or year: published in the window ending today
``min_upvotes``  at least this many upvotes
``has_code``     1: only papers with a code link
``sort``         relevance (default with q), newest (default without), oldest, upvotes, trending
``page``         handled by the paginator, not the FilterSet
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from urllib.parse import urlencode

import django_filters
from django import forms
from django.conf import settings
from django.utils import timezone

from catalogue import search
from catalogue.models import Paper, Topic
from catalogue.summary import CachedRanking

# The order of parameters in canonical URLs: equal searches have equal URLs.
PUBLIC_PARAMS = [
    "q", "topic", "author", "since", "until", "period", "min_upvotes", "has_code", "sort",
]  # fmt: skip

PERIOD_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}


class Sort:
    RELEVANCE = "relevance"
    NEWEST = "newest"
    OLDEST = "oldest"
    UPVOTES = "upvotes"
    TRENDING = "trending"
    CHOICES = [
        (RELEVANCE, "Relevance"),
        (NEWEST, "Newest"),
        (OLDEST, "Oldest"),
        (UPVOTES, "Most upvoted"),
        (TRENDING, "Trending"),
    ]


TRENDING_EXPLAINED = (
    "Trending ranks papers by upvotes gained over the last 7 days divided by "
    "(days since first listed + 2)^1.5, so new papers that are rising fast come first."
)


class PaperFilterForm(forms.Form):
    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "Until must not be before since.")
        return cleaned


class PaperFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        method="filter_query",
        label="Search",
        max_length=500,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": 'e.g. "linear attention"'}),
    )
    topic = django_filters.ModelMultipleChoiceFilter(
        queryset=Topic.objects.all(),
        to_field_name="slug",
        method="filter_topics",
        label="Topics",
        widget=forms.CheckboxSelectMultiple,
    )
    author = django_filters.CharFilter(method="filter_author", label="Author", max_length=200)
    since = django_filters.DateFilter(
        field_name="published_on",
        lookup_expr="gte",
        label="Since",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    until = django_filters.DateFilter(
        field_name="published_on",
        lookup_expr="lte",
        label="Until",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    period = django_filters.ChoiceFilter(
        choices=[(p, p.capitalize()) for p in PERIOD_DAYS],
        method="filter_period",
        label="Period",
        empty_label="Any time",
    )
    min_upvotes = django_filters.NumberFilter(
        field_name="upvotes",
        lookup_expr="gte",
        label="Min. upvotes",
        min_value=0,
        max_value=10**6,
        widget=forms.NumberInput(attrs={"min": 0, "step": 1}),
    )
    has_code = django_filters.BooleanFilter(
        method="filter_has_code", label="Has code", widget=forms.CheckboxInput
    )
    sort = django_filters.ChoiceFilter(
        choices=Sort.CHOICES, method="filter_sort", label="Sort", empty_label=None
    )

    class Meta:
        model = Paper
        fields = PUBLIC_PARAMS
        form = PaperFilterForm

    def __init__(self, data=None, *args, today: dt.date | None = None, **kwargs):
        super().__init__(data, *args, **kwargs)
        self.today = today or timezone.localdate()
        # A whole number: "3.5" upvotes is a form error, not a silent rounding.
        self.filters["min_upvotes"].field_class = forms.IntegerField
        # The side column's fields belong to the search form at the top (HTML form=""), so
        # one submit keeps every parameter, without JavaScript.
        for field in self.form.fields.values():
            field.widget.attrs["form"] = "search"

    # --- what the reader asked for -------------------------------------------------------

    @property
    def cleaned(self) -> dict:
        return self.form.cleaned_data if self.is_bound and self.form.is_valid() else {}

    @property
    def query_text(self) -> str:
        return (self.cleaned.get("q") or "").strip()

    @property
    def sort_order(self) -> str:
        chosen = self.cleaned.get("sort")
        if chosen == Sort.RELEVANCE and not self._has_rank:
            chosen = None
        return chosen or self.default_sort

    @property
    def default_sort(self) -> str:
        return Sort.RELEVANCE if self._has_rank else Sort.NEWEST

    @cached_property
    def _has_rank(self) -> bool:
        return bool(self.query_text) and bool(search.parse(self.query_text).rank_query)

    def canonical_params(self) -> list[tuple[str, str]]:
        """The search as ordered (name, value) pairs without defaults: its bookmark."""
        pairs = []
        for name in PUBLIC_PARAMS:
            value = self.cleaned.get(name)
            if name == "sort":
                value = None if self.sort_order == self.default_sort else self.sort_order
            elif name == "topic":
                pairs += [("topic", slug) for slug in sorted({t.slug for t in value or ()})]
                continue
            elif name == "has_code":
                value = "1" if value else None
            elif isinstance(value, str):
                value = value.strip()
            if value not in (None, ""):
                pairs.append(
                    (name, value.isoformat() if hasattr(value, "isoformat") else str(value))
                )
        return pairs

    def canonical_query(self) -> str:
        return urlencode(self.canonical_params())

    # --- filters ---------------------------------------------------------------------------

    def filter_query(self, queryset, name, value):
        return queryset.search(value.strip()) if value.strip() else queryset

    def filter_author(self, queryset, name, value):
        value = value.replace('"', " ").strip()
        return queryset.matching(f'author:"{value}"') if value else queryset

    def filter_topics(self, queryset, name, topics):
        for topic in topics:
            queryset = queryset.in_topic(topic)
        return queryset

    def filter_period(self, queryset, name, value):
        days = PERIOD_DAYS[value]
        return queryset.published_between(self.today - dt.timedelta(days=days - 1), self.today)

    def filter_has_code(self, queryset, name, value):
        return queryset.exclude(code_url="") if value else queryset

    def filter_sort(self, queryset, name, value):
        return queryset  # ordering is applied in ``qs``, after every filter

    @property
    def matches(self):
        """Every matching paper, unordered: what counts and facets summarise."""
        return super().qs.order_by()

    def results(self, prepare=lambda papers: papers, *, matches: int | None = None):
        """What pages slice: ``qs``, except that a relevance ranking comes from the cache
        (``CachedRanking``). ``prepare`` adds what the caller needs to the papers it loads
        (prefetches); ``matches``, the summary's count, decides how the newest candidates
        of a ranking are found."""
        if self.sort_order == Sort.RELEVANCE:
            return CachedRanking(self.qs, prepare(Paper.objects.all()), matches=matches)
        return prepare(self.qs)

    @property
    def reachable(self) -> int:
        """How many results pages can reach in this order (see ``qs``)."""
        if self.sort_order == Sort.RELEVANCE:
            return settings.SEARCH_RANK_CANDIDATES
        return settings.LIST_MAX_RESULTS

    @property
    def qs(self):
        queryset = super().qs
        return {
            Sort.RELEVANCE: lambda: queryset.by_relevance(settings.SEARCH_RANK_CANDIDATES),
            Sort.NEWEST: queryset.newest_first,
            Sort.OLDEST: queryset.oldest_first,
            Sort.UPVOTES: queryset.most_upvoted,
            Sort.TRENDING: queryset.trending,
        }[self.sort_order]()
