"""Hugging Face Daily Papers JSON: ``/api/daily_papers?date=…`` and its relatives.

Three shapes are read the same way:

* ``/api/daily_papers`` and ``/api/papers/search``: a JSON array of items, each
  ``{"paper": {...}, "title", "publishedAt", "numComments", ...}``;
* ``/api/papers/{id}``: one bare paper object (the inner ``paper`` shape, no item around it).

The arXiv facts (id, authors, arXiv date, abstract) live in ``paper``; the item adds the display
title, the comment count and the day it entered Daily. Keys are omitted when absent, never null.
An HTTP error body (``{"error": "…"}``) is an object too, and raises ``ParseError``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from ingest.http import Fetcher
from ingest.normalize import (
    clean_abstract,
    clean_author,
    clean_link,
    clean_title,
    collapse_whitespace,
    find_code_url,
    normalize_code_url,
    parse_date,
    parse_datetime,
    split_arxiv_id,
)
from ingest.records import Page, PaperRecord, ParseError, ParseResult, Rejected, checked
from ingest.sources._params import check_keys, date_param, int_param

SOURCE = "hf_daily"
DEFAULT_URL = "https://huggingface.co/api/daily_papers"
_MAX_LIMIT = 100  # the API answers HTTP 400 above this

# Since 2025 the item's top-level publishedAt is paper.publishedAt re-labelled from US-Eastern
# wall time, i.e. exactly 4 or 5 hours earlier: a copy of the arXiv date, not a Daily date.
_EASTERN_OFFSETS = (dt.timedelta(hours=4), dt.timedelta(hours=5))
# Before 2025 the top-level publishedAt was the moment the paper was posted to Daily.
_POSTING_TIMES_END = 2025


def parse(data: bytes | BinaryIO, *, listed_on: dt.date | None = None) -> Iterator[ParseResult]:
    """Yield one record per item; ``listed_on`` is the ``?date=`` the payload was fetched for.

    The array is read item by item, so a payload cut (or broken) at item N yields items
    1 … N-1 and then raises ``ParseError`` at N.
    """
    for number, item in _stream_items(data):
        yield _read_item(item, f"item {number}", listed_on)


def looks_like(head: bytes) -> bool:
    """Content sniffing: JSON whose first item is ``{"paper": …}`` or a bare paper object,
    whose authors are HF objects with an ``_id`` (the Kaggle snapshot's are a string)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    paper_keys = b'"paper"' in head or (b'"authors"' in head and b'"_id"' in head)
    return text[:1] in (b"[", b"{") and paper_keys


def _json_int(digits: str) -> int:
    """A JSON integer; one of more than 20 digits (no count has them, and int() refuses over
    4,300) becomes 10**20, which any count column refuses: its record is rejected, not lost."""
    return int(digits) if len(digits) <= 20 else 10**20


# strict=False: a raw control character inside a string (a NUL in one title) is that item's
# problem, rejected by checked(), not a framing error that would lose every item after it.
_DECODER = json.JSONDecoder(strict=False, parse_int=_json_int)
_SPACE = re.compile(r"[ \t\n\r]*")


def _stream_items(data: bytes | BinaryIO) -> Iterator[tuple[int, object]]:
    """``(number, item)`` of each complete item, in order; ``ParseError`` where reading stops."""
    text = _text_of(data if isinstance(data, bytes | bytearray) else data.read())
    start = _SPACE.match(text).end()
    if not text.startswith("[", start):
        # One object: a bare paper (/api/papers/{id}) or an error, read whole.
        yield from enumerate(_items(_decode_whole(text)), 1)
        return
    position = _SPACE.match(text, start + 1).end()
    if text.startswith("]", position):
        _check_end(text, position + 1, 0)
        return
    for number in itertools.count(1):
        item, position = _decode_item(text, position, number)
        yield number, item
        position = _SPACE.match(text, position).end()
        separator = text[position : position + 1]
        if separator == "]":
            _check_end(text, position + 1, number)
            return
        if separator != ",":
            what = "the array ends without ']'" if not separator else f"found {separator!r}"
            where = _line_column(text, position)
            raise ParseError(f"truncated or invalid JSON after item {number}: {what}", where)
        position = _SPACE.match(text, position + 1).end()


def _decode_item(text: str, position: int, number: int) -> tuple[object, int]:
    try:
        return _DECODER.raw_decode(text, position)
    except RecursionError:
        where = _line_column(text, position)
        raise ParseError(f"JSON nested too deeply in item {number}", where) from None
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"truncated or invalid JSON in item {number}: {exc.msg}", _line_column(text, exc.pos)
        ) from None


