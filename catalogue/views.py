"""Server-rendered pages: the filtered list, topics, day/week/month pages and the paper page."""

from __future__ import annotations

import calendar
import datetime as dt
from urllib.parse import urlencode

from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from catalogue import charts, headlines, merging, search
from catalogue.converters import iso_week, month_text
from catalogue.filters import TRENDING_EXPLAINED, PaperFilter, Sort
from catalogue.models import SHOWN_REASONS, Paper, Topic
from catalogue.pagecache import cached_for_anonymous_readers
from catalogue.summary import KnownCountPaginator
from catalogue.summary import reachable as reachable_count

PAGE_SIZE = 25


@cached_for_anonymous_readers
def paper_list(request):
    """The catalogue, filtered by the GET parameters of ``PaperFilter``."""
    return _listing(request, Paper.objects.visible(), {"heading": "Papers"})


def topic_list(request):
    topics = Topic.objects.annotate(
        paper_count=Count("papertopic", filter=Q(papertopic__reason__in=SHOWN_REASONS))
    )
    return render(request, "catalogue/topic_list.html", {"topics": topics})


@cached_for_anonymous_readers
def topic_detail(request, slug: str):
    topic = get_object_or_404(Topic, slug=slug)
    context = {"heading": topic.name, "topic": topic}
    return _listing(request, Paper.objects.visible(), context, topic=topic)


# --- day, week and month pages, like Hugging Face's --------------------------------------


@cached_for_anonymous_readers
def day_page(request, day: dt.date):
    nav = _nav("day-page", _shifted(day, -1), _shifted(day, 1), dt.date.isoformat)
    return _window(request, day, day, f"Papers of {day:%A, %B %-d, %Y}", nav)


@cached_for_anonymous_readers
def week_page(request, week: dt.date):
    """``week`` is its Monday (catalogue.converters)."""
    nav = _nav("week-page", _shifted(week, -7), _shifted(week, 7), iso_week)
    end = _shifted(week, 6) or dt.date.max  # the calendar's last day, 9999-12-31, is a Friday
    return _window(request, week, end, f"Papers of week {iso_week(week)}", nav)


@cached_for_anonymous_readers
def month_page(request, month: dt.date):
    """``month`` is its first day (catalogue.converters)."""
    end = month.replace(day=calendar.monthrange(month.year, month.month)[1])
    previous = _shifted(month, -1)
    following = _shifted(end, 1)
    nav = _nav("month-page", previous and previous.replace(day=1), following, month_text)
    return _window(request, month, end, f"Papers of {month:%B %Y}", nav)


def _shifted(day: dt.date, days: int) -> dt.date | None:
    """``day`` moved by ``days``; None beyond the calendar's first or last day."""
    try:
        return day + dt.timedelta(days=days)
    except OverflowError:
        return None


def _nav(url_name: str, previous: dt.date | None, following: dt.date | None, fmt) -> dict:
    """Links to the neighbouring periods, none beyond either end of the calendar."""

    def link(day):
        return reverse(url_name, args=[fmt(day)]) if day else None

    return {
        "previous": link(previous),
        "next": link(following),
        "previous_label": fmt(previous) if previous else None,
        "next_label": fmt(following) if following else None,
    }


def _window(request, start: dt.date, end: dt.date, heading: str, nav: dict):
    """Papers published in [start, end], most upvoted first unless the reader sorts."""
    data = request.GET.copy()
    data.setdefault("sort", Sort.UPVOTES)
    papers = Paper.objects.visible().published_between(start, end)
    context = {"heading": heading, "nav": nav}
    return _listing(request, papers, context, data=data, published=(start, end))


# --- the shared list rendering -----------------------------------------------------------


