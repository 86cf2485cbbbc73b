"""Where papers come from, by name: the listing formats that sightings and runs record as codes.

A sighting stores the code of the format that saw the paper (``ingest.sources.FORMATS``: the
catalogue never imports ingest, so the names live here; a test checks that every format has
one). Readers and staff see the name; the code stays in URLs and filters.
"""

from __future__ import annotations

SOURCE_NAMES = {
    "hf_page": "Hugging Face Papers page",
    "hf_daily": "Hugging Face Daily Papers",
    "arxiv_atom": "arXiv API",
    "arxiv_oai": "arXiv OAI-PMH",
    "arxiv_rss": "arXiv RSS",
    "arxiv_snapshot": "arXiv metadata snapshot",
}


def source_name(code: str) -> str:
    """The name of a source code; an unknown code (a format added since) is shown as is."""
    return SOURCE_NAMES.get(code, code)