def _check_end(text: str, position: int, items: int) -> None:
    end = _SPACE.match(text, position).end()
    if end != len(text):
        where = _line_column(text, end)
        raise ParseError(f"unexpected data after the array of {items} items", where)


def _line_column(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    return f"line {line}, column {position - text.rfind(chr(10), 0, position)}"


def _decode_whole(text: str):
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ParseError("JSON nested too deeply", "line 1") from None
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc.msg}", _line_column(text, exc.pos)) from None


def _load(data: bytes | BinaryIO):
    """The whole document (to count a fetched page's items), read as leniently as parse()
    reads it: a page that parse() would keep is never refused here."""
    raw = data if isinstance(data, bytes | bytearray) else data.read()
    return _decode_whole(_text_of(raw))


def _text_of(raw: bytes) -> str:
    # surrogateescape: undecodable bytes inside one item's strings become lone surrogates,
    # which reject that item (checked) instead of the whole file.
    return bytes(raw).decode("utf-8", "surrogateescape").removeprefix("\ufeff")


def _items(payload) -> list:
    """The list of items in any of the three shapes; anything else is not this format."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        if "error" in payload:
            raise ParseError(f"Hugging Face API error: {payload['error']}")
        if "id" in payload and "authors" in payload:
            return [payload]  # /api/papers/{id}: a bare paper object
    raise ParseError(f"expected a JSON array of papers, got {type(payload).__name__}", "line 1")


def _read_item(item, position: str, listed_on: dt.date | None) -> ParseResult:
    if not isinstance(item, dict):
        return Rejected(f"item is a {type(item).__name__}, not an object", _excerpt(item), position)
    # A bare paper object (/api/papers/{id}) is its own item.
    paper = item.get("paper", item)
    if not isinstance(paper, dict):
        return Rejected("'paper' is not an object", _excerpt(item), position)
    try:
        return checked(_record(item, paper, listed_on), position, lambda: _excerpt(item))
    except _Unusable as exc:
        return Rejected(str(exc), _excerpt(item), position)
    except (TypeError, ValueError, AttributeError) as exc:
        # A field of an unexpected type: reject this item, keep reading the others.
        return Rejected(f"malformed item: {exc}", _excerpt(item), position)


class _Unusable(Exception):
    """The item lacks what every paper needs (an id, a title)."""


def _record(item: dict, paper: dict, listed_on: dt.date | None) -> PaperRecord:
    paper_id = paper.get("id")
    if not isinstance(paper_id, str) or not paper_id.strip():
        raise _Unusable("missing paper id")
    title = _title(paper, item)
    if not title:
        raise _Unusable("missing title")
    arxiv = split_arxiv_id(paper_id)
    abstract = clean_abstract(_text(paper.get("summary") or item.get("summary")))
    repo = _first(paper, item, "githubRepo")
    return PaperRecord(
        source=SOURCE,
        source_key=arxiv[0] if arxiv else paper_id.strip(),
        arxiv_id=arxiv[0] if arxiv else None,
        title=title,
        abstract=abstract,
        authors=_authors(paper.get("authors")),
        published_on=parse_date(paper.get("publishedAt")),
        listed_on=_listed_on(item, paper, listed_on),
        upvotes=_int(paper.get("upvotes")),
        comments=_int(item.get("numComments")),
        github_stars=_int(_first(paper, item, "githubStars")),
        code_url=normalize_code_url(_text(repo)) or find_code_url(abstract),
        project_url=clean_link(_text(_first(paper, item, "projectPage"))),
        keywords=_keywords(_first(paper, item, "ai_keywords")),
        withdrawn=bool(paper.get("withdrawnAt") or item.get("withdrawnAt")),
        extra=_extra(item, paper),
    )


def _title(paper: dict, item: dict) -> str:
    """paper.title (the arXiv title), unless HF stripped LaTeX the display title still has.

    HF turns ``$\\nabla^2$DFT`` into ``nabla^2DFT`` in paper.title while the top-level title
    keeps the markup, which clean_title can render (``∇^2DFT``).
    """
    arxiv_title = _text(paper.get("title"))
    display = _text(item.get("title"))
    if display and _has_markup(display) and not _has_markup(arxiv_title):
        return clean_title(display)
    return clean_title(arxiv_title) or clean_title(display)


def _has_markup(text: str) -> bool:
    return "$" in text or "\\" in text


def _listed_on(item: dict, paper: dict, requested: dt.date | None) -> dt.date | None:
    """The Daily day: paper.submittedOnDailyAt, else the requested date, else (2024) the
    posting time; a top-level publishedAt that is the shifted arXiv date is never used."""
    submitted = parse_date(paper.get("submittedOnDailyAt"))
    if submitted or requested:
        return submitted or requested
    posted = parse_datetime(item.get("publishedAt")) if "paper" in item else None
    arxiv_time = parse_datetime(paper.get("publishedAt"))
    if posted is None or posted.year >= _POSTING_TIMES_END:
        return None
    if arxiv_time is not None and arxiv_time - posted in _EASTERN_OFFSETS:
        return None  # an old paper in search results: the arXiv date shifted, not a Daily day
    return posted.date()


def _authors(authors) -> tuple[str, ...]:
    """Names in arXiv order; ``hidden`` authors are hidden on HF's page but still authors."""
    if not isinstance(authors, list):
        return ()
    names = (clean_author(_text(a.get("name"))) for a in authors if isinstance(a, dict))
    return tuple(name for name in names if name)


