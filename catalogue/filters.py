"""The list pages' public URL parameters. They are the bookmark format: keep names stable.

``q``            query (see catalogue.search): stemmed words, "exact phrase", OR, -exclude,
                 title:, author:
``mode``         hybrid (default with q: words and meaning), keyword or semantic
                 (see catalogue.hybrid)
``like``         a paper's id (arXiv id or catalogue number): papers nearest it in meaning
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

import dataclasses
import datetime as dt
import functools
from collections.abc import Iterable
from functools import cached_property
from urllib.parse import urlencode

import django_filters
from django import forms
from django.conf import settings
from django.db.models import QuerySet, Value
from django.utils import timezone

from catalogue import alongside, hybrid, jinja, search, wordmonths
from catalogue.hybrid import Mode
from catalogue.models import SAMPLE_EVERY, Paper, Topic
from catalogue.summary import (
    CachedRanking,
    PagedByIds,
    RankColumns,
    Reach,
    Summary,
    any_embedding,
    cached_neighbours,
    cached_ranking,
    catalogue_size,
    exact_from_ids,
    facets_of,
    is_large,
    neighbours_key,
    of_ids,
    papers_published_between,
    query_text,
    ranked_from_summary,
    ranked_known_newest,
    ranked_rows,
    ranking_text,
    ranks_in_scan,
    summarise,
    tests_range_pays,
)

# The order of parameters in canonical URLs: equal searches have equal URLs.
PUBLIC_PARAMS = [
    "q", "mode", "like", "topic", "author", "since", "until", "period", "min_upvotes",
    "has_code", "sort",
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
    default_renderer = jinja.FORM_RENDERER  # rendered on every list page: the fast widgets
    bound_field_class = jinja.RenderedOnce  # ... and each widget once per value

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "Until must not be before since.")
        return cleaned

    like_paper = None  # the paper ``like`` names, found once here

    def clean_like(self):
        slug = (self.cleaned_data.get("like") or "").strip()
        if slug:
            self.like_paper = Paper.objects.visible().with_slug(slug).first()
            if self.like_paper is None:
                raise forms.ValidationError("No paper with this id.")
        return slug


def _chosen(topics) -> Iterable[Topic]:
    """The topics a form's topic field cleaned to. None chosen is ``none()``, which iterating
    compiles into SQL before finding nothing to run (0.4 ms of every list page): not read."""
    if isinstance(topics, QuerySet) and topics.query.is_empty():
        return ()
    return topics or ()


def _newest_first(dated: tuple[int, dt.date | None]):
    """The sort key of an (id, published_on) in ``newest_first``'s order: by date, newest
    first, the undated last, then by id, highest first."""
    pk, published = dated
    return (published is None, -published.toordinal() if published else 0, -pk)


class WholeNumberFilter(django_filters.NumberFilter):
    """A whole number: "3.5" upvotes is a form error, not a silent rounding."""

    field_class = forms.IntegerField


class PaperFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        method="filter_query",
        label="Search",
        max_length=500,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": 'e.g. "linear attention"'}),
    )
    mode = django_filters.ChoiceFilter(
        choices=Mode.CHOICES, method="filter_later", label="Match", empty_label=None
    )
    like = django_filters.CharFilter(method="filter_later", label="More like", max_length=64)
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
    min_upvotes = WholeNumberFilter(
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

    def __init__(
        self, data=None, *args, today: dt.date | None = None, published=None, topic=None, **kwargs
    ):
        """``published``: (first, last) day the queryset is already limited to (a day, week
        or month page's), where the search should know it (``_tested_in_date_range``).
        ``topic``: the page's own topic (a topic's page), whose papers the filter keeps as it
        keeps a ``topic`` parameter's, of the date range asked for (``filter_topics``)."""
        super().__init__(data, *args, **kwargs)
        self.today = today or timezone.localdate()
        self.published = published
        self.topic = topic

    _form_class = None

    def get_form_class(self):
        """The form, built once per class: django-filter builds a new form class from fresh
        fields for every request (~30 fields' ``__init__`` and a metaclass run a page), though
        nothing of it differs between requests. Each form still gets its own copies of the
        fields (Django's ``base_fields``), so what a request does to its form stays there."""
        cls = type(self)
        if cls.__dict__.get("_form_class") is None:
            form_class = super().get_form_class()
            # The side column's fields belong to the search form at the top (HTML form=""),
            # so one submit keeps every parameter, without JavaScript.
            for field in form_class.base_fields.values():
                field.widget.attrs["form"] = "search"
            cls._form_class = form_class
        return cls._form_class

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
        return self.search_mode is not None and (
            self.search_mode != Mode.KEYWORD or bool(self._parsed.rank_query)
        )

    @cached_property
    def _parsed(self) -> search.ParsedQuery | None:
        return search.parse(self.query_text) if self.query_text else None

    @property
    def like_paper(self) -> Paper | None:
        return self.form.like_paper if self.cleaned else None

    @cached_property
    def search_mode(self) -> str | None:
        """How the search finds papers: None without q or like; ``like`` alone is by meaning."""
        if not self.query_text:
            return Mode.SEMANTIC if self.like_paper else None
        return self.cleaned.get("mode") or Mode.HYBRID

    def canonical_params(self) -> list[tuple[str, str]]:
        """The search as ordered (name, value) pairs without defaults: its bookmark."""
        pairs = []
        for name in PUBLIC_PARAMS:
            value = self.cleaned.get(name)
            if name == "sort":
                value = None if self.sort_order == self.default_sort else self.sort_order
            elif name == "mode":
                value = None if self.search_mode in (None, Mode.HYBRID) else value
                value = value if self.query_text else None  # like alone: by meaning
            elif name == "topic":
                pairs += [("topic", slug) for slug in sorted({t.slug for t in _chosen(value)})]
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
        return queryset  # the search is applied after every filter: see ``matches``

    def filter_later(self, queryset, name, value):
        return queryset  # mode and like shape the search itself: see ``matches``

    def filter_author(self, queryset, name, value):
        value = value.replace('"', " ").strip()
        return queryset.matching(f'author:"{value}"') if value else queryset

    def filter_topics(self, queryset, name, topics):
        for topic in _chosen(topics):
            queryset = self._in_topic(queryset, topic)
        return queryset

    def _in_topic(self, papers, topic):
        """``papers`` of ``topic``, its links read for the date range asked for (``in_topic``)."""
        return papers.in_topic(topic, published=self._published_range())

    def filter_period(self, queryset, name, value):
        days = PERIOD_DAYS[value]
        return queryset.published_between(self.today - dt.timedelta(days=days - 1), self.today)

    def filter_has_code(self, queryset, name, value):
        return queryset.exclude(code_url="") if value else queryset

    def filter_sort(self, queryset, name, value):
        return queryset  # ordering is applied in ``qs``, after every filter

    # --- the search: words, meaning or both (catalogue.hybrid) ------------------------------

    @cached_property
    def _filtered(self):
        """Every filter but the search itself."""
        papers = super().qs
        if self.topic is not None:
            papers = self._in_topic(papers, self.topic)
        return papers

    @cached_property
    def _keyword_condition(self):
        if self.search_mode in (None, Mode.SEMANTIC) or self._parsed.is_empty:
            return None
        return search.condition(self._parsed, unindexed=self._tested_in_date_range)

    @cached_property
    def _meaning(self) -> str | None:
        """What is searched for by meaning, as text (a cache key's part): the ``like`` paper,
        else the query's text for meaning; None when the search is by words alone."""
        if self.search_mode in (None, Mode.KEYWORD):
            return None
        if self.like_paper:
            return f"like:{self.like_paper.pk}"
        text = hybrid.query_text_for_meaning(self._parsed)
        return f"query:{text}" if text else None

    @cached_property
    def _vector(self):
        """The meaning searched for: the ``like`` paper's embedding, else the query's (None
        without either, or without the model). Computed only where a cache does not answer."""
        if self._meaning is None:
            return None
        if self.like_paper:
            return hybrid.paper_vector(self.like_paper)
        return hybrid.query_vector(hybrid.query_text_for_meaning(self._parsed))

    @cached_property
    def _nearest(self) -> list[tuple[int, float]]:
        """(id, similarity) of the papers nearest the searched meaning, nearest first; cached
        like summaries (``cached_neighbours``), so a search's next page or other order
        neither embeds the query nor scans the HNSW index again. Found beside the keyword
        matches where ``_start_meaning`` started the search, else here and now."""
        if self._meaning is None:
            return []
        if self._finding_meaning is None:
            return self._meaning_search()()[0]
        return self._finding_meaning.result()[0]

    _finding_meaning = None  # the search for ``_nearest``, once ``_start_meaning`` started it

    def _start_meaning(self, *, alone_of=None, facets: bool = False) -> None:
        """Starts the search for ``_nearest`` on another connection (``alongside``) while
        this one goes on. ``alone_of``: the words' condition, to find there too which of the
        neighbours lack the words, with their topic facets if ``facets``
        (``summary_and_results``)."""
        search = self._meaning_search(alone_of, facets)
        self._finding_meaning = alongside.start(self._filtered.db, search)

    def _meaning_search(self, alone_of=None, facets: bool = False):
        """A function giving (``_nearest``; (id, published_on) of the hybrid neighbours
        without the words ``alone_of``; their topic facets). What it needs of the request is
        decided here, on the request's thread (the catalogue's state is read once per request
        there, and the date range's size); the query's embedding and the statements are left
        to it."""
        papers = self._filtered
        if self.like_paper:
            papers = papers.exclude(pk=self.like_paper.pk)
        limit = settings.SEMANTIC_NEIGHBOURS
        key = neighbours_key(papers, self._meaning_key)
        exact, published = self._measures_each(limit), self._published_range()
        years = self._by_year(limit)

        def scan():
            vector = self._vector
            if vector is None:
                return []
            return hybrid.neighbours(
                papers, vector, limit, exact=exact, published=published, years=years
            )

        def search():
            nearest = cached_neighbours(key, scan)
            if alone_of is None:
                return nearest, [], []
            alone = hybrid.without_words([pk for pk, _ in hybrid.near_enough(nearest)], alone_of)
            shown = facets_of([pk for pk, _ in alone], limit=None) if facets and alone else []
            return nearest, alone, shown

        return search

    @property
    def _meaning_key(self) -> str:
        """What the nearest papers depend on beside the filters: what is searched for by
        meaning and how many are found."""
        return f"{self._meaning}\x00{settings.SEMANTIC_NEIGHBOURS}"

    def _measures_each(self, limit: int) -> bool:
        """Whether the nearest papers are found by measuring each paper of the date filters'
        range rather than through the HNSW index (``hybrid.exact_scan_pays``): a few months of
        a large catalogue."""
        published = self._published_range()
        if published is None or not is_large():
            return False  # (in a small catalogue either way is cheap)
        in_range = papers_published_between(*published)
        return hybrid.exact_scan_pays(in_range, catalogue_size(), limit)

    def _by_year(self, limit: int):
        """The date filters' range's parts, year by year, where finding its nearest papers
        in each costs less (``hybrid.by_year``); None where not, or the range is open at an
        end (the sample's months cannot tell where the catalogue's dates end)."""
        first, last = self._published_range() or (None, None)
        if first is None or last is None or first > last or not is_large():
            return None
        return hybrid.by_year(first, last, papers_published_between, catalogue_size(), limit)

    @cached_property
    def _neighbours(self) -> list[tuple[int, float]]:
        """The nearest papers that count as matches: in hybrid mode, beside the words, only
        papers near enough in meaning."""
        if self.search_mode == Mode.HYBRID:
            return hybrid.near_enough(self._nearest)
        return self._nearest

    @property
    def matches(self):
        """Every matching paper, unordered: what counts and facets summarise."""
        filtered = self._filtered.order_by()
        if self.search_mode is None:
            return filtered
        if self.search_mode == Mode.KEYWORD and self._keyword_condition is None:
            return filtered  # only stop words: nothing narrows the search
        ids = [pk for pk, _ in self._neighbours]
        return hybrid.matches_of(filtered, self._keyword_condition, ids)

    @property
    def _keyword_matches(self):
        """Every paper with the words (every filter applied), unordered."""
        return hybrid.matches_of(self._filtered.order_by(), self._keyword_condition, [])

    @property
    def _fuses_meaning(self) -> bool:
        """Whether the relevance ranking fuses keyword candidates and nearest papers by
        meaning (``ranking``)."""
        return (
            self.search_mode == Mode.HYBRID and self._has_rank_words and self._meaning is not None
        )

    @property
    def _has_rank_words(self) -> bool:
        """Whether the query has words to match and rank by."""
        return self._keyword_condition is not None and bool(self._parsed.rank_query)

    @property
    def _ranked_by_words_alone(self) -> bool:
        """Whether the relevance ranking ranks keyword candidates alone (``ranking``): in
        keyword mode, or where there is no meaning to search for beside the words."""
        return self.search_mode == Mode.KEYWORD or (self._has_rank_words and self._meaning is None)

    def summary_and_results(self, prepare=lambda papers: papers, *, topics: bool = True):
        """(the matches' ``Summary``: count, timeline, facets with ``topics``; what pages
        slice, ``results``). A hybrid search in relevance order has two retrievals that need
        each other only when fused: its nearest papers by meaning are found on another
        connection (``alongside``) while this one summarises and ranks its keyword matches;
        the papers found by meaning alone are then added to the summary (``Summary.plus``).
        Every other search summarises its matches, then slices them."""
        ranks = self._rank_columns if self.sort_order == Sort.RELEVANCE else None
        if not (self.sort_order == Sort.RELEVANCE and self._fuses_meaning):
            # Ranked by words alone (``ranks``), the matches are the keyword matches.
            text = self._keyword_text if ranks is not None else None
            ranked = ranks is not None
            known = self._summary_from_months(topics, ranked) if self._meaning is None else None
            summary = summarise(
                self.matches, topics=topics, ranks=ranks, key_text=text, known=known
            )
            return summary, self.results(prepare, summary=summary)
        self._start_meaning(alone_of=self._keyword_condition, facets=topics)
        keyword = summarise(
            self._keyword_matches,
            topics=topics,
            ranks=ranks,
            key_text=self._keyword_text,
            known=self._summary_from_months(topics, ranks is not None),
        )
        results = self.results(prepare, summary=keyword)
        _, alone, facets = self._finding_meaning.result()
        return keyword.plus(alone, facets), results

    @property
    def _ranks_words(self) -> bool:
        """Whether the relevance ranking ranks keyword matches (``_cached_ranking``: alone,
        or fused with the nearest papers by meaning), not papers by meaning alone."""
        if self._keyword_condition is None:
            return False
        return self._ranked_by_words_alone or self._fuses_meaning

    @property
    def _rank_columns(self) -> RankColumns | None:
        """What the summary's pass over every match reads for the keyword ranking
        (``summarise``, ``ranked_from_summary``); None where nothing is ranked by words.
        Always asked for: that pass runs only where the sample finds the matches few
        (~5,000 at most), where ranking them all costs no more than the ranking's own
        statements."""
        if not self._ranks_words:
            return None
        title_query = self._parsed.title_query
        titled = search.in_title_by_weight(title_query) if title_query else Value(False)
        return RankColumns(rank=self._searched.query.annotations["rank"], titled=titled)

    @cached_property
    def _searched(self):
        """The keyword matches with their ``rank`` (every filter applied)."""
        return self._filtered.search(self.query_text, unindexed=self._tested_in_date_range)

    @cached_property
    def _tested_in_date_range(self) -> bool:
        """Whether the words are tested on each paper of the date filters' range rather than
        found from the search vector's index: where the range's papers (``summary``'s
        months) cost less to test than the words' index entries to read
        (``summary.tests_range_pays``), e.g. a word in a quarter of the papers searched in a
        few months."""
        published = self._published_range()
        if self._parsed is None or published is None or not is_large():
            return False  # (in a small catalogue either way is cheap)
        return tests_range_pays(papers_published_between(*published), self._index_entries)

    @cached_property
    def _index_entries(self) -> float:
        """About how many entries of the search vector's index the words read: every paper
        holding them, whatever the other filters (``search.index_entries``)."""
        return search.index_entries(self._parsed)

    def _published_range(self) -> tuple[dt.date | None, dt.date | None] | None:
        """(first, last) day the date filters (and the page's own range, ``published``)
        allow (None: no bound); None without them."""
        since, until = self.cleaned.get("since"), self.cleaned.get("until")
        period = self.cleaned.get("period")
        bounds = [self.published] if self.published else []
        if period:
            bounds.append((self.today - dt.timedelta(days=PERIOD_DAYS[period] - 1), self.today))
        for first, last in bounds:
            since, until = max(since or first, first), min(until or last, last)
        return (since, until) if since or until else None

    def _keyword_ranked(self, matches: int | None, reach: Reach | None = None):
        """(the keyword candidates most relevant first, a queryset with ``rank``; the
        candidate pools it ranks, ``PaperQuerySet.relevance_pools``), built once."""
        searched = self._searched
        in_scan = ranks_in_scan(matches, reach)
        pools = searched.relevance_pools(
            settings.SEARCH_RANK_CANDIDATES,
            self._parsed.title_query,
            rank_in_scan=in_scan,
            titles_among=self._titles_among,
        )
        return searched.rank_pools(pools, rank_in_scan=in_scan), pools

    def _reach(self, summary: Summary) -> Reach | None:
        """Where the ranking's newest candidates lie (``Summary.reach``, from ``until`` back),
        for a query of words; a phrase's matches cost more to read, and keep the even-spread
        rule for walking the date index (``summary._walk_pays``)."""
        if self._parsed is None or self._tested_by_pattern:
            return None
        reach = summary.reach(settings.SEARCH_RANK_CANDIDATES, self.cleaned.get("until"))
        if reach is None or self._tested_in_date_range:
            return reach  # (tested on each paper of the range: the words' index is not read)
        return dataclasses.replace(reach, entries=int(self._index_entries))

    @cached_property
    def _titles_among(self):
        """What the title pool looks in (``relevance_pools``): where a title with the query is
        a match, every filter but the words', with ``rank``; else the matches."""
        if not search.titles_imply_match(self._parsed):
            return None
        return self._filtered.annotate(rank=self._searched.query.annotations["rank"])

    @cached_property
    def _keyword_text(self) -> str:
        """``query_text`` of the keyword matches: what names them in the summary's cache key
        and, with the terms ranked by, the relevance ranking in its own
        (``summary.ranking_text``)."""
        return query_text(self._keyword_matches)

    def _cached_ranking(
        self, matches: int | None, build, extra=None, match_ids=None, reach=None, match_ranks=None
    ):
        key_text = ranking_text(self._keyword_text, self._parsed)
        known = None
        if match_ids is not None and match_ranks is not None:
            # The summary ranked every match as it read them: nothing is left to read.
            known = functools.partial(
                ranked_from_summary,
                match_ids,
                match_ranks,
                settings.SEARCH_RANK_CANDIDATES,
                titles=bool(self._parsed.title_query),
            )
        elif match_ids == []:
            known = list  # nothing matched: nothing to rank (title matches are matches too)
        elif (words := self._common_word_months) is not None:
            known = functools.partial(self._ranked_by_months, words, matches, reach)
        elif (words := self._plain_words_months) is not None:
            known = functools.partial(self._ranked_from_newest_with_all, words, matches, reach)
        if known is not None:  # the candidates' statements are neither run nor keyed
            return cached_ranking(None, matches, build, extra=extra, known=known, key_text=key_text)
        ranked, pools = self._keyword_ranked(matches, reach)
        return cached_ranking(
            ranked, matches, build, extra=extra, pools=pools, reach=reach, key_text=key_text
        )

    @cached_property
    def _common_word_months(self) -> tuple[str, dt.date | None, dt.date | None] | None:
        """(lexeme, first day, last day) where the ranking's rows can be read from a common
        word's month rows (``catalogue.wordmonths``): one plain word, counted common, and no
        filter but dates; else None."""
        if self._keyword_condition is None:
            return None  # no words searched for
        lexeme = wordmonths.single_lexeme(self._parsed)
        if lexeme is None or not wordmonths.is_common(lexeme):
            return None
        bounds = wordmonths.date_bounds(self._filtered)
        return None if bounds is None else (lexeme, *bounds)

    @cached_property
    def _plain_words_months(self) -> tuple[tuple[str, ...], dt.date | None, dt.date | None] | None:
        """(lexemes, first day, last day) where the ranking's newest candidates may be read
        from the words' month rows (``wordmonths.newest_with_all``): plain words, every one
        required, and no filter but dates; else None. (Whether each word is counted common is
        asked as they are read.)"""
        if self._keyword_condition is None:
            return None
        lexemes = wordmonths.plain_lexemes(self._parsed)
        if lexemes is None:
            return None
        bounds = wordmonths.date_bounds(self._filtered)
        return None if bounds is None else (lexemes, *bounds)

    def _ranked_from_newest_with_all(self, words, matches: int | None, reach: Reach | None):
        """The ranking's rows, its newest candidates read from the words' month rows and
        ranked by id (the words' nearness and the phrase's bonus are not in the rows: each
        candidate's vector is read), its title pool as ever; read from the papers where the
        rows may not be read."""
        candidates = settings.SEARCH_RANK_CANDIDATES
        since = reach.since if reach is not None else None
        # Where the summary does not tell where the newest lie, every month of the range
        # would be read: for common words, more than the papers' way reads.
        ids = None if since is None else wordmonths.newest_with_all(*words, candidates, since=since)
        if ids is None:
            ranked, pools = self._keyword_ranked(matches, reach)
            return ranked_rows(ranked, matches, pools, reach)
        if not ids:
            return []
        rank = self._searched.query.annotations["rank"]
        newest = self._filtered.filter(of_ids(ids)).annotate(rank=rank).values("pk", "rank")
        titled = []
        if len(ids) >= candidates and self._parsed.title_query:
            # Fewer: they are every match, and every title match among them.
            _, *titled = self._searched.relevance_pools(
                candidates,
                self._parsed.title_query,
                rank_in_scan=True,
                titles_among=self._titles_among,
            )
        return ranked_known_newest(newest, titled, matches, reach)

    def _summary_from_months(self, topics: bool, ranked: bool):
        """A function giving the keyword matches' exact summary from a common word's month
        rows (``wordmonths.every_month``), where they hold few enough matches to count them
        all, as the summary's pass over every match would, with each match's rank where
        ``ranked`` (None where it cannot: the summary is made the usual way); None where the
        search cannot be read from them."""
        words = self._common_word_months
        if words is None:
            return None
        # As many as the sample's pass counts exactly, at most (``summary._summary``).
        limit = settings.SUMMARY_MIN_SAMPLE_HITS * SAMPLE_EVERY

        def known():
            months = wordmonths.every_month(*words, limit, ranked=ranked)
            return None if months is None else exact_from_ids(months, topics)

        return known

    def _ranked_by_months(self, words, matches: int | None, reach: Reach | None) -> list[tuple]:
        """The ranking's rows from the word's month rows; read from the papers where those
        may not be read (a month of the range changed since it was built)."""
        rows = wordmonths.ranked_rows(
            *words, settings.SEARCH_RANK_CANDIDATES, titles=bool(self._parsed.title_query)
        )
        if rows is not None:
            return rows
        ranked, pools = self._keyword_ranked(matches, reach)
        return ranked_rows(ranked, matches, pools, reach)

    @property
    def _tested_by_pattern(self) -> bool:
        """Whether the query has a phrase, tested by its words' positions and a pattern over
        title and abstract (~12 µs a paper), where a word's test is a lexeme lookup (~1 µs)."""
        return any(matcher.pattern for matcher in self._parsed.matchers.values())

    def ranking(
        self, matches: int | None = None, match_ids=None, reach=None, match_ranks=None
    ) -> hybrid.Ranking:
        """The relevance ranking's ids and each one's reasons (cached, see summary).
        ``match_ids``: every match's id, newest first, when the summary read them; ``reach``:
        where the newest candidates lie in the date index (``Summary.reach``);
        ``match_ranks``: each match's rank and title flag, where the summary read them too
        (``ranked_from_summary``: no statement)."""
        if self._ranked_by_words_alone:
            return self._cached_ranking(
                matches,
                hybrid.keyword_ranking,
                match_ids=match_ids,
                reach=reach,
                match_ranks=match_ranks,
            )
        if not self._fuses_meaning:
            return hybrid.semantic_ranking(self._neighbours)

        def fuse(rows):
            # Similarities of the best keyword candidates only, by primary key: a join of
            # every candidate to its embedding reads the whole embeddings table (a hash join).
            # Measured before the neighbours are awaited: the search for them embeds the
            # query first (``_meaning_search``), then scans, and this statement runs on this
            # connection meanwhile. (No model, or no paper embedded yet: nothing to measure.)
            vector = self._vector if any_embedding() else None
            best = [pk for pk, _ in rows[: hybrid.FUSE_DEPTH]] if vector is not None else []
            similarity = hybrid.similarities(best, vector) if best else {}
            return hybrid.fuse(rows, self._neighbours, similarity)

        # Keyed by what the neighbours depend on, not by them: the keyword candidates are read
        # while the neighbours are found (``summary_and_results``), awaited only to fuse.
        return self._cached_ranking(
            matches,
            fuse,
            extra=self._meaning_key,
            match_ids=match_ids,
            reach=reach,
            match_ranks=match_ranks,
        )

    def results(self, prepare=lambda papers: papers, *, summary: Summary | None = None):
        """What pages slice: ``qs``, except that a relevance ranking comes from the cache
        (``CachedRanking``). ``prepare`` adds what the caller needs to the papers it loads
        (prefetches); ``summary``, of ``matches``, decides how the newest candidates of a
        ranking, or a sorted page's papers, are found (its count) or gives them (its ids)."""
        if self.sort_order == Sort.RELEVANCE:
            if summary is None:
                ranking = self.ranking()
            else:
                ranking = self.ranking(
                    summary.count, summary.match_ids, self._reach(summary), summary.match_ranks
                )
            return CachedRanking(ranking, prepare(Paper.objects.all()))
        if summary is None:
            return PagedByIds(self.qs, prepare(Paper.objects.all()))
        by_date = self.sort_order in (Sort.NEWEST, Sort.OLDEST)
        ids = summary.ids_by_date(self.sort_order == Sort.NEWEST) if by_date else None
        return PagedByIds(
            self.qs, prepare(Paper.objects.all()), summary.count, ids=ids, among=summary.match_ids
        )

    def newest(self, limit: int, prepare=lambda papers: papers) -> list[Paper]:
        """The ``limit`` newest matches, newest first (``newest_first``): a feed's entries.
        A hybrid search's neighbours by meaning are found on another connection
        (``alongside``) while this one reads the newest keyword matches; the newest of both
        are then taken by date, and those found by meaning alone loaded by id."""
        if not self._finds_meaning_beside_words:
            if self.search_mode == Mode.SEMANTIC or self._keyword_condition is None:
                return list(prepare(self.matches.newest_first())[:limit])
            return self._newest_by_words(limit, prepare)  # the matches are the words'
        self._start_meaning(alone_of=self._keyword_condition)
        by_words = self._newest_by_words(limit, prepare)
        _, alone, _ = self._finding_meaning.result()
        dated = [(paper.pk, paper.published_on) for paper in by_words] + alone
        newest_ids = [pk for pk, _ in sorted(dated, key=_newest_first)[:limit]]
        loaded = {paper.pk: paper for paper in by_words}
        by_meaning = [pk for pk in newest_ids if pk not in loaded]
        if by_meaning:
            found = prepare(self._filtered.filter(pk__in=by_meaning))
            loaded |= {paper.pk: paper for paper in found}
        return [loaded[pk] for pk in newest_ids if pk in loaded]

    def _newest_by_words(self, limit: int, prepare) -> list[Paper]:
        """The ``limit`` newest papers with the words, newest first: a common word's read
        from its month rows (``wordmonths.newest_ids``) and loaded by id, else found."""
        words = self._common_word_months
        ids = wordmonths.newest_ids(*words, limit) if words is not None else None
        if ids is None:
            return list(prepare(self._keyword_matches.newest_first())[:limit])
        loaded = {paper.pk: paper for paper in prepare(self._filtered.filter(pk__in=ids))}
        return [loaded[pk] for pk in ids if pk in loaded]

    @property
    def _finds_meaning_beside_words(self) -> bool:
        """Whether the matches are the keyword matches and the neighbours by meaning near
        enough (``matches``), both searched for."""
        return (
            self.search_mode == Mode.HYBRID
            and self._keyword_condition is not None
            and self._meaning is not None
        )

    @property
    def reachable(self) -> int:
        """How many results pages can reach in this order (see ``qs``)."""
        if self.sort_order == Sort.RELEVANCE:
            # The newest matches, a tenth as many title matches, the neighbours by meaning.
            candidates = settings.SEARCH_RANK_CANDIDATES
            return candidates + max(candidates // 10, 1) + settings.SEMANTIC_NEIGHBOURS
        return settings.LIST_MAX_RESULTS

    @property
    def qs(self):
        """The matches in the chosen order, as a queryset (feeds and digests slice it)."""
        if self.sort_order == Sort.RELEVANCE:
            return Paper.objects.in_order(self.ranking().ids)
        matches = self.matches
        return {
            Sort.NEWEST: matches.newest_first,
            Sort.OLDEST: matches.oldest_first,
            Sort.UPVOTES: matches.most_upvoted,
            Sort.TRENDING: matches.trending,
        }[self.sort_order]()
