"""The one shape every parser produces, and what it yields instead when a record is unusable.

Parsers are pure: bytes in, an iterator of these out. They never touch the database and never
raise on one bad record (they yield ``Rejected`` and go on). A file that cannot be read any
further (truncated XML, invalid JSON framing) raises ``ParseError`` with the position, so the
run fails loudly while the batches already written stay written.
"""

from __future__ import annotations

import datetime as dt
import pathlib
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
        if len(self.raw) > 2000:
            object.__setattr__(self, "raw", self.raw[:2000] + "…")


class ParseError(Exception):
    """The payload cannot be read any further (truncated or not this format at all)."""

    def __init__(self, message: str, position: str = ""):
        super().__init__(f"{message} (at {position})" if position else message)
        self.position = position


ParseResult = PaperRecord | Deleted | Rejected


@dataclass(frozen=True, slots=True)
class Page:
    """One fetched payload of a listing, ready for the format's parse()."""

    content: bytes = field(default=b"", repr=False)
    path: pathlib.Path | None = None  # large downloads land in a temporary file the caller deletes
    listed_on: dt.date | None = None  # pass to parse(listed_on=...)
    expected: int | None = None  # records the source announces (totalResults...), for progress
    url: str = ""