def _keywords(keywords) -> tuple[str, ...]:
    if not isinstance(keywords, list):
        return ()
    return tuple(k.strip() for k in keywords if isinstance(k, str) and k.strip())


def _extra(item: dict, paper: dict) -> dict:
    """What the catalogue may show but PaperRecord has no field for; empty values left out."""
    extra = {
        "ai_summary": _text(_first(paper, item, "ai_summary")).strip(),
        "organization": _organization_name(_first(paper, item, "organization")),
        "thumbnail": _text(item.get("thumbnail") or item.get("mediaUrl")),
    }
    return {key: value for key, value in extra.items() if value}


def _organization_name(organization) -> str:
    if not isinstance(organization, dict):
        return ""
    return collapse_whitespace(_text(organization.get("fullname") or organization.get("name")))


def _first(paper: dict, item: dict, key: str):
    """Daily items keep these inside ``paper``; PaperInfo-style payloads at the top level."""
    value = paper.get(key)
    return value if value is not None else item.get(key)


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _int(value) -> int | None:
    # bool is an int in Python; a true/false here is not a count.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _excerpt(item) -> str:
    """The item as JSON with its id and title first, so a cut excerpt still names the paper
    (the author objects that come first in HF's key order fill kilobytes)."""
    if isinstance(item, dict):
        paper = item["paper"] if isinstance(item.get("paper"), dict) else item
        head = {key: paper.get(key) or item.get(key) for key in ("id", "title")}
        item = {**{k: v for k, v in head.items() if v}, **item}
    try:
        return json.dumps(item, ensure_ascii=False)[:2000]
    except RecursionError:
        return repr(item)[:2000]


# --- fetching ----------------------------------------------------------------------------------


def fetch_pages(
    fetcher: Fetcher,
    url: str | None,
    params: Mapping[str, str | int],
    *,
    today: dt.date | None = None,
) -> Iterator[Page]:
    """Every page of one day: ``?date=D&p=0,1,…&limit=L`` until a page comes back short.

    Params: ``date`` (required; YYYY-MM-DD, "today" or "yesterday"), ``limit`` (items per page,
    default 50, at most 100). They are checked on the call; requests start on iteration.
    """
    check_keys(params, ("date", "limit"), SOURCE)
    day = date_param(params, "date", today or dt.date.today())
    if day is None:
        raise ValueError("hf_daily needs a date param (YYYY-MM-DD, today or yesterday)")
    limit = int_param(params, "limit", 50, 1, _MAX_LIMIT)
    return _daily_pages(fetcher, url or DEFAULT_URL, day, limit)


def _daily_pages(fetcher: Fetcher, url: str, day: dt.date, limit: int) -> Iterator[Page]:
    previous = None
    for number in itertools.count():
        query = {"date": day.isoformat(), "p": number, "limit": limit}
        # Unconditional: a 304 would hide how many items the page holds, so where paging ends.
        result = fetcher.get(url, query, conditional=False)
        # An error object raises ParseError here: without a count there is no knowing the end.
        count = len(_items(_load(result.content)))
        if count == 0 or result.content == previous:
            return  # past the end; or an API that ignores p, which would page forever
        yield Page(content=result.content, listed_on=day, url=result.url)
        if count != limit:
            return  # a short page is the last; a longer one means limit was not honoured
        previous = result.content
