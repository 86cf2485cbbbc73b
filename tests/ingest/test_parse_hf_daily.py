import datetime as dt
import json
import re
from pathlib import Path

import pytest

from ingest.records import PaperRecord, ParseError, Rejected
from ingest.sources import hf_daily

DATA = Path(__file__).resolve().parent.parent / "data" / "formats" / "hf_daily_papers"
DAILY = DATA / "daily"
OTHER = DATA / "other_endpoints"


def records(path: Path, **kwargs) -> list:
    return list(hf_daily.parse(path.read_bytes(), **kwargs))


def by_id(results: list) -> dict[str, PaperRecord]:
    return {r.arxiv_id: r for r in results if isinstance(r, PaperRecord)}


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("2024-05-27.json", 13),
        ("2024-06-17.json", 18),
        ("2024-06-21.json", 21),
        ("2025-03-03.json", 7),
        ("2025-03-14.json", 26),
        ("2025-05-19.json", 9),
        ("2026-08-21.json", 17),
    ],
)
def test_every_item_of_a_daily_file_becomes_a_record(name, count):
    results = records(DAILY / name)
    assert len(results) == count
    assert all(isinstance(r, PaperRecord) for r in results)


def test_a_2024_item_maps_every_field():
    paper = records(DAILY / "2024-05-27.json")[0]
    assert paper.source == "hf_daily"
    assert paper.source_key == paper.arxiv_id == "2405.15738"
    assert paper.title == (
        "ConvLLaVA: Hierarchical Backbones as Visual Encoder for Large Multimodal Models"
    )
    assert paper.authors[:3] == ("Chunjiang Ge", "Sijie Cheng", "Ziming Wang")
    assert len(paper.authors) == 9
    assert paper.published_on == dt.date(2024, 5, 24)
    assert (paper.upvotes, paper.comments, paper.github_stars) == (32, 3, None)
    assert paper.abstract.startswith("High-resolution Large Multimodal Models (LMMs) encounter")
    assert "\n" not in paper.abstract
    # 2024 items have no githubRepo: the link comes from the abstract.
    assert paper.code_url == "https://github.com/alibaba/conv-llava"
    assert paper.extra["thumbnail"].endswith("/papers/2405.15738.png")  # the old mediaUrl key


def test_a_2026_item_maps_github_project_keywords_and_organization():
    paper = by_id(records(DAILY / "2026-08-21.json"))["2608.19880"]
    assert paper.title == "EnvHarness: Awakening Static Worlds for Agent Learning"
    assert paper.published_on == dt.date(2026, 8, 20)
    assert paper.listed_on == dt.date(2026, 8, 21)
    assert (paper.upvotes, paper.comments, paper.github_stars) == (163, 1, 8)
    assert paper.code_url == "https://github.com/google-research/envharness"
    assert paper.project_url == "https://envharness.com/"
    assert paper.keywords[:3] == ("LLM agents", "Environment Harness", "EnvHarness")
    assert paper.extra["organization"] == "Google"
    assert paper.extra["ai_summary"].startswith("EnvHarness and EnvRigger dynamically reshape")
    assert paper.withdrawn is False


def test_2024_listed_on_is_the_day_the_item_was_posted_to_daily():
    assert {r.listed_on for r in records(DAILY / "2024-06-21.json")} == {dt.date(2024, 6, 21)}


def test_submitted_on_daily_gives_listed_on():
    assert {r.listed_on for r in records(DAILY / "2025-05-19.json")} == {dt.date(2025, 5, 19)}


def test_shifted_top_level_published_at_is_never_taken_for_the_listing_day():
    # March 2025, before submittedOnDailyAt existed: the top-level publishedAt is
    # paper.publishedAt minus 4 h, which would put papers on 2025-03-13.
    assert {r.listed_on for r in records(DAILY / "2025-03-14.json")} == {None}


def test_requested_date_fills_listed_on_when_the_payload_lacks_it():
    results = records(DAILY / "2025-03-14.json", listed_on=dt.date(2025, 3, 14))
    assert {r.listed_on for r in results} == {dt.date(2025, 3, 14)}


def test_display_title_is_used_when_hugging_face_stripped_its_latex():
    papers = by_id(records(DAILY / "2024-06-21.json"))
    # paper.title says "nabla^2DFT"; the display title keeps "$\nabla^2$DFT".
    assert papers["2406.14347"].title.startswith("∇^2DFT: A Universal Quantum Chemistry Dataset")
    assert papers["2406.12045"].title.startswith("τ-bench: A Benchmark for Tool-Agent-User")


