"""The text of a Hugging Face Papers listing page (search results, daily/weekly pages).

Each card is a title line, an abstract paragraph, then three meta lines::

    • 13 authors
    ·
    Nov 27 4          <- date without year (the listing's own year), then upvotes
    Nov 25, 2024      <- date with year, no upvotes

Some cards have no meta lines at all. Lines before the first card (navigation, the page's own
date) are skipped. There are no arXiv ids in this format, so a card's key is its title slug.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from ingest.http import Fetcher
from ingest.normalize import clean_abstract, clean_title, find_code_url
from ingest.records import Page, PaperRecord, ParseError, ParseResult, Rejected, checked
from ingest.sources._params import check_keys

SOURCE = "hf_page"
# Every Hugging Face listing page (search, a day, a week) is a Source of its own.
DEFAULT_URL: str | None = None

# At most nine digits: a count, not a number int() refuses or a column cannot hold.
_AUTHORS_RE = re.compile(r"^(?:•\s*)?(\d{1,9}) authors?$")
_SEPARATOR = "·"
_MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_DATE_RE = re.compile(
    r"^(?P<month>[A-Z][a-z]{2}) (?P<day>\d{1,2})(?:, (?P<year>\d{4}))?(?: (?P<upvotes>\d{1,9}))?$"
)


def parse(data: bytes | BinaryIO, *, listed_on: dt.date | None = None) -> Iterator[ParseResult]:
    """Yield one record per card. ``listed_on`` (default: today) gives year-less dates a year."""
    listed_on = listed_on or dt.date.today()
    lines = _numbered_lines(data)
    start = _first_card_index(lines)
    i = start
    while i < len(lines):
        i, result = _read_card(lines, i, listed_on)
        yield result


def looks_like(head: bytes) -> bool:
    """Content sniffing for format detection: a card's meta line near the top."""
    text = head.decode("utf-8", errors="replace")
    return any(_AUTHORS_RE.match(line.strip()) for line in text.splitlines())


def _numbered_lines(data: bytes | BinaryIO) -> list[tuple[int, str]]:
    raw = data if isinstance(data, bytes) else data.read()
    # surrogateescape: undecodable bytes become lone surrogates that reject their own card
    # (checked), not the whole listing.
    text = raw.decode("utf-8", "surrogateescape")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _first_card_index(lines: list[tuple[int, str]]) -> int:
    """The first card is the title two lines above the first meta line."""
    for i, (_, line) in enumerate(lines):
        if _AUTHORS_RE.match(line):
            return max(i - 2, 0)
    raise ParseError("no paper cards found (no '• N authors' line)", "line 1")


def _read_card(lines, i: int, listed_on: dt.date) -> tuple[int, ParseResult]:
    """Read the card starting at ``lines[i]``; return the next card's index and the result."""
    line_no, title = lines[i]
    abstract = ""
    i += 1
    if i < len(lines) and not _AUTHORS_RE.match(lines[i][1]):
        abstract = lines[i][1]
        i += 1
    raw = "\n".join([title, abstract[:200], *(text for _, text in lines[i : i + 3])])
    if i >= len(lines) or not _AUTHORS_RE.match(lines[i][1]):
        # A card without meta lines: title and abstract only.
        return i, checked(_record(title, abstract), f"line {line_no}", lambda: raw)
    meta = [text for _, text in lines[i : i + 3]]
    if len(meta) < 3 or meta[1] != _SEPARATOR:
        return i + 1, Rejected(
            "meta lines are not '• N authors', '·', date", raw, f"line {line_no}"
        )
    match = _DATE_RE.match(meta[2])
    if not match:
        return i + 3, Rejected(f"unreadable date {meta[2]!r}", raw, f"line {line_no}")
    try:
        published_on = _card_date(match, listed_on)
    except ValueError as exc:
        return i + 3, Rejected(f"invalid date {meta[2]!r}: {exc}", raw, f"line {line_no}")
    upvotes = match.group("upvotes")
    record = _record(
        title,
        abstract,
        author_count=int(_AUTHORS_RE.match(meta[0]).group(1)),
        published_on=published_on,
        upvotes=int(upvotes) if upvotes else 0,
        listed_on=listed_on,
    )
    return i + 3, checked(record, f"line {line_no}", lambda: raw)


def _card_date(match: re.Match, listed_on: dt.date) -> dt.date:
    month = _MONTHS.get(match.group("month"))
    if month is None:
        raise ValueError(f"unknown month {match.group('month')!r}")
    day = int(match.group("day"))
    if match.group("year"):
        return dt.date(int(match.group("year")), month, day)
    # A year-less date is in the listing's year, unless that would put it after the listing.
    date = dt.date(listed_on.year, month, day)
    return date if date <= listed_on else date.replace(year=listed_on.year - 1)


def _record(title: str, abstract: str, **fields) -> PaperRecord:
    title = clean_title(title)
    return PaperRecord(
        source=SOURCE,
        source_key=slugify_title(title),
        title=title,
        abstract=clean_abstract(abstract),
        code_url=find_code_url(abstract),
        **fields,
    )


def slugify_title(title: str) -> str:
    """A stable key for an id-less card: lower-case words joined by hyphens (ASCII ones; the
    title's own words when it has none, as a title in Chinese, rather than no key)."""
    words = re.findall(r"[a-z0-9]+", title.lower()) or re.findall(r"[^\W_]+", title.lower())
    return "-".join(words)[:200]


# --- fetching ----------------------------------------------------------------------------------


def fetch_pages(
    fetcher: Fetcher,
    url: str | None,
    params: Mapping[str, str | int],
    *,
    today: dt.date | None = None,
) -> Iterator[Page]:
    """The listing page as one page, dated ``today`` (its year-less dates need a year), or no
    page when it has not changed since last asked. No params; ``url`` is required."""
    check_keys(params, (), SOURCE)
    if not url:
        raise ValueError("hf_page needs a url: there is no one listing page")
    return _listing(fetcher, url, today or dt.date.today())


def _listing(fetcher: Fetcher, url: str, today: dt.date) -> Iterator[Page]:
    result = fetcher.get(url)
    if not result.not_modified:
        yield Page(content=result.content, listed_on=today, url=result.url)
