"""arXiv's search API (``export.arxiv.org/api/query``): an Atom 1.0 feed, one ``<entry>`` a paper.

Both layouts read the same way: the current one (2025+: namespaces declared on ``<feed>``,
one-line titles, ``https`` links) and the legacy one (namespaces declared inline on each
element, arXiv's hard wraps kept, ``-04:00`` feed dates). Element names and namespace URIs are
the same in both, so ElementTree sees no difference.

A failed query is still a feed: HTTP 400 with one entry titled ``Error`` whose id is under
``https://arxiv.org/api/errors``. That raises ``ParseError``; it is not a paper.

The feed is fed to the XML parser in chunks and each entry is dropped once yielded, so a
2,000-entry page never sits in memory as a tree. The stdlib parser is enough here: expat
(2.4+) refuses entity-expansion bombs and ElementTree never fetches external entities.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from ingest.http import Fetcher
from ingest.normalize import (
    clean_abstract,
    clean_author,
    clean_title,
    collapse_whitespace,
    is_arxiv_category,
    parse_date,
    split_arxiv_id,
)
from ingest.records import Page, PaperRecord, ParseError, ParseResult, Rejected, checked
from ingest.sources._arxiv import as_stream, code_url, first_doi, is_withdrawn, too_deep
from ingest.sources._params import check_keys, choice_param, int_param, text_param

SOURCE = "arxiv_atom"
DEFAULT_URL = "https://export.arxiv.org/api/query"
# Limits from the API manual: 2,000 results per call, and nothing past the 30,000th.
_MAX_PAGE_SIZE = 2000
_MAX_TOTAL = 30000
_PARAMS = ("search_query", "id_list", "sortBy", "sortOrder", "page_size", "max_total")

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
_ERROR_ID = "arxiv.org/api/errors"
_CHUNK = 64 * 1024


def parse(data: bytes | BinaryIO, *, listed_on: dt.date | None = None) -> Iterator[ParseResult]:
    """Yield one result per ``<entry>``; raise ``ParseError`` for an error feed or broken XML."""
    feed = None
    number = 0
    for event, elem in _events(data):
        if event == "start":
            feed = feed if feed is not None else elem
            continue
        if elem.tag != f"{ATOM}entry":
            continue
        number += 1
        _raise_if_error(elem, number)
        yield _read_entry(elem, f"entry {number}", listed_on)
        # Free the entry: only the feed's own small elements stay in the tree. At its end
        # event an entry is the feed's last child (a stray nested one is just cleared).
        elem.clear()
        if len(feed) and feed[-1] is elem:
            feed.remove(elem)


def page_info(data: bytes | BinaryIO) -> tuple[int, int, int]:
    """``(total_results, start_index, items_per_page)`` from the feed's opensearch elements."""
    wanted = {
        f"{OPENSEARCH}{name}": name for name in ("totalResults", "startIndex", "itemsPerPage")
    }
    found: dict[str, int] = {}
    for event, elem in _events(data):
        # The opensearch elements precede the entries: stop reading at the first entry.
        if elem.tag == f"{ATOM}entry" or len(found) == len(wanted):
            break
        if event == "end" and elem.tag in wanted:
            found[wanted[elem.tag]] = _page_number(elem)
    missing = [name for name in wanted.values() if name not in found]
    if missing:
        raise ParseError(f"no opensearch:{missing[0]} in the feed", "feed")
    return found["totalResults"], found["startIndex"], found["itemsPerPage"]


def looks_like(head: bytes) -> bool:
    """Content sniffing: an Atom feed from the arXiv API (not arXiv's Atom listing feeds)."""
    return (
        b"<feed" in head
        and b"http://www.w3.org/2005/Atom" in head
        and (b"opensearch" in head or b"arxiv.org/api" in head)
    )


