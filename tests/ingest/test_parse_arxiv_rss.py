"""The arXiv RSS 2.0 parser against a real quant-ph feed and a real empty holiday feed."""

import collections
import datetime as dt
from pathlib import Path

import pytest

from ingest.records import PaperRecord, ParseError, Rejected
from ingest.sources import arxiv_rss

DATA = Path(__file__).resolve().parents[1] / "data" / "formats" / "arxiv_rss"
FEED = DATA / "rss_quant-ph_2025-04-28.xml"
LISTING_DAY = dt.date(2025, 4, 28)

SMALL_FEED = """<?xml version='1.0' encoding='UTF-8'?>
<rss xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/"
  version="2.0"><channel><title>cs.LG updates</title>{pubdate}{items}</channel></rss>"""

ITEM = """<item><title>{title}</title><link>https://arxiv.org/abs/2601.00001</link>
<description>arXiv:2601.00001v1 Announce Type: new \nAbstract: Code: https://github.com/example/model.</description>
<guid isPermaLink="false">oai:arXiv.org:2601.00001v1</guid><category>cs.LG</category>
<arxiv:announce_type>new</arxiv:announce_type><dc:creator>A. One, B. Two</dc:creator></item>"""


@pytest.fixture(scope="module")
def feed() -> dict[str, PaperRecord]:
    records = list(arxiv_rss.parse(FEED.read_bytes()))
    assert all(isinstance(r, PaperRecord) for r in records)
    return {r.arxiv_id: r for r in records}


def test_quant_ph_feed_yields_81_items_of_four_announce_types():
    records = list(arxiv_rss.parse(FEED.read_bytes()))
    assert len(records) == 81
    types = collections.Counter(r.extra["announce_type"] for r in records)
    assert types == {"new": 40, "replace": 22, "cross": 10, "replace-cross": 9}
    assert {r.listed_on for r in records} == {LISTING_DAY}


def test_new_item_maps_every_field(feed):
    paper = feed["2504.17830"]
    assert paper.source == "arxiv_rss"
    assert paper.source_key == "2504.17830"
    assert paper.title == "Self-Adjoint Time Operator in a Weighted Energy Space"
    assert paper.abstract.startswith("We introduce a self-adjoint time operator \\(T_w")
    assert "Announce Type" not in paper.abstract
    assert paper.authors == ("Radmir Kokoulin",)
    assert paper.version == 1
    assert paper.categories == ("quant-ph",)
    assert paper.extra == {"announce_type": "new"}


def test_new_item_is_published_on_its_listing_day(feed):
    assert feed["2504.17837"].published_on == LISTING_DAY
    assert feed["2504.17837"].categories == ("quant-ph", "physics.comp-ph")
    assert feed["2504.17837"].authors == ("Youssef Kora", "Christoph Simon")


def test_replacement_keeps_its_version_and_has_no_invented_date(feed):
    paper = feed["2403.13790"]
    assert paper.extra["announce_type"] == "replace"
    assert paper.version == 2
    assert paper.published_on is None
    assert paper.listed_on == LISTING_DAY
    assert paper.doi == "10.1103/PhysRevB.111.144313"
    assert paper.journal_ref == "Phys. Rev. B 111, 144313 (2025)"
    assert paper.authors[3] == "Klaus Mølmer"  # "Klaus M{\o}lmer"
    assert feed["2305.05149"].version == 4


def test_cross_list_of_an_older_paper_has_no_published_date(feed):
    # The day's new ids start at 2504.17830; 2504.16299 was announced days earlier.
    assert feed["2504.16299"].extra["announce_type"] == "cross"
    assert feed["2504.16299"].published_on is None
    assert feed["2504.18342"].published_on == LISTING_DAY


def test_cross_list_keeps_its_own_primary_category(feed):
    paper = feed["2504.18342"]
    assert paper.categories == ("nucl-ex", "nucl-th", "quant-ph")
    assert paper.primary_category == "nucl-ex"
    assert paper.doi == "10.1016/j.ppnp.2025.104174"


def test_latex_author_names_become_unicode(feed):
    names = {name for paper in feed.values() for name in paper.authors}
    assert {"Jakob Günther", "Michal Hajdušek", "Søren Stobbe", "Stanisław Świerczewski"} <= names
    assert not any("\\" in name or "{" in name for name in names)


def test_holiday_feed_without_items_yields_nothing():
    with open(DATA / "rss_physics_2025-12-31_EMPTY_holiday.xml", "rb") as stream:
        assert list(arxiv_rss.parse(stream)) == []


def test_feed_date_wins_over_listed_on_argument():
    data = SMALL_FEED.format(
        pubdate="<pubDate>Mon, 05 Jan 2026 00:00:00 -0500</pubDate>", items=ITEM.format(title="T")
    )
    [paper] = arxiv_rss.parse(data.encode(), listed_on=dt.date(2026, 1, 9))
    assert paper.listed_on == paper.published_on == dt.date(2026, 1, 5)


def test_listed_on_argument_is_the_fallback_without_a_feed_date():
    data = SMALL_FEED.format(pubdate="", items=ITEM.format(title="A model"))
    [paper] = arxiv_rss.parse(data.encode(), listed_on=dt.date(2026, 1, 9))
    assert paper.listed_on == dt.date(2026, 1, 9)
    assert paper.authors == ("A. One", "B. Two")
    assert paper.abstract == "Code: https://github.com/example/model."
    assert paper.code_url == "https://github.com/example/model"


def test_item_without_title_is_rejected_and_the_rest_parse():
    items = ITEM.format(title="") + ITEM.format(title="Kept")
    rejected, paper = arxiv_rss.parse(SMALL_FEED.format(pubdate="", items=items).encode())
    assert isinstance(rejected, Rejected)
    assert rejected.position == "item 1"
    assert "2601.00001" in rejected.raw
    assert paper.title == "Kept"


def test_malformed_feed_raises_with_position():
    data = FEED.read_bytes()[:5000]
    with pytest.raises(ParseError) as error:
        list(arxiv_rss.parse(data))
    assert error.value.position.startswith("line ")


def test_atom_document_is_not_an_rss_feed():
    with pytest.raises(ParseError, match="not an RSS 2.0 feed"):
        list(arxiv_rss.parse(b"<feed xmlns='http://www.w3.org/2005/Atom'></feed>"))