def _listing(request, papers, context: dict, data=None, published=None, topic=None):
    """``published``: (first, last) day ``papers`` are limited to; ``topic``: the page's own
    topic, whose papers the filter keeps (``PaperFilter``)."""
    paper_filter = PaperFilter(
        request.GET if data is None else data, queryset=papers, published=published, topic=topic
    )
    if not paper_filter.is_valid():
        context = {**context, "filter": paper_filter, "page": None}
        return render(request, "catalogue/paper_list.html", context, status=400)
    # Count, timeline and facets: one summary of the matches (estimated for huge sets).
    query = paper_filter.query_text
    summary, results = paper_filter.summary_and_results(lambda papers: _cards(papers, query))
    reachable = reachable_count(results, summary.count, paper_filter.reachable)
    paginator = KnownCountPaginator(results, PAGE_SIZE, count=reachable)
    if paginator.past_the_end(request.GET.get("page")):
        return _no_such_page(request, paper_filter, paginator, context)
    page = paginator.get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)  # read once: the steps below add to the cards
    if query:
        _highlight(page)
    _attach_topics(page)
    dated = {month: n for month, n in summary.per_month.items() if month is not None}
    timeline = charts.timeline(dated)
    context = {
        **context,
        "summary": summary,
        "truncated": _truncation_note(summary, reachable, paper_filter),
        "timeline": timeline,
        "timeline_rects": charts.timeline_rects(timeline),
        "timeline_end": timeline[-1].month if timeline else None,
        "filter": paper_filter,
        "page": page,
        "query": query,
        "canonical_query": paper_filter.canonical_query(),
        "feed_url": _with_query(reverse("feed"), paper_filter.canonical_query()),
        "active_filters": _active_filters(paper_filter),
        "topic_facets": _topic_facets(summary, paper_filter),
        "year_facets": _year_facets(dated, paper_filter),
        "trending_explained": TRENDING_EXPLAINED
        if paper_filter.sort_order == Sort.TRENDING
        else "",
    }
    return render(request, "catalogue/paper_list.html", context)


def _no_such_page(request, paper_filter: PaperFilter, paginator, context: dict):
    """A 400, as for any bad parameter, that says where pages stop and how to see the rest."""
    paper_filter.form.add_error(None, paginator.past_the_end_message())
    context = {**context, "filter": paper_filter, "page": None}
    return render(request, "catalogue/paper_list.html", context, status=400)


