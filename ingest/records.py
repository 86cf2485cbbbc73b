"""The one shape every parser produces, and what it yields instead when a record is unusable.

Parsers are pure: bytes in, an iterator of these out. They never touch the database and never
raise on one bad record (they yield ``Rejected`` and go on). A file that cannot be read any
further (truncated XML, invalid JSON framing) raises ``ParseError`` with the position, after
yielding every complete record before it, so the run fails loudly while the batches already
written stay written.

Every record a parser yields is storable (``checked``): PostgreSQL text cannot hold a NUL
character or a lone surrogate (from a ``"\\ud800"`` JSON escape or undecodable bytes), and the
columns have lengths and ranges. Such a record is rejected with the field named, never
"cleaned" into a different paper; a rejection's own excerpt is escaped so that it stores.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PaperRecord:
    """One paper as one listing saw it. ``None`` means "this listing does not say"."""

    source: str  # the format that produced it, e.g. "hf_page", "hf_daily", "arxiv_atom"
    source_key: str  # stable key within that source (arXiv id, or a title slug for id-less cards)
    title: str
    arxiv_id: str | None = None  # versionless: "2401.01234" or "hep-th/9901001"
    abstract: str = ""
    authors: tuple[str, ...] = ()
    author_count: int | None = None  # when a listing gives a count but not the names
    published_on: dt.date | None = None  # first public version (arXiv v1)
    updated_on: dt.date | None = None  # latest version
    listed_on: dt.date | None = None  # the day this listing showed the paper
    upvotes: int | None = None
    comments: int | None = None
    github_stars: int | None = None
    code_url: str = ""
    project_url: str = ""
    primary_category: str = ""
    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    version: int | None = None  # number of the latest arXiv version seen
    doi: str = ""
    journal_ref: str = ""
    arxiv_comment: str = ""
    withdrawn: bool = False
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def natural_key(self) -> str:
        """The upsert key: the arXiv id when known, else source + source key."""
        return self.arxiv_id or f"{self.source}:{self.source_key}"


@dataclass(frozen=True, slots=True)
class Deleted:
    """A listing says this record no longer exists (OAI-PMH ``status="deleted"``)."""

    source: str
    source_key: str
    arxiv_id: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot become a paper, with why and an excerpt of what it was."""

    reason: str
    raw: str = ""
    position: str = ""  # "line 12", "record 7", "entry 3": where in the payload

    def __post_init__(self):
        # Keep rejections small enough to store: an excerpt is enough to find the record.
        raw = self.raw if len(self.raw) <= 2000 else self.raw[:2000] + "…"
        object.__setattr__(self, "raw", storable_text(raw))
        object.__setattr__(self, "reason", storable_text(self.reason)[:2000])
        object.__setattr__(self, "position", storable_text(self.position)[:100])


class ParseError(Exception):
    """The payload cannot be read any further (truncated or not this format at all)."""

    def __init__(self, message: str, position: str = ""):
        super().__init__(f"{message} (at {position})" if position else message)
        self.position = position


ParseResult = PaperRecord | Deleted | Rejected


# --- what PostgreSQL can store ---------------------------------------------------------------

