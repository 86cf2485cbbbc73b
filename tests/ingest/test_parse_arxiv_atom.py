import datetime as dt
from pathlib import Path

import pytest

from ingest.records import PaperRecord, ParseError, Rejected
from ingest.sources import arxiv_atom

DATA = Path(__file__).resolve().parent.parent / "data" / "formats" / "arxiv_api"
XML = DATA / "xml"
LEGACY = DATA / "legacy_2019-08-10_all-science_m10.xml"
TESTING_0_100 = XML / "q_testing_s0_m100_cfe7536492ca.xml"


def records(path: Path, **kwargs) -> list:
    return list(arxiv_atom.parse(path.read_bytes(), **kwargs))


def by_id(results: list) -> dict[str, PaperRecord]:
    return {r.arxiv_id: r for r in results if isinstance(r, PaperRecord)}


@pytest.mark.parametrize(
    ("name", "count", "page"),
    [
        ("id_0000.0000_s0_m100_8b51d9633a68.xml", 0, (0, 0, 100)),
        ("id_0808.05394_s0_m100_7b0c7d0a7cdd.xml", 0, (0, 0, 100)),
        ("id_0808.05394_1707.08567_s0_m100_42e5aa0ec3af.xml", 1, (1, 0, 100)),
        ("id_1605.08386_s0_m100_199195aa31ad.xml", 1, (1, 0, 100)),
        ("id_1707.08567_s0_m100_6a1afebfc6a3.xml", 1, (1, 0, 100)),
        ("id_2104.12255v1_s0_m100_6ae69987ffe1.xml", 1, (1, 0, 100)),
        ("id_astro-ph_0601001_s0_m100_3150dca9dc76.xml", 1, (1, 0, 100)),
        ("id_quant-ph_0201082v1_s0_m100_86989fe779ef.xml", 1, (1, 0, 100)),
        ("q_testing_s0_m100_cfe7536492ca.xml", 100, (214881, 0, 100)),
        ("q_testing_s0_m10_bc5a6c384fe9.xml", 10, (214881, 0, 10)),
        ("q_testing_s0_m15_80c242b59d59.xml", 15, (214881, 0, 15)),
        ("q_testing_s5_m10_c0e94a259d4a.xml", 10, (214881, 5, 10)),
        ("q_testing_s5_m15_bbcf6b23085b.xml", 15, (214881, 5, 15)),
        ("q_testing_s9_m15_0b78d4b4d476.xml", 15, (214881, 9, 15)),
        ("q_testing_s10_m10_34e56e15aaac.xml", 10, (214881, 10, 10)),
        ("q_testing_s20_m10_348a237fecab.xml", 10, (214881, 20, 10)),
        ("q_testing_s30_m10_f2e39f0143dc.xml", 10, (214881, 30, 10)),
        ("q_testing_s40_m10_96dd32eb854c.xml", 10, (214881, 40, 10)),
        ("q_testing_s50_m10_7f488ab8598c.xml", 10, (214881, 50, 10)),
    ],
)
def test_every_entry_becomes_a_record_and_the_page_is_described(name, count, page):
    results = records(XML / name)
    assert len(results) == count
    assert all(isinstance(r, PaperRecord) for r in results)
    assert arxiv_atom.page_info((XML / name).read_bytes()) == page


def test_overlapping_pages_agree_on_their_shared_entries():
    first = [r.arxiv_id for r in records(XML / "q_testing_s0_m15_80c242b59d59.xml")]
    second = [r.arxiv_id for r in records(XML / "q_testing_s5_m10_c0e94a259d4a.xml")]
    assert second == first[5:15]
    assert [r.arxiv_id for r in records(TESTING_0_100)][:15] == first


def test_error_feed_raises_parse_error_with_the_error_summary():
    data = (XML / "id_abc_s0_m100_b79c8dcf6bc3.xml").read_bytes()
    with pytest.raises(ParseError, match="incorrect id format for abc"):
        list(arxiv_atom.parse(data))
    # The error feed still claims one result: only the entry itself tells it is an error.
    assert arxiv_atom.page_info(data) == (1, 0, 1)


def test_old_style_ids_lose_their_version():
    [paper] = records(XML / "id_quant-ph_0201082v1_s0_m100_86989fe779ef.xml")
    assert (paper.arxiv_id, paper.source_key, paper.version) == (
        "quant-ph/0201082",
        "quant-ph/0201082",
        1,
    )
    assert paper.categories == ("quant-ph", "cs.PL")
    assert paper.primary_category == "quant-ph"
    assert paper.arxiv_comment == "32 pages"


def test_an_entry_maps_every_field():
    [paper] = records(
        XML / "id_astro-ph_0601001_s0_m100_3150dca9dc76.xml", listed_on=dt.date(2026, 5, 11)
    )
    assert paper.source == "arxiv_atom"
    assert paper.arxiv_id == "astro-ph/0601001"
    assert paper.title.startswith("Frequency of Hot Jupiters and Very Hot Jupiters")
    assert paper.authors == ("Andrew Gould", "Susan Dorsher", "B. Scott Gaudi", "Andrzej Udalski")
    assert paper.published_on == paper.updated_on == dt.date(2006, 1, 2)
    assert paper.listed_on == dt.date(2026, 5, 11)
    assert paper.journal_ref == "ActaAstron.56:1-50,2006"
    assert paper.abstract.startswith("We derive the frequencies of hot Jupiters (HJs)")
    assert "Gould & Morgan (2003)" in paper.abstract  # XML-escaped &amp; decoded
    assert paper.code_url == ""  # the comment links a .ps.gz, not a repository
    assert paper.extra["affiliations"]["Andrzej Udalski"] == ["Warsaw University Observatory"]


