"""The OAI-PMH parser against real arXiv pages (arXivRaw and arXiv metadata formats)."""

import datetime as dt
from pathlib import Path

import pytest

from ingest.records import Deleted, PaperRecord, ParseError, Rejected
from ingest.sources import oai_pmh

DATA = Path(__file__).resolve().parents[1] / "data" / "formats" / "arxiv_oai_pmh"
RAW_PAGE = DATA / "arXivRaw_ListRecords_2014-01-16_scirate_resumption-496549-96001.xml"

ENVELOPE = """<?xml version="1.0" encoding="UTF-8"?>
<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/">
<responseDate>2026-01-16T11:10:55Z</responseDate>
<request verb="ListRecords" metadataPrefix="arXivRaw">https://arxiv.org/oai</request>
{body}
</OAI-PMH>"""

RAW_RECORD = """<record><header><identifier>oai:arXiv.org:{id}</identifier>
<datestamp>2026-01-15</datestamp><setSpec>math</setSpec></header>
<metadata><arXivRaw xmlns="http://arxiv.org/OAI/arXivRaw/">
<id>{id}</id><submitter>A. One</submitter>
<version version="v1"><date>Mon, 02 Jan 2006 10:00:00 GMT</date><size>20kb</size></version>
<version version="v2"><date>Tue, 03 Mar 2009 11:00:00 GMT</date><size>21kb</size></version>
<title>{title}</title><authors>A. One and B. Two</authors><categories>math.AG math.NT</categories>
<comments>12 pages; code at https://github.com/example/sheaves.</comments>
<abstract>  An abstract.
</abstract></arXivRaw></metadata></record>"""


def parse_file(name: str) -> list:
    with open(DATA / name, "rb") as stream:
        return list(oai_pmh.parse(stream))


@pytest.fixture(scope="module")
def raw_page() -> dict[str, PaperRecord]:
    records = list(oai_pmh.parse(RAW_PAGE.read_bytes()))
    assert all(isinstance(r, PaperRecord) for r in records)
    return {r.arxiv_id: r for r in records}


def test_arxivraw_page_yields_all_1000_records():
    records = list(oai_pmh.parse(RAW_PAGE.read_bytes()))
    assert len(records) == 1000
    assert {type(r) for r in records} == {PaperRecord}
    assert len({r.arxiv_id for r in records}) == 1000


def test_arxivraw_page_resumption_token():
    assert oai_pmh.resumption_token(RAW_PAGE.read_bytes()) == ("496549|96001", 907096, 95000)


def test_arxivraw_record_maps_every_field(raw_page):
    paper = raw_page["0811.36489"]  # scirate's edited 5-digit id, kept as given
    assert paper.source == "arxiv_oai"
    assert paper.source_key == "0811.36489"
    assert paper.title == "Revisiting Norm Estimation in Data Streams"
    assert paper.authors == ("Daniel M. Kane", "Jelani Nelson", "David P. Woodruff")
    assert paper.published_on == dt.date(2008, 11, 21)
    assert paper.updated_on == dt.date(2009, 4, 9)
    assert paper.version == 2
    assert paper.categories == ("cs.DS", "cs.CC")
    assert paper.primary_category == "cs.DS"
    assert paper.arxiv_comment.startswith("added content; modified L_0 algorithm -- Parity")
    assert "\n" not in paper.arxiv_comment
    assert paper.abstract.startswith("The problem of estimating the pth moment F_p")
    assert "x_i <-- x_i + v" in paper.abstract  # XML entities decoded
    assert paper.extra == {"datestamp": "2009-04-09"}
    assert not paper.withdrawn


def test_arxivraw_versions_are_ordered_by_number_not_text(raw_page):
    # The legacy service lists v1, v10, v11 ... v18, v2 ... v9.
    paper = raw_page["0811.3693"]
    assert paper.version == 18
    assert paper.published_on == dt.date(2008, 11, 22)
    assert paper.updated_on == dt.date(2011, 8, 24)


def test_arxivraw_single_version_is_published_and_updated_the_same_day(raw_page):
    paper = raw_page["0811.3650"]
    assert paper.version == 1
    assert paper.published_on == paper.updated_on == dt.date(2008, 11, 21)


def test_arxivraw_author_string_drops_affiliations_and_splits_on_and(raw_page):
    assert raw_page["0811.3654"].authors == (
        "A. Baldi",
        "W. Forman",
        "C. Jones",
        "P. Nulsen",
        "L. David",
        "R. Kraft",
        "A. Simionescu",
    )
    assert raw_page["0811.3662"].authors == ("Zhong-Bo Kang", "Jian-Wei Qiu", "Werner Vogelsang")


def test_arxivraw_author_latex_accents_become_unicode(raw_page):
    assert raw_page["0811.3706"].authors == ("Gideon Amir", "Omer Angel", "Benedek Valkó")
    assert "S. Baeßler" in raw_page["0811.3851"].authors
    assert "R. Muñoz Horta" in raw_page["0811.3851"].authors


