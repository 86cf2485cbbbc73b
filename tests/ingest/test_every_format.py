"""Every recorded payload in tests/data/formats ingests with the counts its README implies.

Formats are detected from content (no --format), nothing is rejected unless the data is really
unusable, and a second ingest of any file creates nothing.
"""

import json
import re

import pytest

from catalogue.models import Paper
from ingest.models import IngestRun
from ingest.runner import create_run, execute_run
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.django_db

FORMATS = DATA_DIR / "formats"


def count_entries(path) -> int:
    return len(re.findall(rb"<entry>", path.read_bytes()))


def hf_items(path) -> int:
    data = json.loads(path.read_bytes())
    return len(data) if isinstance(data, list) else 1


# One daily file per schema era; the directory holds 152 days (the search benchmark's corpus),
# and ingesting each twice would double this module's time for no new shape.
HF_DAILY_SAMPLE = [
    "2024-05-27.json",
    "2024-06-17.json",
    "2024-06-21.json",
    "2025-03-03.json",
    "2025-03-14.json",
    "2025-05-19.json",
    "2026-08-21.json",
]

# (file, detected format, papers it holds). Counts come from the files themselves (entries,
# records, items) as the formats README describes them, not from our parsers.
CASES = [
    *[
        (p.relative_to(FORMATS), "arxiv_atom", count_entries(p))
        for p in sorted((FORMATS / "arxiv_api" / "xml").glob("*.xml"))
        if "id_abc" not in p.name
    ],
    ("arxiv_api/legacy_2019-08-10_all-science_m10.xml", "arxiv_atom", 10),
    (
        "arxiv_oai_pmh/arXivRaw_ListRecords_2014-01-16_scirate_resumption-496549-96001.xml",
        "arxiv_oai",
        1000,
    ),
    ("arxiv_oai_pmh/arXiv_hepcrawl_arxiv-physics-hep-ex.xml", "arxiv_oai", 3),
    ("arxiv_oai_pmh/arXiv_hepcrawl_arxiv-physics-hep-th.xml", "arxiv_oai", 3),
    ("arxiv_oai_pmh/arXiv_hepcrawl_arxiv-single.xml", "arxiv_oai", 1),
    ("arxiv_oai_pmh/arXiv_hepcrawl_sample_arxiv_record.xml", "arxiv_oai", 12),
    ("arxiv_oai_pmh/arXiv_hepcrawl_sample_arxiv_record4.xml", "arxiv_oai", 1),
    ("arxiv_rss/rss_quant-ph_2025-04-28.xml", "arxiv_rss", 81),
    ("arxiv_rss/rss_physics_2025-12-31_EMPTY_holiday.xml", "arxiv_rss", 0),
    ("kaggle_arxiv_snapshot/arxiv-metadata-oai-snapshot_head200.jsonl", "arxiv_snapshot", 200),
    *[
        (p.relative_to(FORMATS), "hf_daily", hf_items(p))
        for p in [
            *(FORMATS / "hf_daily_papers/daily" / name for name in HF_DAILY_SAMPLE),
            *sorted((FORMATS / "hf_daily_papers/other_endpoints").glob("*.json")),
        ]
    ],
]


def ingest(path) -> IngestRun:
    return execute_run(create_run(str(path)))


@pytest.mark.parametrize(("name", "fmt", "papers"), CASES, ids=[str(c[0]) for c in CASES])
def test_file_ingests_fully_and_a_second_time_creates_nothing(name, fmt, papers):
    path = FORMATS / name
    first = ingest(path)
    assert (first.format, first.status, first.error) == (fmt, IngestRun.Status.SUCCEEDED, "")
    assert (first.seen, first.created, first.rejected) == (papers, papers, 0)
    assert Paper.objects.count() == papers

    second = ingest(path)
    assert (second.status, second.created, second.updated) == (IngestRun.Status.SUCCEEDED, 0, 0)
    assert second.unchanged == papers
    assert Paper.objects.count() == papers


def test_arxiv_error_feed_fails_the_run_with_arxivs_message():
    run = ingest(FORMATS / "arxiv_api/xml/id_abc_s0_m100_b79c8dcf6bc3.xml")
    assert run.status == IngestRun.Status.FAILED
    assert "incorrect id format for abc" in run.error
    assert not Paper.objects.exists()


def test_one_paper_from_hf_and_arxiv_is_one_row(tmp_path):
    ingest(FORMATS / "hf_daily_papers/other_endpoints/api_papers_2608.09888_fastpaper-cli.json")
    hf = Paper.objects.get()
    # The same paper as the arXiv metadata snapshot describes it.
    line = {
        "id": "2608.09888",
        "title": hf.title,
        "abstract": hf.abstract,
        "authors": ", ".join(hf.authors),
        "authors_parsed": [
            [name.split()[-1], " ".join(name.split()[:-1]), ""] for name in hf.authors
        ],
        "categories": "cs.LG cs.AI",
        "versions": [
            {"version": "v1", "created": "Mon, 10 Aug 2026 17:00:00 GMT"},
            {"version": "v2", "created": "Tue, 18 Aug 2026 09:00:00 GMT"},
        ],
        "update_date": "2026-08-18",
        "comments": None,
        "journal-ref": None,
        "doi": None,
        "submitter": "Someone",
    }
    snapshot = tmp_path / "snapshot.jsonl"
    snapshot.write_text(json.dumps(line) + "\n")
    run = ingest(snapshot)
    assert (run.created, run.updated) == (0, 1)

    paper = Paper.objects.get()
    assert sorted(paper.sightings.values_list("source", flat=True)) == [
        "arxiv_snapshot",
        "hf_daily",
    ]
    assert paper.upvotes == hf.upvotes > 0  # popularity from HF
    assert paper.categories == ["cs.LG", "cs.AI"]  # categories and versions from arXiv
    assert paper.version == 2
