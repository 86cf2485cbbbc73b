"""arXiv's daily listing feeds, RSS 2.0 (``https://rss.arxiv.org/rss/<category>``, since 2024).

One feed is one announcement day of one category: ``new`` papers, ``cross`` lists from other
categories, and ``replace``/``replace-cross`` (new versions of older papers). Weekends and
holidays give a channel without items, which is an empty listing, not an error.

Dates: the channel's ``pubDate`` is the announcement day (US-Eastern), which is ``listed_on``.
A ``new`` item became public that very day, so its ``published_on`` is that day too (arXiv's
own "submitted" timestamp, which other sources give, is 1-3 days earlier). A ``cross`` item may
be an older paper that gained a category later (2504.16299 in the 2025-04-28 quant-ph feed,
whose new papers start at 2504.17830): it counts as new only when its id is not below the
feed's lowest ``new`` id (ids are handed out in submission order). A replacement's v1 is older
and the feed does not say when: its ``published_on`` stays None rather than a guess.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from ingest.http import Fetcher
from ingest.normalize import clean_abstract, clean_title, is_arxiv_category, split_arxiv_id
from ingest.records import Page, PaperRecord, ParseError, ParseResult, Rejected, checked
from ingest.sources._arxiv import (
    as_stream,
    code_url,
    first_doi,
    is_withdrawn,
    rfc2822_date,
    split_authors,
    split_categories,
    squash,
    too_deep,
)
from ingest.sources._params import check_keys, text_param

SOURCE = "arxiv_rss"
DEFAULT_URL = "https://rss.arxiv.org/rss/cs.LG"
_FEED_BASE = "https://rss.arxiv.org/rss/"

_ARXIV = "{http://arxiv.org/schemas/atom}"
_DC = "{http://purl.org/dc/elements/1.1/}"
# "arXiv:2504.17830v1 Announce Type: new \nAbstract: We introduce ..."
_DESCRIPTION_HEAD = re.compile(
    r"^\s*arXiv:(?P<id>\S+)\s+Announce Type:\s*(?P<type>\S+)\s*(?:Abstract:\s*)?", re.IGNORECASE
)
_NEW_STYLE_ID = re.compile(r"(\d{4})\.(\d{4,5})")


def parse(data: bytes | BinaryIO, *, listed_on: dt.date | None = None) -> Iterator[ParseResult]:
    """Yield one record per ``<item>``. The feed's own date wins over ``listed_on``, which is
    the fallback for a feed that does not state its day.

    A feed whose XML breaks off yields every complete item before the break, then raises
    ``ParseError`` at it."""
    channel, items, error = _read_feed(data)
    listed_on = _feed_date(channel) or listed_on
    heads = [(item, _DESCRIPTION_HEAD.match(item.findtext("description") or "")) for item in items]
    first_new = _first_new_id(heads)
    for number, (item, head) in enumerate(heads, 1):
        yield _read_item(item, head, number, listed_on, first_new)
    if error is not None:
        raise error


def looks_like(head: bytes) -> bool:
    """Content sniffing for format detection: an RSS root with arXiv's namespace."""
    return b"<rss" in head[:4096] and b"arxiv.org/schemas/atom" in head[:4096]


_CHUNK = 64 * 1024


def _read_feed(data: bytes | BinaryIO) -> tuple[ET.Element, list[ET.Element], ParseError | None]:
    """The channel, its complete ``<item>``s, and the error where the XML broke off (if it did).

    Every item is needed before the first is yielded (the feed's lowest new id decides what
    a cross-list is), and a feed holds at most 2,000 items (a few MB), so they are kept; the
    XML is still read incrementally, so that a cut keeps the items before it.
    """
    parser = ET.XMLPullParser(("start", "end"))
    stream = as_stream(data)
    feed = _Feed()
    try:
        while chunk := stream.read(_CHUNK):
            parser.feed(chunk)
            feed.take(parser.read_events())
        parser.close()
        feed.take(parser.read_events())
    except LookupError as exc:  # expat on an encoding it does not know (<?xml encoding="…"?>)
        raise ParseError(f"malformed XML: {exc}", "line 1") from None
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).rsplit(": line", 1)[0]
        return feed.broken_at(
            ParseError(f"malformed XML: {reason}", f"line {line}, column {column}")
        )
    except ParseError as error:  # nested too deep
        return feed.broken_at(error)
    if feed.channel is None:
        raise ParseError("not an RSS 2.0 feed (no channel)", "line 1")
    return feed.channel, feed.items, None


class _Feed:
    """Where the parser is, the channel, and the items that are the channel's own children."""

    def __init__(self) -> None:
        self.path: list[str] = []
        self.channel: ET.Element | None = None
        self.items: list[ET.Element] = []

    def take(self, events) -> None:
        for event, elem in events:
            if event == "end":
                if self.path == ["rss", "channel", "item"]:
                    self.items.append(elem)
                self.path.pop()
                continue
            if not self.path and elem.tag != "rss":
                raise ParseError(f"not an RSS 2.0 feed (root element {elem.tag})", "line 1")
            self.path.append(elem.tag)
            if error := too_deep(len(self.path), elem.tag):
                raise error
            if self.path == ["rss", "channel"] and self.channel is None:
                self.channel = elem

    def broken_at(self, error: ParseError):
        if self.channel is None:  # not even the start of a feed: nothing to keep
            raise error
        return self.channel, self.items, error


