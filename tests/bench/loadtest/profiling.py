"""Where an uncached page's time goes (``python -m tests.bench profile_pages``).

Each request runs in-process through Django's test client while a ``PhaseClock`` times its
phases: every SQL statement (a ``connection.execute_wrapper``), template rendering (the
Django and Jinja2 backends' ``Template.render``: the reader pages are Jinja2, their form
widgets Django templates; nested renders counted once) and a few named steps of
the list view (summary, highlights, topic chips). The clock keeps both a phase's inclusive
time (its wall time, SQL run inside it included) and its exclusive time (without the
phases nested in it), so SQL + render (exclusive) + rest add up to the request's wall time.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import connection

from tests.bench.benchmark import percentile

# Steps of the list view timed on their own (inclusive of their SQL): label -> (module, name).
STEPS = {
    "summary": ("catalogue.filters", "summarise"),  # count, timeline and facets of the matches
    "highlight": ("catalogue.views", "_highlight"),  # the page's rows read, words <mark>ed
    "topics": ("catalogue.views", "_attach_topics"),  # the cards' topic chips
}
# Both template backends' render: a page is a Jinja2 template, its form widgets Django ones.
RENDERS = [
    ("django.template.backends.django", "Template", "render"),
    ("django.template.backends.jinja2", "Template", "render"),
]


class PhaseClock:
    """Inclusive and exclusive wall time per phase; a phase inside itself counts once."""

    def __init__(self):
        self.inclusive: dict[str, float] = defaultdict(float)
        self.exclusive: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self._stack: list[tuple[str, float]] = []  # (phase, its start)
        self._mark = 0.0  # when the innermost phase last started or resumed

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        if self._stack:
            self.exclusive[self._stack[-1][0]] += started - self._mark
        self._stack.append((name, started))
        self._mark = started
        try:
            yield
        finally:
            ended = time.perf_counter()
            self._stack.pop()
            self.exclusive[name] += ended - self._mark
            if name not in (phase for phase, _ in self._stack):  # the outermost of its kind
                self.inclusive[name] += ended - started
                self.counts[name] += 1
            self._mark = ended


@dataclass
class Sample:
    """One request: its class, status and milliseconds per part."""

    kind: str
    url: str
    status: int
    total_ms: float
    sql_ms: float
    queries: int
    slowest_query_ms: float
    render_ms: float  # template rendering without the SQL it ran (lazy querysets)
    steps_ms: dict[str, float] = field(default_factory=dict)  # inclusive of their SQL

    @property
    def rest_ms(self) -> float:
        return self.total_ms - self.sql_ms - self.render_ms


@contextlib.contextmanager
def instrumented(clock: PhaseClock, slowest: list[float]) -> Iterator[None]:
    """The clock timing SQL, rendering and the STEPS while inside; ``slowest`` gets the
    longest statement's seconds."""

    def timed_sql(execute, sql, params, many, context):
        with clock.phase("sql"):
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                slowest[0] = max(slowest[0], time.perf_counter() - started)

    targets = [
        (getattr(importlib.import_module(module), cls), name, "render")
        for module, cls, name in RENDERS
    ]
    targets += [(importlib.import_module(m), n, label) for label, (m, n) in STEPS.items()]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in targets]
    try:
        for (owner, attr, label), (_, _, original) in zip(targets, originals, strict=True):
            setattr(owner, attr, _timed(original, clock, label))
        with connection.execute_wrapper(timed_sql):
            yield
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)


def _timed(function, clock: PhaseClock, label: str):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with clock.phase(label):
            return function(*args, **kwargs)

    return wrapper


def measure(client, kind: str, url: str, **extra) -> Sample:
    """GET ``url`` once with the phases timed."""
    clock, slowest = PhaseClock(), [0.0]
    with instrumented(clock, slowest):
        started = time.perf_counter()
        status = client.get(url, **extra).status_code
        total = time.perf_counter() - started
    return Sample(
        kind=kind,
        url=url,
        status=status,
        total_ms=total * 1000,
        sql_ms=clock.inclusive["sql"] * 1000,
        queries=clock.counts["sql"],
        slowest_query_ms=slowest[0] * 1000,
        render_ms=clock.exclusive["render"] * 1000,
        steps_ms={label: clock.inclusive[label] * 1000 for label in STEPS},
    )


# --- the table ------------------------------------------------------------------------------

HEADER = (
    "| page class | requests | not 200 | p50 ms | p95 ms | SQL ms | queries | slowest query ms "
    "| render ms | rest ms | summary ms | highlight ms | topics ms |"
)


def table(samples: list[Sample]) -> str:
    """Per page class and overall: p50/p95 of the wall time, medians of the parts."""
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_kind[sample.kind].append(sample)
    lines = [HEADER, "|---|" + "---:|" * (HEADER.count("|") - 2)]
    for kind, rows in [*sorted(by_kind.items()), ("**all**", samples)]:
        lines.append(_row(kind, rows))
    return "\n".join(lines)


def slowest(samples: list[Sample], count: int) -> str:
    """The ``count`` slowest requests: where the p95 comes from."""
    lines = ["| page class | URL | ms | SQL ms | queries | slowest query ms | render ms |"]
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for s in sorted(samples, key=lambda s: s.total_ms, reverse=True)[:count]:
        lines.append(
            f"| {s.kind} | `{s.url}` | {s.total_ms:.1f} | {s.sql_ms:.1f} | {s.queries} "
            f"| {s.slowest_query_ms:.1f} | {s.render_ms:.1f} |"
        )
    return "\n".join(lines)


def _row(kind: str, rows: list[Sample]) -> str:
    totals = [r.total_ms for r in rows]

    def median(values) -> str:
        return f"{statistics.median(values):.1f}"

    steps = [median(r.steps_ms[label] for r in rows) for label in STEPS]
    cells = [
        kind,
        f"{len(rows)}",
        f"{sum(r.status != 200 for r in rows)}",
        f"{percentile(totals, 50):.1f}",
        f"{percentile(totals, 95):.1f}",
        median(r.sql_ms for r in rows),
        median(r.queries for r in rows),
        median(r.slowest_query_ms for r in rows),
        median(r.render_ms for r in rows),
        median(r.rest_ms for r in rows),
        *steps,
    ]
    return "| " + " | ".join(cells) + " |"


LEGEND = """\
Each URL requested once, in-process (Django test client), page and summary caches off. p50/p95:
nearest-rank percentiles of the wall time; the other columns are medians per request. SQL: the
sum of every statement's execute time on the request's connection (queries: how many; slowest
query: the longest one, close to the page's main query, the benchmark's "floor"); a hybrid
search's neighbours by meaning, found on another thread and connection meanwhile
(catalogue.alongside), are not in it. render: template rendering (Jinja2 pages, Django form
widgets) without the SQL it ran. rest: wall - SQL - render (middleware, view, filter, form,
paginator, client, the wait for the neighbours).
summary/highlight/topics: the list view's steps, wall time including their own SQL; the page's
rows are a lazy queryset, so the first step that reads them (highlight on a search, else topics)
also pays the page's main query."""