def test_versions_and_update_dates_come_from_the_entry():
    paper = by_id(records(XML / "q_testing_s20_m10_348a237fecab.xml"))["2409.05654"]
    assert paper.version == 9
    assert (paper.published_on, paper.updated_on) == (dt.date(2024, 9, 9), dt.date(2025, 5, 8))


def test_latex_title_is_made_readable():
    paper = by_id(records(XML / "q_testing_s20_m10_348a237fecab.xml"))["2306.03845"]
    assert paper.title == "ωTest: WebView-Oriented Testing for Android Applications"
    assert paper.doi == "10.1145/3597926.3598112"


def test_a_title_that_is_just_zero_is_still_a_title():
    [paper] = records(XML / "id_2104.12255v1_s0_m100_6ae69987ffe1.xml")
    assert paper.title == "0"
    assert "$35,000" in paper.abstract


def test_unicode_authors_are_kept():
    papers = by_id(records(TESTING_0_100))
    assert "Oliver Weißl" in papers["2602.15552"].authors
    assert "Lasse Møldrup" in papers["2505.05162"].authors
    assert papers["2002.06611"].authors[-1] == "Sólrún Einarsdóttir"
    assert "C. Lämmerzahl" in papers["gr-qc/0103067"].authors


def test_code_link_in_the_comment_is_found():
    paper = by_id(records(TESTING_0_100))["1706.00679"]
    assert paper.code_url == "https://github.com/ydecastro/super-resolution-testing"


def test_only_one_paper_in_a_hundred_has_a_code_link():
    assert sum(bool(r.code_url) for r in records(TESTING_0_100)) == 1


def test_legacy_layout_parses_with_hard_wraps_removed():
    results = records(LEGACY)
    assert len(results) == 10
    assert arxiv_atom.page_info(LEGACY.read_bytes()) == (120839, 0, 10)
    papers = by_id(results)
    boston = papers["1503.01162"]
    assert boston.title == (
        "Report on a Boston University Conference December 7-8, 2012 on 'How Can the History "
        "and Philosophy of Science Contribute to Contemporary U.S. Science Teaching?'"
    )
    assert "Yann Benétreau-Dupin" in boston.authors
    assert boston.doi == "10.1007/s11191-014-9716-8"
    assert papers["1501.05039"].abstract.startswith("Data science is gaining more and more")
    assert "\n" not in papers["1501.05039"].abstract
    assert "Hans R. Künsch" in papers["0808.0631"].authors
    assert {"quant-ph/0210005", "physics/0507092"} <= set(papers)


def test_msc_and_acm_classes_are_not_categories():
    paper = by_id(records(LEGACY))["1802.03292"]
    assert paper.categories == ("cs.LO",)
    assert paper.extra["classifications"] == ["03B70, 68Q99", "F.4.1; F.4.m; K.2"]


def test_truncated_feed_raises_parse_error_after_the_complete_entries():
    data = TESTING_0_100.read_bytes()
    # 2202.06271 is the 20th entry: cut 50 bytes into the 21st.
    cut = data.index(b"<entry>", data.index(b"2202.06271")) + 50
    seen = []
    with pytest.raises(ParseError) as error:
        for result in arxiv_atom.parse(data[:cut]):
            seen.append(result)
    assert len(seen) == 20
    assert error.value.position.startswith("line ")
    assert ", column " in error.value.position


def test_entry_with_a_foreign_id_is_rejected_and_the_rest_still_parse():
    data = TESTING_0_100.read_bytes().replace(
        b"<id>http://arxiv.org/abs/2202.12139v1</id>", b"<id>http://example.org/paper/7</id>"
    )
    results = list(arxiv_atom.parse(data))
    assert isinstance(results[0], Rejected)
    assert results[0].position == "entry 1"
    assert "example.org/paper/7" in results[0].reason
    assert sum(isinstance(r, PaperRecord) for r in results) == 99


def test_entry_without_title_is_rejected():
    data = (XML / "id_2104.12255v1_s0_m100_6ae69987ffe1.xml").read_bytes()
    [result] = arxiv_atom.parse(data.replace(b"<title>0</title>", b"<title> </title>"))
    assert result.reason == "missing title"


def test_withdrawal_notice_in_the_comment_marks_the_paper_withdrawn():
    data = (XML / "id_quant-ph_0201082v1_s0_m100_86989fe779ef.xml").read_bytes()
    data = data.replace(b"32 pages", b"This paper has been withdrawn by the author")
    [paper] = arxiv_atom.parse(data)
    assert paper.withdrawn is True


def test_an_open_file_can_be_parsed():
    with open(LEGACY, "rb") as stream:
        assert len(list(arxiv_atom.parse(stream))) == 10


@pytest.mark.parametrize(
    "data",
    [b"", b"<html><body>Service unavailable</body></html>", b'{"error": "nope"}'],
)
def test_payloads_that_are_not_atom_feeds_raise_parse_error(data):
    with pytest.raises(ParseError):
        list(arxiv_atom.parse(data))


def test_page_info_without_opensearch_raises_parse_error():
    with pytest.raises(ParseError, match="totalResults"):
        arxiv_atom.page_info(b'<feed xmlns="http://www.w3.org/2005/Atom"><title>x</title></feed>')


def test_format_sniffing_recognises_api_feeds_in_both_layouts():
    assert arxiv_atom.looks_like(TESTING_0_100.read_bytes()[:4096])
    assert arxiv_atom.looks_like(LEGACY.read_bytes()[:4096])
    assert not arxiv_atom.looks_like(b'[{"paper": {}}]')
