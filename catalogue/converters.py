"""Path converters: a path segment that cannot name a page is a 404 from the URL resolver.

A view then gets a valid value or is never called: an impossible date, a year beyond the
calendar, digits other than ASCII ones ("²", "٤٨": ``str.isdigit`` accepts them), or a NUL
byte (PostgreSQL refuses it in text: a DataError) never reach date arithmetic or a query.
Every page has one URL, so only the canonical spelling matches (``2025-11-27``, not
``20251127``, which ``date.fromisoformat`` also reads).

``to_python`` raising ``ValueError`` is how a converter says "no match" (Django then tries
the next pattern, and answers 404 when none matches). ``to_url`` takes a date or the text of
one, so ``reverse()`` works with either.
"""

from __future__ import annotations

import datetime as dt


class DayConverter:
    """``2025-11-27``: a calendar day."""

    regex = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"

    def to_python(self, value: str) -> dt.date:
        return dt.date.fromisoformat(value)

    def to_url(self, value: dt.date | str) -> str:
        return value.isoformat() if isinstance(value, dt.date) else value


class IsoWeekConverter:
    """``2025-W48``: an ISO week, as the date of its Monday."""

    regex = r"[0-9]{4}-W[0-9]{2}"

    def to_python(self, value: str) -> dt.date:
        year, week = value.split("-W")
        return dt.date.fromisocalendar(int(year), int(week), 1)

    def to_url(self, value: dt.date | str) -> str:
        return iso_week(value) if isinstance(value, dt.date) else value


class MonthConverter:
    """``2025-11``: a calendar month, as the date of its first day."""

    regex = r"[0-9]{4}-[0-9]{2}"

    def to_python(self, value: str) -> dt.date:
        year, month = value.split("-")
        return dt.date(int(year), int(month), 1)

    def to_url(self, value: dt.date | str) -> str:
        return month_text(value) if isinstance(value, dt.date) else value


class PaperSlugConverter:
    """A paper's public id: an arXiv id (``2401.01234``, ``hep-th/9901001``, with a slash) or a
    catalogue number. Anything without control characters: the page looks it up (and old ids
    of merged papers redirect), but a NUL byte cannot be in any id, and a number is a bigint
    (int() refuses 4,300 digits or more: a ValueError in the lookup)."""

    regex = r"[^\x00-\x1f\x7f]+"

    def to_python(self, value: str) -> str:
        if value.isdigit() and len(value) > len(str(2**63 - 1)):
            raise ValueError("not a catalogue number")
        return value

    def to_url(self, value: str) -> str:
        return value


# Written by hand: strftime's %Y does not pad years before 1000 ("1-01", which no URL matches).


def month_text(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def iso_week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year:04d}-W{week:02d}"