def test_arxivraw_collaborations_stay_one_author(raw_page):
    assert raw_page["0811.3665"].authors == ("J. Dalseno", "Belle Collaboration")
    assert raw_page["0811.3778"].authors == ("R. Goncalo", "ATLAS and CMS Collaborations")
    # "H.E.S.S. Collaboration: F. Aharonian, et al"
    assert raw_page["0811.3894"].authors == ("H.E.S.S. Collaboration", "F. Aharonian")
    assert raw_page["0811.3908"].authors[-1] == "SEE-COAST Team"
    assert raw_page["0811.4379"].authors == ("Lassina Dembele", "Jean-Pierre Serre")


def test_withdrawn_papers_are_flagged_from_comments_or_empty_last_version(raw_page):
    withdrawn = {arxiv_id for arxiv_id, paper in raw_page.items() if paper.withdrawn}
    # 0811.3921's comment reads "...has now been withdraw": its 0kb v2 gives it away.
    assert withdrawn == {
        "0811.3882",
        "0811.3921",
        "0811.4009",
        "0811.4148",
        "0811.4613",
        "0811.4628",
    }


def test_several_dois_keep_the_first(raw_page):
    assert raw_page["0811.4015"].doi == "10.1143/JPSJ.78.053704"
    assert sum(1 for paper in raw_page.values() if paper.doi) == 468


@pytest.mark.parametrize(
    ("name", "ids"),
    [
        ("arXiv_hepcrawl_arxiv-physics-hep-th.xml", ["1412.8323", "1507.07790", "1607.01710"]),
        ("arXiv_hepcrawl_arxiv-physics-hep-ex.xml", ["1706.05371", "1706.09418", "1707.00874"]),
    ],
)
def test_arxiv_format_list_records_yield_three_records(name, ids):
    records = parse_file(name)
    assert [r.arxiv_id for r in records] == ids
    assert oai_pmh.resumption_token((DATA / name).read_bytes()) == (None, None, None)


def test_arxiv_format_maps_created_and_updated():
    paper = parse_file("arXiv_hepcrawl_arxiv-physics-hep-th.xml")[0]
    assert paper.title == (
        "Toolbox for reconstructing quantum theory from rules on information acquisition"
    )
    assert paper.authors == ("Philipp A Hoehn",)
    assert paper.published_on == dt.date(2014, 12, 29)
    assert paper.updated_on == dt.date(2017, 12, 13)
    assert paper.version is None  # "updated" says v2 or later, not which
    assert paper.categories[:3] == ("quant-ph", "gr-qc", "hep-th")
    assert len(paper.categories) == 6


def test_arxiv_format_get_record():
    [paper] = parse_file("arXiv_hepcrawl_arxiv-single.xml")
    assert paper.arxiv_id == "1401.2122"
    assert paper.title == "New integrable (3+1)-dimensional systems and contact geometry"
    assert paper.authors == ("A. Sergyeyev",)
    assert paper.primary_category == "math.AP"
    assert paper.doi == "10.1007/s11005-017-1013-4"
    assert paper.journal_ref == "Lett. Math. Phys. 108 (2018), no. 2, 359-376"
    assert paper.abstract.count("\n\n") == 1  # two paragraphs


def test_bogus_colon_author_is_dropped():
    [paper] = parse_file("arXiv_hepcrawl_sample_arxiv_record4.xml")
    assert paper.arxiv_id == "1603.05976"
    assert ":" not in paper.authors
    assert paper.authors[:4] == ("Keck Array", "BICEP2 Collaborations", "P. Ade", "Z. Ahmed")
    assert len(paper.authors) == 65
    assert "R. W. IV" in paper.authors  # forenames, keyname, suffix
    assert paper.version == 1
    assert paper.published_on == paper.updated_on == dt.date(2016, 3, 18)


def test_arxiv_element_without_its_namespace_is_still_read():
    records = parse_file("arXiv_hepcrawl_sample_arxiv_record.xml")
    assert len(records) == 12
    assert all(isinstance(r, PaperRecord) for r in records)
    first = records[0]  # its <arXiv> lacks xmlns, so it sits in the OAI namespace
    assert first.arxiv_id == "1601.03238"
    assert first.authors[0] == "Planck Collaboration"
    by_id = {r.arxiv_id: r for r in records}
    assert by_id["1604.05585"].authors[0] == "Günter Burigana"
    assert ":" not in by_id["1606.07538"].authors
    assert by_id["1606.07538"].authors[:2] == ("Super-Kamiokande Collaboration", "K. Abe")


def test_deleted_oai_record_yields_deleted():
    body = """<ListRecords>
    <record><header status="deleted"><identifier>oai:arXiv.org:hep-th/9901001</identifier>
    <datestamp>2026-01-15</datestamp></header></record>
    <resumptionToken cursor="0" completeListSize="1"></resumptionToken></ListRecords>"""
    results = list(oai_pmh.parse(ENVELOPE.format(body=body).encode()))
    assert results == [Deleted("arxiv_oai", "hep-th/9901001", "hep-th/9901001")]