def _events(data: bytes | BinaryIO) -> Iterator[tuple[str, ET.Element]]:
    """Parse events, chunk by chunk; the root must be an Atom ``<feed>``."""
    parser = ET.XMLPullParser(("start", "end"))
    stream = as_stream(data)
    depth = 0
    try:
        while True:
            chunk = stream.read(_CHUNK)
            if chunk:
                parser.feed(chunk)
            else:
                parser.close()
            for event, elem in parser.read_events():
                if event == "start":
                    if depth == 0:
                        _check_root(elem)
                    depth += 1
                    if error := too_deep(depth, elem.tag):
                        raise error
                else:
                    depth -= 1
                yield event, elem
            if not chunk:
                return
    except LookupError as exc:  # expat on an encoding it does not know (<?xml encoding="…"?>)
        raise ParseError(f"malformed XML: {exc}", "line 1") from None
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":")[0]
        raise ParseError(f"malformed XML: {reason}", f"line {line}, column {column}") from None


def _check_root(elem: ET.Element) -> None:
    if elem.tag != f"{ATOM}feed":
        raise ParseError(f"not an Atom feed (root element {elem.tag})", "line 1")


def _raise_if_error(entry: ET.Element, number: int) -> None:
    """An error is reported as an entry; the feed's entry count cannot tell it apart."""
    entry_id = _text(entry, "id")
    title = _text(entry, "title")
    if _ERROR_ID in entry_id or (title == "Error" and split_arxiv_id(entry_id) is None):
        message = collapse_whitespace(_text(entry, "summary")) or entry_id
        raise ParseError(f"arXiv API error: {message}", f"entry {number}")


def _page_number(elem: ET.Element) -> int:
    try:
        return int((elem.text or "").strip())
    except ValueError:
        raise ParseError(f"{elem.tag} is not a number: {elem.text!r}", "feed") from None


def _read_entry(entry: ET.Element, position: str, listed_on: dt.date | None) -> ParseResult:
    raw_id = _text(entry, "id")
    parts = split_arxiv_id(raw_id)
    if parts is None:
        return Rejected(f"not an arXiv id: {raw_id!r}", _excerpt(entry), position)
    title = clean_title(_text(entry, "title"))
    if not title:
        return Rejected("missing title", _excerpt(entry), position)
    record = _record(entry, parts, title, listed_on)
    return checked(record, position, lambda: _excerpt(entry))


def _record(
    entry: ET.Element, parts: tuple[str, int | None], title: str, listed_on: dt.date | None
) -> PaperRecord:
    arxiv_id, version = parts
    summary = _text(entry, "summary")
    comment = collapse_whitespace(_text(entry, "comment", ARXIV))
    primary = _primary_category(entry)
    names, affiliations = _authors(entry)
    return PaperRecord(
        source=SOURCE,
        source_key=arxiv_id,
        arxiv_id=arxiv_id,
        title=title,
        abstract=clean_abstract(summary),
        authors=names,
        published_on=parse_date(_text(entry, "published")),
        updated_on=parse_date(_text(entry, "updated")),
        listed_on=listed_on,
        version=version,
        primary_category=primary,
        categories=_categories(entry, primary),
        doi=first_doi(_text(entry, "doi", ARXIV)),
        journal_ref=collapse_whitespace(_text(entry, "journal_ref", ARXIV)),
        arxiv_comment=comment,
        code_url=code_url(summary, comment),
        withdrawn=is_withdrawn(comment, summary.strip()),
        extra=_extra(entry, affiliations),
    )


def _primary_category(entry: ET.Element) -> str:
    elem = entry.find(f"{ARXIV}primary_category")
    term = (elem.get("term") or "").strip() if elem is not None else ""
    return term if is_arxiv_category(term) else ""


def _categories(entry: ET.Element, primary: str) -> tuple[str, ...]:
    """Real arXiv categories, primary first (as in every other arXiv format)."""
    terms = [term for term in _category_terms(entry) if is_arxiv_category(term)]
    ordered = [primary] if primary else []
    return tuple(dict.fromkeys(ordered + terms))


