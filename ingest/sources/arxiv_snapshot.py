"""The arXiv metadata snapshot (Kaggle ``arxiv-metadata-oai-snapshot.json``): JSON Lines.

One compact JSON object per line, every key present (``null`` when unknown), ~2.x million
lines. The file is read line by line from a binary stream so memory stays flat, and the
per-line work is kept small because this path loads the whole of arXiv.

A line that is not a usable paper is ``Rejected`` and reading goes on. A last line that is cut
off (no newline, not valid JSON) means the file itself is truncated: that raises ``ParseError``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator, Mapping
from typing import BinaryIO

import orjson

from ingest.http import Fetcher
from ingest.normalize import clean_abstract, clean_author, clean_title, versionless_arxiv_id
from ingest.records import Page, PaperRecord, ParseError, ParseResult, Rejected, checked
from ingest.sources._arxiv import (
    as_stream,
    code_url,
    first_doi,
    is_name,
    is_withdrawn,
    rfc2822_date,
    split_authors,
    split_categories,
    squash,
)
from ingest.sources._params import check_keys

SOURCE = "arxiv_snapshot"
# The snapshot has no fixed public HTTP address (Kaggle, a GCS bucket, a mirror): a Source
# must give its url.
DEFAULT_URL: str | None = None


def parse(data: bytes | BinaryIO, *, listed_on: dt.date | None = None) -> Iterator[ParseResult]:
    """Yield one result per non-blank line; ``listed_on`` is passed through (the snapshot has
    no listing day of its own)."""
    for number, line in enumerate(as_stream(data), 1):
        if not line.strip():
            continue
        try:
            obj = _loads(line)
        except RecursionError:
            yield Rejected("invalid JSON: nested too deeply", _excerpt(line), f"line {number}")
            continue
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            if not line.endswith(b"\n"):
                # Only the last line of a file can lack its newline: the file was cut here.
                raise ParseError(f"truncated last line: {exc}", f"line {number}") from None
            yield Rejected(f"invalid JSON: {exc}", _excerpt(line), f"line {number}")
            continue
        yield _read_line(obj, line, number, listed_on)


def _loads(line: bytes) -> object:
    """One line's JSON: orjson's where it reads it (2.7 µs a line against the standard
    library's 6.6, of the ~50 µs a line's parse costs), else the standard library's: its
    reading of what orjson refuses (a lone surrogate escape, NaN, a deep nest) and its errors,
    which the rejections are made of. (orjson reads an integer past 64 bits as a float: such
    a count is then no count.)"""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


def looks_like(head: bytes) -> bool:
    """Content sniffing for format detection: a JSON object with the snapshot's own keys."""
    start = head.lstrip()[:4096]
    return start.startswith(b"{") and b'"authors_parsed"' in start and b'"versions"' in start


def _read_line(obj: object, line: bytes, number: int, listed_on: dt.date | None) -> ParseResult:
    if not isinstance(obj, dict):
        return Rejected("line is not a JSON object", _excerpt(line), f"line {number}")
    try:
        return checked(_paper(obj, listed_on), f"line {number}", lambda: _excerpt(line))
    except _Unusable as exc:
        return Rejected(str(exc), _excerpt(line), f"line {number}")
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
        # A field of an unexpected type (a number for a string, a dict for a list ...).
        return Rejected(f"unexpected field shape: {exc!r}", _excerpt(line), f"line {number}")


class _Unusable(Exception):
    """A line that cannot become a paper; becomes ``Rejected``."""