def test_old_style_id_padded_dates_and_code_link():
    record = RAW_RECORD.format(id="math/0601001", title="Sheaves\n  on curves")
    body = f"<ListRecords>{record}</ListRecords>"
    [paper] = oai_pmh.parse(ENVELOPE.format(body=body).encode(), listed_on=dt.date(2026, 1, 16))
    assert paper.arxiv_id == "math/0601001"
    assert paper.title == "Sheaves on curves"
    assert paper.authors == ("A. One", "B. Two")
    assert paper.published_on == dt.date(2006, 1, 2)
    assert paper.updated_on == dt.date(2009, 3, 3)
    assert paper.code_url == "https://github.com/example/sheaves"
    assert paper.listed_on == dt.date(2026, 1, 16)


def test_record_without_title_is_rejected_and_the_rest_parse():
    bad = RAW_RECORD.format(id="0901.0002", title="")
    good = RAW_RECORD.format(id="0901.0003", title="Fine")
    body = f"<ListRecords>{bad}{good}</ListRecords>"
    rejected, paper = oai_pmh.parse(ENVELOPE.format(body=body).encode())
    assert isinstance(rejected, Rejected)
    assert rejected.reason == "missing arXiv id or title"
    assert rejected.position == "record 1"
    assert "0901.0002" in rejected.raw
    assert paper.arxiv_id == "0901.0003"


def test_unknown_metadata_format_is_rejected():
    body = """<ListRecords><record><header><identifier>oai:arXiv.org:0901.0001</identifier>
    </header><metadata><oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/">
    </oai_dc:dc></metadata></record></ListRecords>"""
    [result] = oai_pmh.parse(ENVELOPE.format(body=body).encode())
    assert isinstance(result, Rejected)
    assert result.reason.startswith("unsupported metadata format")


def test_truncated_page_raises_after_yielding_earlier_records():
    data = RAW_PAGE.read_bytes()
    cut = data.index(b"<record>", data.index(b"<identifier>oai:arXiv.org:0811.3659<"))
    results = []
    with pytest.raises(ParseError) as error:
        for result in oai_pmh.parse(data[: cut + 300]):
            results.append(result)
    assert [r.arxiv_id for r in results][-1] == "0811.3659"
    assert len(results) == 12  # 0811.3659 is the 12th record of the page
    assert error.value.position.startswith("line ")
    assert "column" in error.value.position


def test_malformed_xml_reports_line_and_column():
    with pytest.raises(ParseError, match="mismatched tag") as error:
        list(oai_pmh.parse(b"<OAI-PMH xmlns='http://www.openarchives.org/OAI/2.0/'>\n<a></b>"))
    assert error.value.position == "line 2, column 5"


def test_no_records_match_yields_nothing():
    body = '<error code="noRecordsMatch">No records match the query</error>'
    data = ENVELOPE.format(body=body).encode()
    assert list(oai_pmh.parse(data)) == []
    assert oai_pmh.resumption_token(data) == (None, None, None)


def test_other_oai_errors_raise_with_code_and_message():
    body = '<error code="badResumptionToken">The token is\n  invalid</error>'
    with pytest.raises(ParseError, match="badResumptionToken: The token is invalid"):
        list(oai_pmh.parse(ENVELOPE.format(body=body).encode()))


def test_last_page_has_no_token_but_keeps_counts():
    body = '<ListRecords><resumptionToken completeListSize="907096" cursor="906000"/></ListRecords>'
    assert oai_pmh.resumption_token(ENVELOPE.format(body=body).encode()) == (None, 907096, 906000)


def test_new_service_token_has_no_counts():
    body = """<ListRecords><resumptionToken expires="2026-01-16T12:00:00Z">
    abc|2001</resumptionToken></ListRecords>"""
    assert oai_pmh.resumption_token(ENVELOPE.format(body=body).encode()) == ("abc|2001", None, None)


def test_other_xml_is_not_an_oai_response():
    with pytest.raises(ParseError, match="not an OAI-PMH response"):
        list(oai_pmh.parse(b"<html><body>Service unavailable</body></html>"))


def test_a_record_nested_in_another_by_a_broken_end_tag_stops_with_a_parse_error():
    """Found by the fuzz test: the inner record is not the container's child (ValueError)."""
    data = (DATA / "arXiv_hepcrawl_arxiv-physics-hep-th.xml").read_bytes()
    end = data.index(b"</metadata>\n</record>") + len(b"</metadata>\n")
    broken = data[:end] + data[end:].replace(b"</record>", b"/record>", 1)
    parsed = oai_pmh.parse(broken)
    assert isinstance(next(parsed), PaperRecord)
    with pytest.raises(ParseError, match="mismatched tag"):
        list(parsed)