def _feed_date(channel: ET.Element) -> dt.date | None:
    """``pubDate`` is the announcement day in US-Eastern time; read it as written, since
    converting to UTC could move a late-evening stamp to the next day."""
    return rfc2822_date(channel.findtext("pubDate")) or rfc2822_date(
        channel.findtext("lastBuildDate")
    )


def _read_item(
    item: ET.Element,
    head: re.Match | None,
    number: int,
    listed_on: dt.date | None,
    first_new: tuple[int, int] | None,
) -> ParseResult:
    ids = _arxiv_id(item, head)
    title = clean_title(item.findtext("title") or "")
    if not ids or not title:
        return Rejected("item without an arXiv id or title", _excerpt(item), f"item {number}")
    record = _record(item, head, ids, title, listed_on, first_new)
    return checked(record, f"item {number}", lambda: _excerpt(item))


def _excerpt(item: ET.Element) -> str:
    return ET.tostring(item, encoding="unicode")[:2000]


def _record(
    item: ET.Element,
    head: re.Match | None,
    ids: tuple[str, int | None],
    title: str,
    listed_on: dt.date | None,
    first_new: tuple[int, int] | None,
) -> PaperRecord:
    description = item.findtext("description") or ""
    arxiv_id, version = ids
    announce_type = _announce_type(item, head)
    abstract = clean_abstract(description[head.end() :] if head else description)
    categories = tuple(c for el in item.iterfind("category") for c in split_categories(el.text))
    is_new = announce_type == "new" or (
        announce_type == "cross" and first_new is not None and _id_order(arxiv_id) >= first_new
    )
    return PaperRecord(
        source=SOURCE,
        source_key=arxiv_id,
        title=title,
        arxiv_id=arxiv_id,
        abstract=abstract,
        authors=split_authors(item.findtext(f"{_DC}creator")),
        published_on=listed_on if is_new else None,
        listed_on=listed_on,
        primary_category=categories[0] if categories else "",
        categories=categories,
        version=version,
        doi=first_doi(item.findtext(f"{_ARXIV}DOI")),
        journal_ref=squash(item.findtext(f"{_ARXIV}journal_reference")),
        withdrawn=is_withdrawn(None, abstract),
        code_url=code_url(abstract),
        extra={"announce_type": announce_type},
    )


def _arxiv_id(item: ET.Element, head: re.Match | None) -> tuple[str, int | None] | None:
    """``(id, version)`` from the guid (``oai:arXiv.org:2504.17830v1``), else the link
    (versionless), else the description's ``arXiv:2504.17830v1``."""
    candidates = [item.findtext("guid"), item.findtext("link"), head and head.group("id")]
    found = [parts for text in candidates if text and (parts := split_arxiv_id(squash(text)))]
    if not found:
        return None
    versions = [version for _, version in found if version is not None]
    return found[0][0], versions[0] if versions else None


def _announce_type(item: ET.Element, head: re.Match | None) -> str:
    return squash(item.findtext(f"{_ARXIV}announce_type")) or (head.group("type") if head else "")


def _first_new_id(items: list[tuple[ET.Element, re.Match | None]]) -> tuple[int, int] | None:
    """The lowest id among today's ``new`` papers: the start of today's batch."""
    orders = [
        _id_order(ids[0])
        for item, head in items
        if _announce_type(item, head) == "new" and (ids := _arxiv_id(item, head))
    ]
    return min(orders) if orders else None


def _id_order(arxiv_id: str) -> tuple[int, int]:
    """New-style ids sort by (YYMM, number); old-style ids predate RSS and sort first."""
    match = _NEW_STYLE_ID.fullmatch(arxiv_id)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


# --- fetching ----------------------------------------------------------------------------------


def fetch_pages(
    fetcher: Fetcher,
    url: str | None,
    params: Mapping[str, str | int],
    *,
    today: dt.date | None = None,
) -> Iterator[Page]:
    """Today's feed as one page, or no page at all when it has not changed since last asked.

    Params: none, or ``category`` (``cs.LG``; ``cs.AI+q-bio.NC`` combines feeds), which names
    the feed instead of ``url``. ``listed_on`` is left to the feed's own ``pubDate``.
    """
    check_keys(params, ("category",), SOURCE)
    category = text_param(params, "category")
    if category and url:
        raise ValueError("give arxiv_rss a url or a category param, not both")
    if category:
        url = _FEED_BASE + _checked_category(category)
    return _feed(fetcher, url or DEFAULT_URL)


def _checked_category(text: str) -> str:
    if not all(is_arxiv_category(part) for part in text.split("+")):
        raise ValueError(f"category must be arXiv categories joined by '+' (cs.LG), not {text!r}")
    return text


def _feed(fetcher: Fetcher, url: str) -> Iterator[Page]:
    # Conditional: the feed is rebuilt once a day, so most polls cost a 304 and parse nothing.
    result = fetcher.get(url)
    if not result.not_modified:
        yield Page(content=result.content, url=result.url)
