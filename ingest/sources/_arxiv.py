"""Text conventions shared by arXiv's own formats (OAI-PMH, RSS, the metadata snapshot).

arXiv writes authors as one free-text string, dates as RFC-2822, and signals withdrawal only in
prose; every arXiv parser needs the same reading of those, so it lives here once.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from email.utils import parsedate_to_datetime
from typing import BinaryIO

from ingest.normalize import clean_author, find_code_url
from ingest.records import ParseError

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}


# arXiv's XML nests a handful of levels. Far deeper nesting is hostile: ElementTree's
# serializer and searches recurse, so the XML parsers stop reading there (ParseError).
MAX_XML_DEPTH = 64


def too_deep(depth: int, tag: str) -> ParseError | None:
    """The error for an element ``depth`` levels down, when that is deeper than allowed."""
    if depth <= MAX_XML_DEPTH:
        return None
    return ParseError(f"XML nested deeper than {MAX_XML_DEPTH} elements", f"element {tag}")


def as_stream(data: bytes | BinaryIO) -> BinaryIO:
    """Parsers accept bytes or an open binary file; downstream code reads a stream."""
    return io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data


def squash(text: str | None) -> str:
    """One line, single spaces: arXiv hard-wraps every field at ~80 columns."""
    return " ".join(text.split()) if text else ""


def rfc2822_date(text: str | None) -> dt.date | None:
    """``"Mon, 2 Apr 2007 19:18:42 GMT"`` -> 2007-04-02 (the date as written, no tz shift)."""
    if not text:
        return None
    # Fast path: the snapshot has millions of these, and email.utils is ~10x slower.
    parts = text.split()
    if len(parts) >= 4 and parts[2] in _MONTHS and parts[1].isdigit() and parts[3].isdigit():
        try:
            return dt.date(int(parts[3]), _MONTHS[parts[2]], int(parts[1]))
        except ValueError:
            return None
    try:
        return parsedate_to_datetime(text).date()
    except (TypeError, ValueError, IndexError):
        return None


def iso_date(text: str | None) -> dt.date | None:
    """``"2008-11-26"`` (OAI ``created``, snapshot ``update_date``) -> a date, else None."""
    try:
        return dt.date.fromisoformat(text.strip()[:10]) if text else None
    except ValueError:
        return None


def split_categories(text: str | None) -> tuple[str, ...]:
    """arXiv lists categories space-separated, the primary one first."""
    return tuple(text.split()) if text else ()


def first_doi(text: str | None) -> str:
    """arXiv's doi field may hold several (``"10.1143/A, 10.1143/B"``); the record keeps one."""
    if not text:
        return ""
    return re.split(r"[\s,;]+", text.strip(), maxsplit=1)[0]


def code_url(*texts: str | None) -> str:
    """The first repository link in the abstract or the comments."""
    text = " ".join(t for t in texts if t)
    # Most abstracts hold no link at all; a substring test is far cheaper than the regex.
    return find_code_url(text) if "://" in text else ""


# arXiv's withdrawal notice is prose: "This paper has been withdrawn by the author(s) ...",
# "Withdrawn by arXiv admin", "... has now been withdrawn". "been/is/was withdrawn" or a leading
# "withdrawn" catches those without flagging comments that merely mention a withdrawn claim.
_WITHDRAWN_COMMENT = re.compile(r"(?:^\W*|\b(?:been|is|was)\s+)withdrawn\b", re.IGNORECASE)
_WITHDRAWN_ABSTRACT = re.compile(
    r"^\W*(?:this|the)\s+(?:paper|article|submission|manuscript|preprint|work)\s+"
    r"(?:has\s+(?:now\s+)?been|is|was)\s+withdrawn\b",
    re.IGNORECASE,
)


def is_withdrawn(comments: str | None, abstract: str | None = None) -> bool:
    """True when the comments (or the abstract's first sentence) announce a withdrawal."""
    return bool(
        (comments and "withdrawn" in comments.lower() and _WITHDRAWN_COMMENT.search(comments))
        or (abstract and _WITHDRAWN_ABSTRACT.search(abstract))
    )


# Words that make a name a collaboration; when the chunk ends in the plural ("the ATLAS and CMS
# Collaborations"), its " and " is part of the name, not a separator between two authors.
_GROUP_PLURAL = re.compile(r"\b(?:collaborations|teams|groups|consortia)\s*$", re.IGNORECASE)
_AND = re.compile(r"(?:^|\s+)and\s+")
# "for the Belle Collaboration", "on behalf of the X team", "with an appendix by J.-P. Serre"
_ON_BEHALF = re.compile(
    r"^(?:(?:for|on\s+behalf\s+of)\s+(?:the\s+)?|with\s+(?:an?\s+)?\w+\s+(?:by|from)\s+)",
    re.IGNORECASE,
)
_ET_AL = re.compile(r"\s*\bet\.?\s*al\b\.?$", re.IGNORECASE)
_SUFFIX = re.compile(r"^(?:jr|sr|ii|iii|iv)\.?$", re.IGNORECASE)


def split_authors(text: str | None) -> tuple[str, ...]:
    """``"A. One (MIT), B. Two and C. Three ((1) ...)"`` -> ``("A. One", "B. Two", "C. Three")``.

    Affiliations in parentheses (inline or the numbered block at the end) are dropped, commas,
    semicolons, colons and " and " separate names, "et al." is dropped, "for the X
    Collaboration" becomes "X Collaboration" ("with an appendix by Y" becomes "Y"), and a lone
    "Jr." joins the name before it.
    """
    names: list[str] = []
    for chunk in re.split(r"[,;:]", _without_parentheses(text or "")):
        parts = [chunk] if _GROUP_PLURAL.search(chunk) else _AND.split(chunk)
        for part in parts:
            name = _ET_AL.sub("", _ON_BEHALF.sub("", part.strip())).strip()
            if _SUFFIX.match(name) and names:
                names[-1] = f"{names[-1]} {name}"
            elif is_name(name):
                names.append(name)
    return tuple(clean_author(name) for name in names)


def _without_parentheses(text: str) -> str:
    """Drop every parenthesised span, nested ones included; stray ``)`` are ignored."""
    if "(" not in text:
        return text
    out, depth = [], 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(char)
    return "".join(out)


_LETTER_OR_DIGIT = re.compile(r"[^\W_]")


def is_name(text: str) -> bool:
    """arXiv's author parser leaves punctuation-only "authors" (``<keyname>:</keyname>``)."""
    return _LETTER_OR_DIGIT.search(text) is not None
