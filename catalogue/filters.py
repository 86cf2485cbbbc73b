"""The list page's public URL parameters. They are the bookmark format: keep names stable.

``q``            query in websearch syntax (stemmed words, "exact phrase", OR, -exclude)
``since``        published on or after this ISO date
``until``        published on or before this ISO date
``min_upvotes``  at least this many upvotes
``sort``         relevance (default when searching), newest (default otherwise), upvotes
``page``         handled by the paginator, not the FilterSet
"""

from __future__ import annotations

import django_filters
from django import forms

from catalogue.models import Paper


class SortChoices:
    RELEVANCE = "relevance"
    NEWEST = "newest"
    UPVOTES = "upvotes"
    CHOICES = [(RELEVANCE, "Relevance"), (NEWEST, "Newest"), (UPVOTES, "Most upvoted")]


class PaperFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        method="filter_query",
        label="Search",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": 'e.g. "linear attention"'}),
    )
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
    min_upvotes = django_filters.NumberFilter(
        field_name="upvotes",
        lookup_expr="gte",
        label="Min. upvotes",
        min_value=0,
        max_value=10**6,
        widget=forms.NumberInput(attrs={"min": 0, "step": 1}),
    )
    sort = django_filters.ChoiceFilter(
        choices=SortChoices.CHOICES, method="filter_sort", label="Sort", empty_label=None
    )

    class Meta:
        model = Paper
        fields = ["q", "since", "until", "min_upvotes", "sort"]

    def __init__(self, data=None, *args, **kwargs):
        super().__init__(data, *args, **kwargs)
        # A whole number: "3.5" upvotes is a form error, not a silent rounding.
        self.filters["min_upvotes"].field_class = forms.IntegerField

    @property
    def query_text(self) -> str:
        if self.is_bound and self.form.is_valid():
            return (self.form.cleaned_data.get("q") or "").strip()
        return ""

    def filter_query(self, queryset, name, value):
        value = value.strip()
        return queryset.search(value) if value else queryset

    def filter_sort(self, queryset, name, value):
        # Ordering is applied in ``qs`` after every filter, see there.
        return queryset

    @property
    def qs(self):
        queryset = super().qs
        sort = self.form.cleaned_data.get("sort") if self.form.is_valid() else None
        if not sort:
            sort = SortChoices.RELEVANCE if self.query_text else SortChoices.NEWEST
        if sort == SortChoices.RELEVANCE and self.query_text:
            return queryset.order_by("-rank", "-id")
        if sort == SortChoices.UPVOTES:
            return queryset.most_upvoted()
        return queryset.newest_first()