def test_latex_macros_in_titles_are_rendered():
    autocoder = by_id(records(DAILY / "2024-05-27.json"))["2405.14906"]
    assert autocoder.title == "AutoCoder: Enhancing Code Large Language Model with AIEV-Instruct"
    distill = by_id(records(DAILY / "2025-05-19.json"))["2505.07675"]
    assert distill.title.endswith("Vision-Language Models via Dual-Head Optimization")


def test_unicode_author_names_are_kept():
    papers = by_id(records(DAILY / "2024-05-27.json"))
    assert "Ahmet Üstün" in papers["2405.15032"].authors
    assert {"Timothée Darcet", "Hervé Jégou"} <= set(papers["2405.15613"].authors)


def test_hidden_authors_are_still_authors():
    paper = by_id(records(DAILY / "2024-06-17.json"))["2406.06263"]
    assert paper.authors[0] == "Amir Hossein Kargaran"
    assert len(paper.authors) == 3


def test_trending_items_never_on_daily_have_no_listing_day():
    papers = by_id(records(OTHER / "api_daily_papers_sort-trending_fastpaper-cli.json"))
    assert list(papers) == ["2412.20138", "2503.08638"]
    trading = papers["2412.20138"]
    assert trading.listed_on is None  # its top-level publishedAt is the shifted arXiv date
    assert trading.published_on == dt.date(2024, 12, 28)
    assert trading.github_stars == 107465
    assert trading.code_url == "https://github.com/tauricresearch/tradingagents"
    assert papers["2503.08638"].listed_on == dt.date(2025, 3, 12)


def test_search_results_parse_like_daily_items():
    papers = by_id(records(OTHER / "api_papers_search_q-diffusion_fastpaper-cli.json"))
    assert list(papers) == ["2006.11239", "2112.10752", "2202.00512"]
    ddpm = papers["2006.11239"]
    assert ddpm.title == "Denoising Diffusion Probabilistic Models"
    assert ddpm.authors == ("Jonathan Ho", "Ajay Jain", "Pieter Abbeel")
    assert (ddpm.published_on, ddpm.listed_on) == (dt.date(2020, 6, 19), None)
    assert ddpm.comments == 5
    assert ddpm.code_url == "https://github.com/hojonathanho/diffusion"


def test_single_paper_object_is_one_record():
    [paper] = records(OTHER / "api_papers_2608.09888_fastpaper-cli.json")
    assert paper.arxiv_id == "2608.09888"
    assert paper.title == "BDH-CQ: In-Context Learning with Recurrent Latent Reasoning"
    assert {"Björn Engdahl", "Przemysław Uznański"} <= set(paper.authors)
    assert (paper.upvotes, paper.comments, paper.github_stars) == (782, None, 11184)
    assert paper.listed_on == dt.date(2026, 8, 11)
    assert paper.extra["organization"] == "Pathway"


def test_an_open_file_can_be_parsed():
    with open(DAILY / "2025-03-03.json", "rb") as stream:
        assert len(list(hf_daily.parse(stream))) == 7


def test_empty_day_yields_nothing():
    assert list(hf_daily.parse(b"[]")) == []


def test_error_body_raises_parse_error():
    body = '{"error":"✖ Too big: expected number to be <=100\\n  → at limit"}'.encode()
    with pytest.raises(ParseError, match="Too big"):
        list(hf_daily.parse(body))


