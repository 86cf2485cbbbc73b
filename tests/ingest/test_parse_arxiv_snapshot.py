"""The metadata-snapshot parser against the first 200 real lines of the Kaggle snapshot."""

import datetime as dt
import io
from pathlib import Path

import pytest

from ingest.records import PaperRecord, ParseError, Rejected
from ingest.sources import arxiv_snapshot

SNAPSHOT = (
    Path(__file__).resolve().parents[1]
    / "data"
    / "formats"
    / "kaggle_arxiv_snapshot"
    / "arxiv-metadata-oai-snapshot_head200.jsonl"
)


def lines() -> list[bytes]:
    return SNAPSHOT.read_bytes().splitlines(keepends=True)


@pytest.fixture(scope="module")
def papers() -> dict[str, PaperRecord]:
    with open(SNAPSHOT, "rb") as stream:
        records = list(arxiv_snapshot.parse(stream))
    assert all(isinstance(r, PaperRecord) for r in records)
    return {r.arxiv_id: r for r in records}


def test_snapshot_head_yields_200_papers(papers):
    assert len(papers) == 200
    assert min(papers) == "0704.0001"
    assert max(papers) == "0704.0200"


def test_line_maps_every_field(papers):
    paper = papers["0704.0001"]
    assert paper.source == "arxiv_snapshot"
    assert paper.source_key == "0704.0001"
    assert paper.title == (
        "Calculation of prompt diphoton production cross sections at Tevatron and LHC energies"
    )
    assert paper.authors == ("C. Balázs", "E. L. Berger", "P. M. Nadolsky", "C. -P. Yuan")
    assert paper.published_on == dt.date(2007, 4, 2)
    assert paper.updated_on == dt.date(2007, 7, 24)  # v2, not update_date 2008-11-26
    assert paper.extra == {"datestamp": "2008-11-26"}
    assert paper.version == 2
    assert paper.categories == ("hep-ph",)
    assert paper.primary_category == "hep-ph"
    assert paper.doi == "10.1103/PhysRevD.76.013009"
    assert paper.journal_ref == "Phys.Rev.D76:013009,2007"
    assert paper.arxiv_comment == "37 pages, 15 figures; published version"
    assert paper.abstract.startswith("A fully differential calculation in perturbative")
    assert "\n" not in paper.abstract
    assert paper.listed_on is None


def test_categories_are_split_with_the_primary_first(papers):
    assert papers["0704.0002"].categories == ("math.CO", "cs.CG")
    assert papers["0704.0002"].primary_category == "math.CO"
    assert papers["0704.0002"].published_on == dt.date(2007, 3, 31)


def test_authors_come_from_authors_parsed_with_suffix_and_without_affiliation(papers):
    assert papers["0704.0009"].authors[5] == "Neal J. Evans II"
    # [["Mishchenko", "A. S.", "", "1 and 2"], ...]: the fourth element is an affiliation
    assert papers["0704.0025"].authors == ("A. S. Mishchenko", "N. Nagaosa")
    assert papers["0704.0020"].authors == ("The BABAR Collaboration", "B. Aubert")


def test_latex_in_authors_and_titles_is_decoded(papers):
    assert papers["0704.0049"].authors == ("Mikkel Øbro",)
    assert papers["0704.0062"].authors[0] == "Rastislav Šrámek"
    assert papers["0704.0073"].title == "A transcendental approach to Kollár's injectivity theorem"


def test_withdrawn_paper_is_flagged(papers):
    assert [arxiv_id for arxiv_id, paper in papers.items() if paper.withdrawn] == ["0704.0156"]


def test_listed_on_is_passed_through():
    [paper] = arxiv_snapshot.parse(lines()[0], listed_on=dt.date(2023, 5, 17))
    assert paper.listed_on == dt.date(2023, 5, 17)


def test_invalid_json_line_is_rejected_and_the_rest_parse():
    data = lines()
    data[4] = b'{"id": "0704.0005", "title": broken\n'
    results = list(arxiv_snapshot.parse(b"".join(data)))
    assert len(results) == 200
    rejected = results[4]
    assert isinstance(rejected, Rejected)
    assert rejected.reason.startswith("invalid JSON")
    assert rejected.position == "line 5"
    assert rejected.raw == '{"id": "0704.0005", "title": broken'
    assert sum(isinstance(r, PaperRecord) for r in results) == 199


def test_line_without_id_or_title_is_rejected():
    data = b'{"id": null, "title": "Orphan"}\n{"id": "0704.0001", "title": ""}\n[1, 2]\n'
    results = list(arxiv_snapshot.parse(data))
    assert [r.reason for r in results] == [
        "missing arXiv id or title",
        "missing arXiv id or title",
        "line is not a JSON object",
    ]
    assert [r.position for r in results] == ["line 1", "line 2", "line 3"]


def test_field_of_the_wrong_type_is_rejected_not_raised():
    data = b'{"id": "0704.0001", "title": "T", "versions": "v1"}\n'
    [result] = arxiv_snapshot.parse(data)
    assert isinstance(result, Rejected)
    assert result.reason.startswith("unexpected field shape")


