"""The URLs the load test and the sweep request.

The load test's stream is endless and never repeats a URL: a repeated one would be answered by
the page cache and measure Redis, not the site. Each URL is a new search (its own words, dates
or sort), drawn from the corpus's vocabulary, in a fixed mix of page classes.

The sweep is what a crawler does: deep pages of broad searches and of the unfiltered list,
ranges spanning every date in every sort, and every day, week and month page in turn.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from urllib.parse import quote, urlencode

from django.conf import settings

from catalogue.views import PAGE_SIZE
from tests.bench.loadtest.vocabulary import Vocabulary

SORTS = ["newest", "oldest", "upvotes", "trending"]
TOPICS = ["linear-attention", "diffusion", "reinforcement-learning"]  # benchmark.TOPICS


class Mix:
    """Random URLs of each page class; ``rng`` makes a run reproducible from its seed."""

    def __init__(self, vocabulary: Vocabulary, rng: random.Random):
        self.v, self.rng = vocabulary, rng

    # Page class -> (weight, method). Weights: searches dominate, as on a catalogue.
    def classes(self) -> dict[str, tuple[int, callable]]:
        return {
            "rare word": (10, self.rare_word),
            "common word": (10, self.common_word),
            "two words": (10, self.two_words),
            "phrase": (8, self.phrase),
            "author": (8, self.author),
            "topic": (6, self.topic),
            "date range": (8, self.date_range),
            "sorted browse": (8, self.sorted_browse),
            "API": (10, self.api),
            "paper page": (10, self.paper_page),
            "feed": (4, self.feed),
            "day/week/month": (8, self.calendar_page),
        }

    def rare_word(self) -> str:
        return _list({"q": self._pick(self.v.rare), **self._maybe_sort()})

    def common_word(self) -> str:
        # A common word alone is one search: a date range makes each a new one.
        return _list({"q": self._pick(self.v.common), **self._range()})

    def two_words(self) -> str:
        return _list({"q": f"{self._pick(self.v.middling)} {self._pick(self.v.common)}"})

    def phrase(self) -> str:
        return _list({"q": f'"{self._pick(self.v.phrases)}"', **self._maybe_sort()})

    def author(self) -> str:
        return _list({"author": self._pick(self.v.surnames), **self._maybe_sort()})

    def topic(self) -> str:
        return _list({"topic": self._pick(TOPICS), **self._range(), **self._maybe_sort()})

    def date_range(self) -> str:
        params = {**self._range(), "sort": self._pick(SORTS)}
        if self.rng.random() < 0.3:
            params["min_upvotes"] = self.rng.randint(1, 20)
        if self.rng.random() < 0.3:
            params["has_code"] = 1
        return _list(params)

    def sorted_browse(self) -> str:
        """A page of the whole catalogue in one order, as readers and crawlers page through."""
        reachable = min(self.v.papers, settings.LIST_MAX_RESULTS)
        last_page = max(reachable // PAGE_SIZE, 1)
        return _list({"sort": self._pick(SORTS), "page": self.rng.randint(1, last_page)})

    def api(self) -> str:
        params = {"q": self._pick(self.v.middling), "page_size": self.rng.randint(10, 100)}
        return "/api/papers?" + urlencode(params)

    def paper_page(self) -> str:
        return f"/papers/{quote(self._pick(self.v.paper_ids))}/"

    def feed(self) -> str:
        return "/feed/?" + urlencode({"q": self._pick(self.v.middling), **self._range()})

    def calendar_page(self) -> str:
        day = self._day()
        kind = self.rng.choice(["daily", "week", "month"])
        if kind == "daily":
            path = f"/papers/daily/{day.isoformat()}/"
        elif kind == "week":
            year, week, _ = day.isocalendar()
            path = f"/papers/week/{year}-W{week:02d}/"
        else:
            path = f"/papers/month/{day:%Y-%m}/"
        return path + self._pick(["", "?sort=newest", "?sort=trending", "?has_code=1"])

    def _pick(self, items: list):
        return items[self.rng.randrange(len(items))]

    def _maybe_sort(self) -> dict:
        return {"sort": self._pick(SORTS)} if self.rng.random() < 0.3 else {}

    def _day(self) -> dt.date:
        start, end = self.v.first_day, self.v.last_day
        return start + dt.timedelta(days=self.rng.randrange((end - start).days + 1))

    def _range(self) -> dict:
        first, second = sorted([self._day(), self._day()])
        return {"since": first.isoformat(), "until": second.isoformat()}


def _list(params: dict) -> str:
    return "/?" + urlencode(params)


def distinct_urls(vocabulary: Vocabulary, seed: int) -> Iterator[tuple[str, str]]:
    """(page class, URL) for ever, in the mix's proportions, never the same URL twice."""
    rng = random.Random(seed)
    mix = Mix(vocabulary, rng)
    classes = mix.classes()
    names = list(classes)
    weights = [classes[name][0] for name in names]
    seen: set[str] = set()
    while names:
        name = rng.choices(names, weights)[0]
        url = _new_url(classes[name][1], seen)
        if url is None:  # this class has no new URL left (a small corpus's paper pages)
            weights.pop(names.index(name))
            names.remove(name)
            continue
        seen.add(url)
        yield name, url