def _with_query(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


def _cards(papers, query: str):
    """The page's papers as cards show them, in one statement: their topics and, for a
    search, the words to mark (``search.highlight``: computed for the page's rows only,
    after the LIMIT)."""
    papers = papers.for_cards()
    return search.highlight(papers, query) if query else papers


def _highlight(page) -> None:
    """The page's headlines as safe HTML, the words ``_cards`` found marked: the title, and an
    excerpt of the abstract around them (None where nothing is marked: the card shows the
    title and the abstract's first words)."""
    for paper in page.object_list:  # no words when the query has no positive ones
        words = getattr(paper, "marked_words", None) or ()
        paper.title_html = headlines.marked_title(paper.title, words)
        paper.excerpt_html = headlines.excerpt(paper.abstract, words)


def _attach_topics(page) -> None:
    """``paper.url`` and ``paper.topic_chips`` (each with its ``url``) for every card on the
    page, from its ``topic_list`` (``_cards``): the paths made for the page at once
    (``catalogue.paths``), not reversed for each link."""
    paper_path, topic_path = Paper.paths(), Topic.paths()
    for paper in page.object_list:
        paper.url = paper_path(paper.slug)
        paper.topic_chips = [_chip(t["slug"], t["name"], topic_path) for t in paper.topic_list]


def _chip(slug: str, name: str, topic_path) -> Topic:
    chip = Topic(slug=slug, name=name)
    chip.url = topic_path(slug)
    return chip


_FILTER_LABELS = {
    "q": lambda v: v if '"' in v else f"“{v}”",
    "mode": lambda v: {"keyword": "words only", "semantic": "by meaning"}.get(v, v),
    "like": lambda v: f"like {v}",
    "author": lambda v: f"by {v}",
    "since": lambda v: f"since {v}",
    "until": lambda v: f"until {v}",
    "period": lambda v: f"past {v}",
    "min_upvotes": lambda v: f"≥ {v} upvotes",
    "has_code": lambda v: "with code",
    "topic": lambda v: f"topic {v}",
}


def _active_filters(paper_filter: PaperFilter) -> list[dict]:
    """Each active filter with a link to the same search without it."""
    pairs = paper_filter.canonical_params()
    return [
        {"label": _FILTER_LABELS[name](value), "remove": _without(pairs, i)}
        for i, (name, value) in enumerate(pairs)
        if name in _FILTER_LABELS
    ]


def _without(pairs: list[tuple[str, str]], index: int) -> str:
    return "?" + urlencode(pairs[:index] + pairs[index + 1 :])


def _truncation_note(summary, reachable: int, paper_filter: PaperFilter) -> str:
    """Why the pages stop before the last match, when they do."""
    if summary.count <= reachable:
        return ""
    if paper_filter.sort_order == Sort.RELEVANCE:
        return (
            f"Ranked by relevance among the {reachable:,} newest matches. "
            "Narrow the search by date to rank older papers."
        )
    return f"Pages show the first {reachable:,} papers: narrow the search to see the rest."


def _topic_facets(summary, paper_filter: PaperFilter) -> list[dict]:
    """Topics of the matches with counts; each links to the search narrowed to it."""
    pairs = paper_filter.canonical_params()
    href = _hrefs(pairs, add=True)
    return [{**t, "href": href(topic=t["slug"])} for t in summary.topics]


def _year_facets(per_month: dict, paper_filter: PaperFilter) -> list[dict]:
    """Matches per year (newest first), summed from the monthly counts."""
    per_year: dict[int, int] = {}
    for month, n in per_month.items():
        per_year[month.year] = per_year.get(month.year, 0) + n
    pairs = [(k, v) for k, v in paper_filter.canonical_params() if k != "period"]
    href = _hrefs(pairs, changed=("since", "until"))
    return [
        {"year": year, "n": n, "href": href(since=f"{year}-01-01", until=f"{year}-12-31")}
        for year, n in sorted(per_year.items(), reverse=True)
    ]


def _hrefs(pairs: list[tuple[str, str]], changed: tuple[str, ...] = (), add: bool = False):
    """A maker of list URLs: ``pairs`` with the parameters ``changed`` set to what each call
    gives (or, with ``add``, its pairs appended). What every URL keeps is encoded once: a
    facet column's twenty years or twelve topics each encoded the whole search (~25 µs)."""
    kept = pairs if add else [(k, v) for k, v in pairs if k not in changed]
    encoded_kept = urlencode(kept)

    def href(**changes: str) -> str:
        new = urlencode([(k, v) for k, v in changes.items() if (k, v) not in kept])
        return "?" + "&".join(part for part in (encoded_kept, new) if part)

    return href


# --- the paper page ----------------------------------------------------------------------


@cached_for_anonymous_readers  # a paper shared or linked is read by many, and rarely changes
def paper_detail(request, slug: str):
    """A paper by arXiv id (``2401.01234``, ``hep-th/9901001``) or catalogue number."""
    # The embedding comes with the paper (one join): its vector finds the similar papers.
    papers = Paper.objects.visible()
    try:
        paper = get_object_or_404(papers.with_slug(slug))
    except Http404:
        # A paper merged into another one: its old URL now points there for good.
        canonical = merging.canonical_paper(slug, papers)
        if canonical is None:
            raise
        return redirect(canonical, permanent=True)
    history = list(
        paper.snapshots.exclude(upvotes=None)
        .order_by("observed_on")
        .values_list("observed_on", "upvotes")
    )
    context = {
        "paper": paper,
        "history": history,
        "sparkline": charts.sparkline([upvotes for _, upvotes in history]),
        "topics": Topic.objects.filter(
            papertopic__paper=paper, papertopic__reason__in=SHOWN_REASONS
        ),
        "sightings": paper.sightings.order_by("first_seen_at"),
        **_similar_papers(paper),
    }
    return render(request, "catalogue/paper_detail.html", context)


SIMILAR_COUNT = 5


def _similar_papers(paper: Paper) -> dict:
    """Papers nearest by meaning; by shared title words while the paper has no embedding
    (it was just ingested: the worker computes it in the background)."""
    has_embedding = hasattr(paper, "embedding")  # loaded with the paper: no query
    similar = []
    if has_embedding:
        similar = Paper.objects.visible().similar_by_meaning(paper, SIMILAR_COUNT)
    by_meaning = bool(similar)
    if not by_meaning:
        similar = list(Paper.objects.visible().similar_to(paper, SIMILAR_COUNT))
    return {
        "similar": similar,
        "similar_by_meaning": by_meaning,
        "has_embedding": has_embedding,
        "more_like_this": _with_query(reverse("paper-list"), urlencode({"like": paper.slug})),
    }