def test_truncated_json_raises_parse_error_with_line_and_column():
    data = (DAILY / "2025-03-03.json").read_bytes()
    with pytest.raises(ParseError) as error:
        list(hf_daily.parse(data[: len(data) // 2]))
    assert error.value.position.startswith("line ")
    assert ", column " in error.value.position


def test_json_that_is_not_a_list_of_papers_raises_parse_error():
    with pytest.raises(ParseError, match="expected a JSON array"):
        list(hf_daily.parse(b'"hello"'))


def test_corrupted_items_are_rejected_and_the_rest_still_parse():
    items = json.loads((DAILY / "2025-03-03.json").read_bytes())
    del items[1]["paper"]["id"]
    items[3] = "not an item"
    results = list(hf_daily.parse(json.dumps(items).encode()))
    rejected = [r for r in results if isinstance(r, Rejected)]
    assert [(r.reason, r.position) for r in rejected] == [
        ("missing paper id", "item 2"),
        ("item is a str, not an object", "item 4"),
    ]
    assert "Chain of Draft" in rejected[0].raw
    assert sum(isinstance(r, PaperRecord) for r in results) == 5


def test_item_without_any_title_is_rejected():
    item = {"paper": {"id": "2502.20730", "authors": [], "publishedAt": "2025-02-28T05:23:10Z"}}
    [result] = hf_daily.parse(json.dumps([item]).encode())
    assert result == Rejected("missing title", result.raw, "item 1")


def test_withdrawn_at_marks_the_paper_withdrawn():
    paper = {"id": "2502.20730", "title": "T", "authors": [], "withdrawnAt": "2025-03-01T00:00:00Z"}
    [result] = hf_daily.parse(json.dumps([{"paper": paper}]).encode())
    assert result.withdrawn is True


def test_format_sniffing_recognises_daily_json_only():
    assert hf_daily.looks_like((DAILY / "2026-08-21.json").read_bytes()[:4096])
    atom = DATA.parent / "arxiv_api" / "legacy_2019-08-10_all-science_m10.xml"
    assert not hf_daily.looks_like(atom.read_bytes()[:4096])


# --- hostile content -------------------------------------------------------------------------


def daily_items() -> list:
    return json.loads((DAILY / "2025-03-03.json").read_bytes())


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(document.cookie)",
        "JaVaScRiPt:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
    ],
)
def test_a_script_project_link_is_dropped_and_the_paper_still_lands(link):
    items = daily_items()
    items[0]["paper"]["projectPage"] = link
    results = list(hf_daily.parse(json.dumps(items).encode()))
    assert all(isinstance(r, PaperRecord) for r in results)
    assert results[0].project_url == ""
    assert results[0].title == records(DAILY / "2025-03-03.json")[0].title


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("title", "Attention\u0000 Is All", "contains a NUL character in title"),
        ("summary", "An abstract \ud800 with a lone surrogate", "lone surrogate"),
        ("upvotes", -3, "upvotes -3 is out of range"),
        ("upvotes", 10**12, "upvotes 1000000000000 is out of range"),
        ("id", "a" * 400, "source_key is longer than 300 characters"),
    ],
)
def test_an_item_postgresql_cannot_store_is_rejected_and_the_rest_lands(field, value, reason):
    items = daily_items()
    items[2]["paper"][field] = value
    results = list(hf_daily.parse(json.dumps(items).encode()))
    [rejected] = [r for r in results if isinstance(r, Rejected)]
    assert reason in rejected.reason and rejected.position == "item 3"
    assert "\x00" not in rejected.raw and rejected.raw.encode("utf-8")  # storable itself
    assert sum(isinstance(r, PaperRecord) for r in results) == len(items) - 1


def test_raw_nul_and_invalid_utf8_inside_one_item_reject_that_item_only():
    data = (DAILY / "2025-03-03.json").read_bytes()
    title = json.loads(data)[1]["paper"]["title"].encode()
    for bad in (b"\x00", b"\xff\xfe"):
        results = list(hf_daily.parse(data.replace(title, title[:5] + bad + title[5:], 1)))
        [rejected] = [r for r in results if isinstance(r, Rejected)]
        assert rejected.position == "item 2" and "in title" in rejected.reason
        assert sum(isinstance(r, PaperRecord) for r in results) == 6


def test_a_cut_array_yields_the_items_before_the_cut_then_says_where():
    data = (DAILY / "2025-03-03.json").read_bytes()
    full = records(DAILY / "2025-03-03.json")
    third = [m.start() for m in re.finditer(rb'\n  \{\n    "paper"', data)][2]
    parsed = hf_daily.parse(data[: third + 100])  # cut inside the third item
    assert [next(parsed), next(parsed)] == full[:2]
    with pytest.raises(ParseError, match="truncated or invalid JSON in item 3") as error:
        next(parsed)
    line = int(error.value.position.split()[1].rstrip(","))
    assert data[:third].count(b"\n") < line <= data[: third + 100].count(b"\n") + 1


def test_a_number_of_thousands_of_digits_rejects_its_item_not_the_file():
    """int() refuses over 4,300 digits; a count that long is out of range, so rejected."""
    data = (DAILY / "2025-03-03.json").read_bytes()
    data = data.replace(b'"upvotes": ', b'"upvotes": ' + b"9" * 5000, 1)
    results = list(hf_daily.parse(data))
    assert "upvotes 100000000000000000000 is out of range" in results[0].reason
    assert all(isinstance(r, PaperRecord) for r in results[1:]) and len(results) == 7