# The Paper columns' limits (catalogue.models.Paper; tests/ingest/test_records.py checks that
# they agree): a longer value or a larger count would fail the whole batch's INSERT.
MAX_LENGTHS = {
    "arxiv_id": 32,
    "source_key": 300,
    "code_url": 500,
    "project_url": 500,
    "primary_category": 40,
    "categories": 40,
    "doi": 200,
}
_INT_MAX = 2**31 - 1
INT_RANGES = {
    "author_count": (0, _INT_MAX),
    "upvotes": (0, _INT_MAX),
    "comments": (0, _INT_MAX),
    "github_stars": (0, _INT_MAX),
    "version": (0, 2**15 - 1),
}
_TEXT_FIELDS = (
    "source", "source_key", "title", "arxiv_id", "abstract", "authors", "code_url",
    "project_url", "primary_category", "categories", "keywords", "doi", "journal_ref",
    "arxiv_comment",
)  # fmt: skip
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable_text(text: str) -> str:
    """``text`` with NULs and lone surrogates written as escapes (``\\x00``, ``\\udc80``):
    for excerpts and messages, which must store whatever the payload held."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if _SURROGATE.search(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def text_problem(text: str) -> str | None:
    """Why PostgreSQL text cannot hold ``text``, or None."""
    if "\x00" in text:
        return "contains a NUL character"
    if _SURROGATE.search(text):
        return "contains a lone surrogate (undecodable bytes or a bad \\u escape)"
    return None


def unstorable_reason(record: PaperRecord) -> str | None:
    """Why ``record`` cannot be stored as it is, naming the field; None when it can.

    This runs for each record of a 2-million-line snapshot, nearly all of them fine, so the
    common case is a few passes over the record as a whole (~10 µs; field by field ~20 µs).
    """
    if not record.title.strip():
        return "missing title"
    if not record.source_key.strip():
        return "missing source key (nothing in the record to tell it apart)"
    if not _all_text_storable(record):
        return _text_field_problem(record)
    for name, length in zip(MAX_LENGTHS, _lengths(record), strict=True):
        if length > MAX_LENGTHS[name]:
            return f"{name} is longer than {MAX_LENGTHS[name]} characters"
    for name, (low, high) in INT_RANGES.items():
        value = getattr(record, name)
        if value is not None and not low <= value <= high:
            return f"{name} {value} is out of range ({low} to {high})"
    return None


def _texts(value) -> tuple:
    return value if isinstance(value, tuple) else (value or "",)


def _all_text_storable(record: PaperRecord) -> bool:
    r = record
    try:
        # Every field of _TEXT_FIELDS, spelled out: a generator over them costs three times as much.
        joined = "".join(
            (r.source, r.source_key, r.title, r.arxiv_id or "", r.abstract, *r.authors,
             r.code_url, r.project_url, r.primary_category, *r.categories, *r.keywords, r.doi,
             r.journal_ref, r.arxiv_comment)
        )  # fmt: skip
        joined.encode("utf-8")  # a lone surrogate cannot be encoded
    except (TypeError, UnicodeEncodeError):
        return False
    return "\x00" not in joined


def _lengths(r: PaperRecord) -> tuple[int, ...]:
    """The lengths of the MAX_LENGTHS fields, in its order (of categories, the longest)."""
    longest_category = max(map(len, r.categories), default=0)
    return (
        len(r.arxiv_id or ""), len(r.source_key), len(r.code_url), len(r.project_url),
        len(r.primary_category), longest_category, len(r.doi),
    )  # fmt: skip


def _text_field_problem(record: PaperRecord) -> str:
    for name in _TEXT_FIELDS:
        for text in _texts(getattr(record, name)):
            if not isinstance(text, str):
                return f"{name} holds a {type(text).__name__}, not text"
            if problem := text_problem(text):
                return f"{problem} in {name}"
    raise AssertionError("called for a record whose text is storable")


def checked(
    record: PaperRecord, position: str, excerpt: Callable[[], str]
) -> PaperRecord | Rejected:
    """``record`` if it can be stored, else its rejection with the reason and ``excerpt()``
    (called only then: most records are fine and an excerpt costs a serialisation)."""
    problem = unstorable_reason(record)
    return record if problem is None else Rejected(problem, excerpt(), position)


@dataclass(frozen=True, slots=True)
class Page:
    """One fetched payload of a listing, ready for the format's parse()."""

    content: bytes = field(default=b"", repr=False)
    path: pathlib.Path | None = None  # large downloads land in a temporary file the caller deletes
    listed_on: dt.date | None = None  # pass to parse(listed_on=...)
    expected: int | None = None  # records the source announces (totalResults...), for progress
    url: str = ""