def urls_per_class(vocabulary: Vocabulary, seed: int, count: int) -> dict[str, list[str]]:
    """Up to ``count`` distinct URLs of each page class (fewer when a small corpus runs out),
    for measuring classes apart (the profiler, the site benchmark)."""
    mix = Mix(vocabulary, random.Random(seed))
    urls = {}
    for kind, (_, make) in mix.classes().items():
        distinct = dict.fromkeys(make() for _ in range(count * 20))  # first seen first
        urls[kind] = list(distinct)[:count]
    return urls


def _new_url(make, seen: set[str], attempts: int = 200) -> str | None:
    for _ in range(attempts):
        url = make()
        if url not in seen:
            return url
    return None


# --- the crawler sweep ------------------------------------------------------------------------

DEEP_PAGES = [1, 10, 100, 400, 401, 4_000, 40_000]
EVERY_DATE = {"since": "1900-01-01", "until": "2100-12-31"}


def sweep_urls(
    vocabulary: Vocabulary, days: int, weeks: int, months: int | None = None
) -> list[tuple[str, str]]:
    """(kind, URL) of a crawler's visit: deep pages, long ranges, calendar pages in turn."""
    broad = vocabulary.common[0] if vocabulary.common else "learning"
    urls = []
    for page in DEEP_PAGES:
        urls.append(("deep page, all papers", _list({"page": page})))
        urls.append(("deep page, all papers by upvotes", _list({"sort": "upvotes", "page": page})))
        urls.append(("deep page, broad search", _list({"q": broad, "page": page})))
        urls.append(("deep API page", "/api/papers?" + urlencode({"page": page})))
        api_search = {"q": broad, "page": page, "page_size": 100}
        urls.append(("deep API page, broad search", "/api/papers?" + urlencode(api_search)))
    for sort in ["relevance", *SORTS]:
        search = {"q": broad} if sort == "relevance" else {}
        urls.append(("every date, each sort", _list({**search, **EVERY_DATE, "sort": sort})))
        api = {**search, **EVERY_DATE, "sort": sort, "page_size": 100}
        urls.append(("every date, each sort, API", "/api/papers?" + urlencode(api)))
    urls.append(("every date, feed", "/feed/?" + urlencode(EVERY_DATE)))
    urls += _calendar(vocabulary, days, weeks, months)
    return urls


def _calendar(
    vocabulary: Vocabulary, days: int, weeks: int, months: int | None
) -> list[tuple[str, str]]:
    """The last ``months`` month pages (None: every month of the corpus), ``weeks`` week pages
    and ``days`` day pages."""
    first, last = vocabulary.first_day, vocabulary.last_day
    every_month = [
        ("month pages", f"/papers/month/{year}-{month:02d}/")
        for year in range(first.year, last.year + 1)
        for month in range(1, 13)
        if (first.year, first.month) <= (year, month) <= (last.year, last.month)
    ]
    urls = every_month if months is None else every_month[len(every_month) - months :]
    for back in range(weeks):
        year, week, _ = (last - dt.timedelta(weeks=back)).isocalendar()
        urls.append(("week pages", f"/papers/week/{year}-W{week:02d}/"))
    for back in range(days):
        urls.append(("day pages", f"/papers/daily/{(last - dt.timedelta(days=back)).isoformat()}/"))
    return urls