def _paper(obj: dict, listed_on: dt.date | None) -> PaperRecord:
    arxiv_id = versionless_arxiv_id(obj.get("id") or "")
    title = clean_title(obj.get("title") or "")
    if not arxiv_id or not title:
        raise _Unusable("missing arXiv id or title")
    abstract = clean_abstract(obj.get("abstract") or "")
    comments = squash(obj.get("comments"))
    categories = split_categories(obj.get("categories"))
    first, latest, version = _versions(obj.get("versions") or ())
    update_date = obj.get("update_date")
    return PaperRecord(
        source=SOURCE,
        source_key=arxiv_id,
        title=title,
        arxiv_id=arxiv_id,
        abstract=abstract,
        authors=_authors(obj),
        published_on=first,
        # The latest version's date, as the other arXiv sources give it; ``update_date`` is
        # the last *metadata* change (a journal ref added years later), kept as the datestamp.
        updated_on=latest,
        listed_on=listed_on,
        primary_category=categories[0] if categories else "",
        categories=categories,
        version=version,
        doi=first_doi(obj.get("doi")),
        journal_ref=squash(obj.get("journal-ref")),
        arxiv_comment=comments,
        withdrawn=is_withdrawn(comments, abstract),
        code_url=code_url(abstract, comments),
        # Not in arXiv's own snapshot: generated corpora (tests.bench.corpus) and merged dumps
        # carry popularity in these optional keys.
        upvotes=_count(obj.get("upvotes")),
        github_stars=_count(obj.get("github_stars")),
        extra={"datestamp": update_date} if update_date else {},
    )


def _count(value) -> int | None:
    """A non-negative integer, or None when absent or not a count."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _versions(versions) -> tuple[dt.date | None, dt.date | None, int | None]:
    """(v1 date, latest version date, latest version number) from ``[{version, created}]``."""
    if not versions:
        return None, None, None
    if len(versions) > 9:
        # Ten or more versions: don't trust the order (arXiv's OAI sorted them as text).
        versions = sorted(versions, key=lambda v: int(v["version"].lstrip("v") or 0))
    first, latest = versions[0], versions[-1]
    number = int(latest["version"].lstrip("v") or 0) or len(versions)
    return rfc2822_date(first["created"]), rfc2822_date(latest["created"]), number


def _authors(obj: dict) -> tuple[str, ...]:
    """``authors_parsed`` entries are ``[last, first, suffix]`` (a 4th, the affiliation, is
    ignored), accents mostly decoded already; the raw string is the fallback."""
    parsed = obj.get("authors_parsed")
    if not parsed:
        return split_authors(obj.get("authors"))
    names = (_author_name(tuple(entry[:3])) for entry in parsed)
    return tuple(name for name in names if name)


@functools.lru_cache(maxsize=65536)  # names recur across papers (a prolific author's hundreds)
def _author_name(entry: tuple) -> str:
    """One ``authors_parsed`` entry as "First Last Suffix", or "" when it is no name."""
    last, first, suffix = (*entry, "", "", "")[:3]
    if not is_name(last or ""):
        return ""
    return clean_author(" ".join(part for part in (first, last, suffix) if part))


def _excerpt(line: bytes) -> str:
    return line[:2000].decode("utf-8", errors="replace").rstrip("\n")


# --- fetching ----------------------------------------------------------------------------------


def fetch_pages(
    fetcher: Fetcher,
    url: str | None,
    params: Mapping[str, str | int],
    *,
    today: dt.date | None = None,
) -> Iterator[Page]:
    """The whole snapshot as one page in a temporary file (GBs: never held in memory), or no
    page when it has not changed since last downloaded. No params; ``url`` is required."""
    check_keys(params, (), SOURCE)
    if not url:
        raise ValueError("arxiv_snapshot needs a url: the snapshot has no fixed address")
    return _download(fetcher, url)


def _download(fetcher: Fetcher, url: str) -> Iterator[Page]:
    # Conditional: the snapshot changes weekly, so an unchanged one costs a 304, not GBs.
    # The one listing that is legitimately GBs: it may use the larger download limit.
    result = fetcher.download(url, suffix=".jsonl", max_bytes=fetcher.max_download_bytes)
    if not result.not_modified:
        yield Page(path=result.path, url=result.url)