def test_truncated_last_line_raises_after_yielding_earlier_records():
    data = b"".join(lines()[:101])[:-500]  # line 101 cut off mid-abstract
    results = []
    with pytest.raises(ParseError) as error:
        for result in arxiv_snapshot.parse(io.BytesIO(data)):
            results.append(result)
    assert len(results) == 100
    assert results[-1].arxiv_id == "0704.0100"
    assert error.value.position == "line 101"


def test_complete_last_line_without_newline_parses():
    data = b"".join(lines()[:3]).rstrip(b"\n")
    assert [r.arxiv_id for r in arxiv_snapshot.parse(data)] == [
        "0704.0001",
        "0704.0002",
        "0704.0003",
    ]


def test_blank_lines_are_skipped_but_counted():
    data = lines()[0] + b"\n" + b"not json\n"
    results = list(arxiv_snapshot.parse(data))
    assert isinstance(results[0], PaperRecord)
    assert results[1].position == "line 3"


def test_stream_is_read_lazily():
    stream = io.BytesIO(SNAPSHOT.read_bytes())
    first = next(arxiv_snapshot.parse(stream))
    assert first.arxiv_id == "0704.0001"
    assert stream.tell() == len(lines()[0])


def test_raw_author_string_is_the_fallback():
    data = b'{"id": "hep-th/9901001", "title": "T", "authors": "A. One and B. Two (MIT)"}\n'
    [paper] = arxiv_snapshot.parse(data)
    assert paper.arxiv_id == "hep-th/9901001"
    assert paper.authors == ("A. One", "B. Two")
    assert paper.version is None


def test_optional_popularity_keys_are_read_when_they_are_counts():
    import json

    from ingest.sources import arxiv_snapshot

    base = {"id": "2401.00001", "title": "T", "abstract": "A", "authors": "A. B."}
    lines = [
        {**base, "upvotes": 7, "github_stars": 120},
        {**base, "id": "2401.00002", "upvotes": "7", "github_stars": -1},
        {**base, "id": "2401.00003"},
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode() + b"\n"
    records = list(arxiv_snapshot.parse(data))
    assert [(r.upvotes, r.github_stars) for r in records] == [(7, 120), (None, None), (None, None)]


# --- hostile content -------------------------------------------------------------------------


def test_a_nul_escape_in_a_title_rejects_that_line_and_the_rest_lands():
    data = lines()
    data[3] = data[3].replace(b'"title":"', b'"title":"Evil \\u0000 ', 1)
    results = list(arxiv_snapshot.parse(b"".join(data)))
    [rejected] = [r for r in results if isinstance(r, Rejected)]
    assert (rejected.reason, rejected.position) == ("contains a NUL character in title", "line 4")
    assert "Evil \\u0000" in rejected.raw  # the line as it was (the escape, six characters)
    assert sum(isinstance(r, PaperRecord) for r in results) == 199


def test_a_raw_nul_or_invalid_utf8_line_is_a_rejection_whose_excerpt_stores():
    for bad in (b"\x00", b"\xff", b"\xed\xa0\x80"):  # the last: a UTF-8-encoded surrogate
        data = lines()
        data[7] = data[7].replace(b'"title":"', b'"title":"' + bad, 1)
        results = list(arxiv_snapshot.parse(b"".join(data)))
        [rejected] = [r for r in results if isinstance(r, Rejected)]
        assert rejected.position == "line 8"
        assert "\x00" not in rejected.raw and rejected.raw.encode("utf-8")
        assert sum(isinstance(r, PaperRecord) for r in results) == 199


def test_what_the_fast_json_reader_refuses_is_read_as_the_standard_library_reads_it():
    # orjson reads the lines, but not a lone surrogate escape, NaN or a deep nest: those
    # lines get the standard library's reading, and so the same rejections and values.
    data = lines()
    data[2] = data[2].replace(b'"title":"', b'"title":"Odd \\ud800 ', 1)
    data[6] = data[6].replace(b'{"id"', b'{"github_stars": NaN, "upvotes": 3, "id"', 1)
    data[9] = b"[" * 100_000 + b"]" * 100_000 + b"\n"
    results = list(arxiv_snapshot.parse(b"".join(data)))
    rejected = {r.position: r.reason for r in results if isinstance(r, Rejected)}
    assert rejected == {
        "line 3": "contains a lone surrogate (undecodable bytes or a bad \\u escape) in title",
        "line 10": "invalid JSON: nested too deeply",
    }
    assert sum(isinstance(r, PaperRecord) for r in results) == 198
    assert (results[6].upvotes, results[6].github_stars) == (3, None)  # NaN is no count


def test_a_count_past_64_bits_is_no_count():
    # orjson reads an integer past 64 bits as a float: no count, as "7" or -1 (the paper
    # lands without it); one within 64 bits but past the column's range is rejected.
    data = lines()[:2]
    data[0] = data[0].replace(b'{"id"', b'{"upvotes": 123456789012345678901234567890, "id"', 1)
    data[1] = data[1].replace(b'{"id"', b'{"upvotes": 4294967296, "id"', 1)
    first, second = arxiv_snapshot.parse(b"".join(data))
    assert isinstance(first, PaperRecord) and first.upvotes is None
    assert second.reason == "upvotes 4294967296 is out of range (0 to 2147483647)"
