"""arXiv's OAI-PMH interface: ListRecords and GetRecord responses.

Two metadata formats, told apart per record by the namespace of the element inside
``<metadata>``:

* ``arXivRaw`` (``http://arxiv.org/OAI/arXivRaw/``): every version with its RFC-2822 date and
  size, authors as one free-text string.
* ``arXiv`` (``http://arxiv.org/OAI/arXiv/``): ``created`` (v1) and ``updated`` (latest) dates,
  structured ``<author><keyname><forenames><suffix>``.

A page holds up to a few thousand records, so it is streamed with ``iterparse`` and each record
is dropped from the tree once yielded. ``<header status="deleted">`` becomes ``Deleted``.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from typing import BinaryIO, NamedTuple

from ingest.http import Fetcher
from ingest.normalize import clean_abstract, clean_author, clean_title, versionless_arxiv_id
from ingest.records import (
    Deleted,
    Page,
    PaperRecord,
    ParseError,
    ParseResult,
    Rejected,
    checked,
)
from ingest.sources._arxiv import (
    as_stream,
    code_url,
    first_doi,
    is_name,
    is_withdrawn,
    iso_date,
    rfc2822_date,
    split_authors,
    split_categories,
    squash,
    too_deep,
)
from ingest.sources._params import check_keys, choice_param, date_param, text_param

SOURCE = "arxiv_oai"
DEFAULT_URL = "https://oaipmh.arxiv.org/oai"

OAI = "{http://www.openarchives.org/OAI/2.0/}"
_CONTAINERS = (f"{OAI}ListRecords", f"{OAI}GetRecord")


def parse(data: bytes | BinaryIO, *, listed_on: dt.date | None = None) -> Iterator[ParseResult]:
    """Yield one result per ``<record>``; raise ``ParseError`` where the XML breaks off."""
    container = None
    count = 0
    for event, elem in _events(data, ("start", "end")):
        if event == "start":
            if elem.tag in _CONTAINERS:
                container = elem
            continue
        if elem.tag == f"{OAI}record":
            count += 1
            yield _read_record(elem, count, listed_on)
            # Free the record: a 1,000-record page must not stay in memory as a tree. A record
            # nested where it does not belong (a broken page) is just cleared.
            elem.clear()
            if container is not None and len(container) and container[-1] is elem:
                container.remove(elem)
        elif elem.tag == f"{OAI}error":
            _raise_unless_empty(elem)
            return


def resumption_token(data: bytes) -> tuple[str | None, int | None, int | None]:
    """``(token, completeListSize, cursor)`` of a page; token None on the last page.

    The legacy service sends all three; the new one sends only the token (and ``expires``).
    """
    for _, elem in _events(data, ("end",)):
        if elem.tag == f"{OAI}resumptionToken":
            token = (elem.text or "").strip() or None
            return token, _int(elem.get("completeListSize")), _int(elem.get("cursor"))
        if elem.tag == f"{OAI}record":
            elem.clear()
        elif elem.tag == f"{OAI}error":
            _raise_unless_empty(elem)
    return None, None, None


def looks_like(head: bytes) -> bool:
    """Content sniffing for format detection: an OAI-PMH envelope near the top."""
    return b"<OAI-PMH" in head[:4096]


def _events(data: bytes | BinaryIO, events: tuple[str, ...]) -> Iterator[tuple[str, ET.Element]]:
    """``iterparse`` that checks the envelope and reports broken XML as ``ParseError``."""
    try:
        iterator = ET.iterparse(as_stream(data), events=("start", "end"))
        _, root = next(iterator)
        if root.tag != f"{OAI}OAI-PMH":
            raise ParseError(f"not an OAI-PMH response (root element {root.tag})", "line 1")
        depth = 1  # inside the root; "start" is always among the events read, and "end" too
        for event, elem in iterator:
            depth += 1 if event == "start" else -1
            if error := too_deep(depth, elem.tag):
                raise error
            if event in events:
                yield event, elem
    except LookupError as exc:  # expat on an encoding it does not know (<?xml encoding="…"?>)
        raise ParseError(f"malformed XML: {exc}", "line 1") from None
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).rsplit(": line", 1)[0]
        raise ParseError(f"malformed XML: {reason}", f"line {line}, column {column}") from None
    except StopIteration:
        raise ParseError("empty response", "line 1") from None


def _raise_unless_empty(error: ET.Element) -> None:
    """``noRecordsMatch`` is an empty harvest window, not a failure; other codes are."""
    code = error.get("code", "")
    if code != "noRecordsMatch":
        raise ParseError(f"OAI-PMH error {code}: {squash(error.text)}")


def _read_record(record: ET.Element, number: int, listed_on: dt.date | None) -> ParseResult:
    header = record.find(f"{OAI}header")
    if header is None:
        return Rejected("record has no header", _excerpt(record), f"record {number}")
    identifier = squash(header.findtext(f"{OAI}identifier"))
    if header.get("status") == "deleted":
        arxiv_id = versionless_arxiv_id(identifier)
        return Deleted(SOURCE, arxiv_id or identifier, arxiv_id)
    metadata = record.find(f"{OAI}metadata")
    if metadata is None or len(metadata) == 0:
        return Rejected("record has no metadata", _excerpt(record), f"record {number}")
    try:
        datestamp = squash(header.findtext(f"{OAI}datestamp"))
        paper = _read_metadata(metadata[0], listed_on, datestamp)
        return checked(paper, f"record {number}", lambda: _excerpt(record))
    except _Unusable as exc:
        return Rejected(str(exc), _excerpt(record), f"record {number}")


class _Unusable(Exception):
    """A record this parser cannot turn into a paper; becomes ``Rejected``."""


def _read_metadata(meta: ET.Element, listed_on: dt.date | None, datestamp: str) -> PaperRecord:
    ns, _, fmt = meta.tag.rpartition("}")
    ns += "}"
    # Format by local name, not the full tag: a hepcrawl sample has an <arXiv> that forgot its
    # xmlns and so sits in the OAI namespace.
    if fmt == "arXivRaw":
        dates = _raw_versions(meta, ns)
        authors = split_authors(meta.findtext(f"{ns}authors"))
    elif fmt == "arXiv":
        dates = _created_updated(meta, ns)
        authors = _structured_authors(meta, ns)
    else:
        raise _Unusable(f"unsupported metadata format {meta.tag}")

    def text(name: str) -> str:
        return meta.findtext(f"{ns}{name}") or ""

    arxiv_id = versionless_arxiv_id(text("id"))
    title = clean_title(text("title"))
    if not arxiv_id or not title:
        raise _Unusable("missing arXiv id or title")
    abstract = clean_abstract(text("abstract"))
    comments = squash(text("comments"))
    categories = split_categories(text("categories"))
    return PaperRecord(
        source=SOURCE,
        source_key=arxiv_id,
        title=title,
        arxiv_id=arxiv_id,
        abstract=abstract,
        authors=authors,
        published_on=dates.published_on,
        updated_on=dates.updated_on,
        listed_on=listed_on,
        primary_category=categories[0] if categories else "",
        categories=categories,
        version=dates.version,
        doi=first_doi(text("doi")),
        journal_ref=squash(text("journal-ref")),
        arxiv_comment=comments,
        withdrawn=dates.withdrawn or is_withdrawn(comments, abstract),
        code_url=code_url(abstract, comments),
        extra={"datestamp": datestamp} if datestamp else {},
    )


class _Dates(NamedTuple):
    published_on: dt.date | None
    updated_on: dt.date | None
    version: int | None
    withdrawn: bool = False


def _raw_versions(meta: ET.Element, ns: str) -> _Dates:
    """arXivRaw lists every version; a withdrawn latest version has size ``0kb``."""
    versions = [
        (_version_number(v.get("version")), rfc2822_date(v.findtext(f"{ns}date")), v)
        for v in meta.iterfind(f"{ns}version")
    ]
    if not versions:
        return _Dates(None, None, None)
    # Sort by number: the legacy service orders them as text (v1, v10, v11, v2).
    versions.sort(key=lambda version: version[0])
    latest = versions[-1]
    size = squash(latest[2].findtext(f"{ns}size"))
    return _Dates(versions[0][1], latest[1], latest[0] or len(versions), size == "0kb")


def _version_number(label: str | None) -> int:
    match = re.fullmatch(r"v(\d+)", (label or "").strip())
    return int(match.group(1)) if match else 0


def _created_updated(meta: ET.Element, ns: str) -> _Dates:
    """The arXiv format gives v1 and latest dates only: the version count is known only when
    there is no ``updated`` (then it is 1)."""
    created = iso_date(meta.findtext(f"{ns}created"))
    updated = iso_date(meta.findtext(f"{ns}updated"))
    return _Dates(created, updated or created, None if updated else 1)


def _structured_authors(meta: ET.Element, ns: str) -> tuple[str, ...]:
    names = []
    for author in meta.iterfind(f"{ns}authors/{ns}author"):
        # find() takes the first keyname: hepcrawl samples carry a duplicated <keyname>.
        keyname = squash(author.findtext(f"{ns}keyname"))
        if not is_name(keyname):
            continue  # arXiv's author splitter leaves a bogus "<keyname>:</keyname>" author
        parts = (author.findtext(f"{ns}forenames"), keyname, author.findtext(f"{ns}suffix"))
        names.append(clean_author(" ".join(squash(p) for p in parts if p and p.strip())))
    return tuple(names)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _excerpt(elem: ET.Element) -> str:
    return ET.tostring(elem, encoding="unicode")[:2000]


# --- fetching ----------------------------------------------------------------------------------


def fetch_pages(
    fetcher: Fetcher,
    url: str | None,
    params: Mapping[str, str | int],
    *,
    today: dt.date | None = None,
) -> Iterator[Page]:
    """A whole ``ListRecords`` harvest, following resumption tokens to the last page.

    Params: ``metadataPrefix`` (arXiv or arXivRaw, default arXivRaw), ``set`` (e.g. ``cs`` or
    ``physics:hep-th``), ``from`` and ``until`` (YYYY-MM-DD, "today" or "yesterday"). They are
    checked on the call; requests start on iteration.
    """
    check_keys(params, ("metadataPrefix", "set", "from", "until"), SOURCE)
    prefix = choice_param(params, "metadataPrefix", ("arXiv", "arXivRaw"), "arXivRaw")
    query = {"verb": "ListRecords", "metadataPrefix": prefix}
    if spec := text_param(params, "set"):
        query["set"] = spec
    query.update(_window(params, today or dt.date.today()))
    return _harvest(fetcher, url or DEFAULT_URL, query)


def _window(params: Mapping[str, str | int], today: dt.date) -> dict[str, str]:
    start, end = date_param(params, "from", today), date_param(params, "until", today)
    if start and end and start > end:
        raise ValueError(f"from ({start}) is after until ({end})")
    return {key: day.isoformat() for key, day in (("from", start), ("until", end)) if day}


def _harvest(fetcher: Fetcher, url: str, query: dict[str, str]) -> Iterator[Page]:
    expected = None
    tokens_seen = set()
    while True:
        # Unconditional: a 304 would hide the page's resumption token and end the harvest.
        result = fetcher.get(url, query, conditional=False)
        token, size, _ = resumption_token(result.content)
        # The legacy service states the size on every page, the new one never: keep what we know.
        expected = size if size is not None else expected
        yield Page(content=result.content, expected=expected, url=result.url)
        if not token:
            return
        if token in tokens_seen:
            raise ParseError(f"resumptionToken {token!r} came back again: the harvest loops")
        tokens_seen.add(token)
        # resumptionToken is an exclusive argument in OAI-PMH: only the verb may go with it.
        query = {"verb": "ListRecords", "resumptionToken": token}
