import datetime as dt

import pytest

from ingest.records import PaperRecord, ParseError, Rejected
from ingest.sources import hf_page

LISTED_ON = dt.date(2025, 12, 24)


def parse(data: bytes, listed_on=LISTED_ON):
    return list(hf_page.parse(data, listed_on=listed_on))


def by_title(records, prefix):
    matches = [r for r in records if r.title.startswith(prefix)]
    assert len(matches) == 1, prefix
    return matches[0]


def test_seed_yields_all_49_cards_and_no_rejections(seed_bytes):
    records = parse(seed_bytes)
    assert len(records) == 49
    assert all(isinstance(r, PaperRecord) for r in records)
    assert len({r.source_key for r in records}) == 49


def test_card_with_year_keeps_it_and_trailing_number_is_upvotes(seed_bytes):
    card = by_title(parse(seed_bytes), "CARE Transformer")
    assert card.published_on == dt.date(2024, 11, 25)
    assert card.upvotes == 1
    assert card.author_count == 7


def test_yearless_date_takes_the_listing_year(seed_bytes):
    card = by_title(parse(seed_bytes), "Architecture Decoupling Is Not All You Need")
    assert card.published_on == dt.date(2025, 11, 27)
    assert card.upvotes == 4
    assert card.author_count == 13
    assert card.listed_on == LISTED_ON


def test_card_without_upvote_count_has_zero_upvotes(seed_bytes):
    card = by_title(parse(seed_bytes), "decoupleQ")
    assert card.published_on == dt.date(2024, 4, 19)
    assert card.upvotes == 0


def test_card_without_meta_lines_still_lands(seed_bytes):
    card = by_title(parse(seed_bytes), "A Systematic Analysis of Hybrid Linear Attention")
    assert card.published_on is None
    assert card.author_count is None
    assert card.upvotes is None
    assert card.abstract.startswith("Transformers face quadratic complexity")


def test_last_card_without_trailing_newline_is_read(seed_bytes):
    card = parse(seed_bytes)[-1]
    assert card.title == "Augmenting Language Models with Long-Term Memory"
    assert card.published_on == dt.date(2023, 6, 12)
    assert card.upvotes == 5


def test_code_links_come_out_of_the_abstract_without_trailing_period(seed_bytes):
    records = parse(seed_bytes)
    assert by_title(records, "decoupleQ").code_url == "https://github.com/bytedance/decoupleQ"
    # "Codes will be released on ..{github}." is a placeholder, not a link.
    assert by_title(records, "CARE Transformer").code_url == ""
    assert all(not r.code_url.endswith(".") for r in records)


def test_yearless_date_after_the_listing_day_belongs_to_the_year_before():
    text = "Title\n\nAbstract.\n\n  • 2 authors\n·\nDec 30 3\n"
    [card] = parse(text.encode(), listed_on=dt.date(2026, 1, 5))
    assert card.published_on == dt.date(2025, 12, 30)


def test_malformed_card_is_rejected_and_the_rest_still_parse():
    text = (
        "Good one\n\nFirst abstract.\n\n  • 2 authors\n·\nNov 3 7\n\n"
        "Bad date\n\nSecond abstract.\n\n  • 3 authors\n·\nSomeday soon\n\n"
        "Good two\n\nThird abstract.\n\n  • 1 author\n·\nFeb 30, 2024\n\n"
        "Good three\n\nFourth abstract.\n\n  • 4 authors\n·\nMar 1, 2024\n"
    )
    results = parse(text.encode())
    assert [type(r).__name__ for r in results] == [
        "PaperRecord", "Rejected", "Rejected", "PaperRecord",
    ]  # fmt: skip
    assert "unreadable date" in results[1].reason
    assert results[1].position == "line 9"  # the title line of the bad card
    assert "invalid date" in results[2].reason
    assert results[3].title == "Good three"


def test_text_without_cards_is_a_parse_error():
    with pytest.raises(ParseError, match="no paper cards"):
        parse(b"<html>not a listing</html>")


def test_looks_like_recognises_the_seed(seed_bytes):
    assert hf_page.looks_like(seed_bytes[:4096])
    assert not hf_page.looks_like(b'{"id": "2401.00001"}')


def test_rejected_excerpt_is_bounded():
    assert len(Rejected("why", "x" * 10_000).raw) < 2100


def test_a_card_titled_without_ascii_letters_keys_by_its_own_words():
    listing = "论文 标题\nAbstract.\n• 3 authors\n·\nNov 27 4\n".encode()
    [record] = hf_page.parse(listing, listed_on=dt.date(2025, 12, 1))
    assert record.source_key == "论文-标题"


def test_a_card_with_a_nul_or_undecodable_bytes_is_rejected_and_the_others_land():
    card = "Title {n}\nAbstract {n}.\n• 3 authors\n·\nNov 27 4\n"
    for bad in (b"\x00", b"\xff"):
        listing = b"".join(card.format(n=n).encode() for n in range(3))
        listing = listing.replace(b"Title 1", b"Title" + bad + b"1")
        results = list(hf_page.parse(listing, listed_on=dt.date(2025, 12, 1)))
        assert [type(r).__name__ for r in results] == ["PaperRecord", "Rejected", "PaperRecord"]
        assert "in title" in results[1].reason and results[1].position == "line 6"
        assert "\x00" not in results[1].raw and results[1].raw.encode("utf-8")