def _category_terms(entry: ET.Element) -> list[str]:
    return [(c.get("term") or "").strip() for c in entry.findall(f"{ATOM}category")]


def _authors(entry: ET.Element) -> tuple[tuple[str, ...], dict[str, list[str]]]:
    names: list[str] = []
    affiliations: dict[str, list[str]] = {}
    for author in entry.findall(f"{ATOM}author"):
        name = clean_author(_text(author, "name"))
        if not name:
            continue
        names.append(name)
        places = [collapse_whitespace(a.text or "") for a in author.findall(f"{ARXIV}affiliation")]
        if any(places):
            affiliations[name] = [p for p in places if p]
    return tuple(names), affiliations


def _extra(entry: ET.Element, affiliations: dict[str, list[str]]) -> dict:
    """Affiliations, and the MSC/ACM class strings arXiv mixes into <category>."""
    extra: dict = {}
    if affiliations:
        extra["affiliations"] = affiliations
    classes = [t for t in _category_terms(entry) if t and not is_arxiv_category(t)]
    if classes:
        extra["classifications"] = classes
    return extra


def _text(parent: ET.Element, name: str, namespace: str = ATOM) -> str:
    return parent.findtext(f"{namespace}{name}") or ""


def _excerpt(entry: ET.Element) -> str:
    return ET.tostring(entry, encoding="unicode")[:500]


# --- fetching ----------------------------------------------------------------------------------


def fetch_pages(
    fetcher: Fetcher,
    url: str | None,
    params: Mapping[str, str | int],
    *,
    today: dt.date | None = None,
) -> Iterator[Page]:
    """The pages of one search, ``start=0, page_size, …``, up to ``max_total`` results.

    Params: ``search_query`` and/or ``id_list`` (at least one), ``sortBy`` (relevance,
    lastUpdatedDate, submittedDate), ``sortOrder`` (ascending, descending), ``page_size``
    (default 100, at most 2,000), ``max_total`` (default 1,000, at most 30,000). They are
    checked on the call; requests start on iteration.
    """
    check_keys(params, _PARAMS, SOURCE)
    query = {key: text_param(params, key) for key in ("search_query", "id_list")}
    query = {key: value for key, value in query.items() if value}
    if not query:
        raise ValueError("arxiv_atom needs a search_query or an id_list param")
    sorting = {
        "sortBy": choice_param(params, "sortBy", ("relevance", "lastUpdatedDate", "submittedDate")),
        "sortOrder": choice_param(params, "sortOrder", ("ascending", "descending")),
    }
    query.update({key: value for key, value in sorting.items() if value})
    page_size = int_param(params, "page_size", 100, 1, _MAX_PAGE_SIZE)
    max_total = int_param(params, "max_total", 1000, 1, _MAX_TOTAL)
    return _search_pages(fetcher, url or DEFAULT_URL, query, page_size, max_total)


def _search_pages(
    fetcher: Fetcher, url: str, query: dict[str, str], page_size: int, max_total: int
) -> Iterator[Page]:
    start = 0
    while start < max_total:
        size = min(page_size, max_total - start)
        # Unconditional: a 304 would leave this page's records and the paging count unknown.
        result = fetcher.get(url, {**query, "start": start, "max_results": size}, conditional=False)
        total, _, _ = page_info(result.content)
        entries = _count_entries(result.content)
        if entries == 0:
            return  # past the end (or arXiv's occasional empty page: nothing to page on from)
        yield Page(content=result.content, expected=min(total, max_total), url=result.url)
        # Go on from what came back, not what was asked: a short page then skips nothing.
        start += entries
        if start >= total:
            return


def _count_entries(data: bytes) -> int:
    count = 0
    for event, elem in _events(data):
        if event == "end" and elem.tag == f"{ATOM}entry":
            count += 1
            elem.clear()  # only the number matters
    return count
