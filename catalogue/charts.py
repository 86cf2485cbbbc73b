"""Small server-rendered SVG pictures: a timeline of matches per month, an upvote sparkline.

Pure functions from numbers to drawing coordinates; the templates draw them. No JavaScript.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

TIMELINE_WIDTH = 600
TIMELINE_HEIGHT = 60
MAX_MONTHS = 120  # ten years of bars; older matches are summed into the first bar


@dataclass(frozen=True)
class Bar:
    month: dt.date
    count: int
    x: float
    y: float
    width: float
    height: float

    @property
    def label(self) -> str:
        return f"{self.month:%b %Y}: {self.count:,} paper{'s' if self.count != 1 else ''}"


def months_between(first: dt.date, last: dt.date) -> list[dt.date]:
    months, current = [], first.replace(day=1)
    while current <= last:
        months.append(current)
        current = (current + dt.timedelta(days=32)).replace(day=1)
    return months


def timeline(counts: dict[dt.date, int]) -> list[Bar]:
    """One bar per month from the first to the last month with matches (empty months too)."""
    if not counts:
        return []
    months = months_between(min(counts), max(counts))
    if len(months) > MAX_MONTHS:
        older = sum(n for month, n in counts.items() if month < months[-MAX_MONTHS])
        months = months[-MAX_MONTHS:]
        counts = {**counts, months[0]: counts.get(months[0], 0) + older}
    tallest = max(counts.get(m, 0) for m in months) or 1
    # Few months would make slabs, not bars: at most 1/12 of the width each.
    width = min(TIMELINE_WIDTH / len(months), TIMELINE_WIDTH / 12)
    bars = []
    for i, month in enumerate(months):
        count = counts.get(month, 0)
        height = round(TIMELINE_HEIGHT * count / tallest, 1) if count else 0
        bars.append(
            Bar(month, count, round(i * width, 2), TIMELINE_HEIGHT - height, width * 0.85, height)
        )
    return bars


def sparkline(values: list[int], width: int = 160, height: int = 32) -> str:
    """SVG polyline points for a series (oldest first); "" for fewer than two points."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1
    step = width / (len(values) - 1)
    return " ".join(
        f"{round(i * step, 1)},{round(height - 2 - (v - low) / span * (height - 4), 1)}"
        for i, v in enumerate(values)
    )
