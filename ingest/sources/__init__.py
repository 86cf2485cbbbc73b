"""One module per listing format, each with ``parse(data, *, listed_on=None)``.

``detect_format`` sniffs the first kilobytes of a payload so that ``manage.py ingest FILE``
needs no ``--format`` for any format we know.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Format name -> module. The name is also the ``source`` of the records it produces.
# Detection tries them in this order: the most specific signatures first.
FORMATS = {
    "arxiv_oai": "ingest.sources.oai_pmh",
    "arxiv_atom": "ingest.sources.arxiv_atom",
    "arxiv_rss": "ingest.sources.arxiv_rss",
    "hf_daily": "ingest.sources.hf_daily",
    "arxiv_snapshot": "ingest.sources.arxiv_snapshot",
    "hf_page": "ingest.sources.hf_page",
}


class UnknownFormat(ValueError):
    pass


def get_parser(name: str) -> ModuleType:
    try:
        return importlib.import_module(FORMATS[name])
    except KeyError:
        raise UnknownFormat(
            f"unknown format {name!r}; known: {', '.join(sorted(FORMATS))}"
        ) from None


def detect_format(head: bytes) -> str:
    """The format of a payload, from its first bytes."""
    for name in FORMATS:
        if get_parser(name).looks_like(head):
            return name
    raise UnknownFormat("cannot tell the format of this payload; pass --format")
