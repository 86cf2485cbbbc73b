"""What every parser promises, as helpers the truncation and fuzz tests share."""

from __future__ import annotations

from pathlib import Path

from ingest.normalize import split_arxiv_id
from ingest.records import (
    Deleted,
    PaperRecord,
    ParseError,
    Rejected,
    text_problem,
    unstorable_reason,
)
from ingest.sources import get_parser

FORMATS_DIR = Path(__file__).resolve().parent.parent / "data" / "formats"
SEED = Path(__file__).resolve().parent.parent / "data" / "seed" / "hf-papers-search-listing.txt"

# One or more recorded real payloads of every format (the small ones, so that a fuzz example
# costs milliseconds); FORMATS in ingest/sources lists the formats, and a test checks that
# every one is here.
SAMPLES = {
    "hf_daily": [
        FORMATS_DIR / "hf_daily_papers/daily/2025-03-03.json",
        FORMATS_DIR / "hf_daily_papers/daily/2024-05-27.json",
        *sorted((FORMATS_DIR / "hf_daily_papers/other_endpoints").glob("api_papers_2608*.json")),
    ],
    "hf_page": [SEED],
    "arxiv_atom": [
        FORMATS_DIR / "arxiv_api/xml/q_testing_s5_m10_c0e94a259d4a.xml",
        FORMATS_DIR / "arxiv_api/legacy_2019-08-10_all-science_m10.xml",
    ],
    "arxiv_rss": [FORMATS_DIR / "arxiv_rss/rss_quant-ph_2025-04-28.xml"],
    "arxiv_oai": [
        FORMATS_DIR / "arxiv_oai_pmh/arXiv_hepcrawl_arxiv-physics-hep-th.xml",
        FORMATS_DIR / "arxiv_oai_pmh/arXiv_hepcrawl_sample_arxiv_record.xml",
    ],
    "arxiv_snapshot": [
        FORMATS_DIR / "kaggle_arxiv_snapshot/arxiv-metadata-oai-snapshot_head200.jsonl"
    ],
}


def read_all(fmt: str, data: bytes) -> tuple[list, ParseError | None]:
    """Everything ``parse`` yields before it stops, and the ParseError it stopped with.

    Any other exception escapes: that is the failure these tests look for.
    """
    results = []
    try:
        for result in get_parser(fmt).parse(data):
            results.append(result)
    except ParseError as error:
        return results, error
    return results, None


def problem_with(fmt: str, result) -> str | None:
    """Why ``result`` is not a complete record or rejection of ``fmt``; None when it is.

    Complete: a PaperRecord of this source with a key, a title and every field storable (no
    NUL, no lone surrogate, within the columns' sizes), an arXiv id only if it is a versionless
    one, links only http(s); a Deleted with a key; a Rejected with a reason, all storable.
    """
    if isinstance(result, PaperRecord):
        if result.source != fmt or not result.source_key:
            return f"record of source {result.source!r} with key {result.source_key!r}"
        if reason := unstorable_reason(result):
            return f"unstorable record: {reason}"
        if result.arxiv_id and split_arxiv_id(result.arxiv_id) != (result.arxiv_id, None):
            return f"not a versionless arXiv id: {result.arxiv_id!r}"
        for link in (result.code_url, result.project_url):
            if link and not link.startswith(("http://", "https://")):
                return f"link that is not http(s): {link!r}"
        return None
    if isinstance(result, Deleted):
        return None if result.source_key else "deletion without a key"
    if isinstance(result, Rejected):
        if not result.reason:
            return "rejection without a reason"
        texts = (result.reason, result.raw, result.position)
        return next((f"unstorable rejection: {p}" for t in texts if (p := text_problem(t))), None)
    return f"not a parse result: {result!r}"


def load(path: Path) -> bytes:
    return path.read_bytes()
