"""A reader in real Chromium: search, narrow, reload the bookmark, open a paper."""

import datetime as dt

import pytest

from ingest.sources import hf_page
from ingest.upsert import upsert_papers

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def seeded(seed_bytes):
    upsert_papers(hf_page.parse(seed_bytes, listed_on=dt.date(2025, 12, 24)))


def result_titles(page) -> list[str]:
    return page.locator("ol.results li.card h2").all_inner_texts()


def test_search_narrow_bookmark_and_open_a_paper(live_server, page, seeded):
    page.goto(live_server.url)
    assert page.locator(".summary").inner_text() == "49 papers"

    page.get_by_label("Search papers").fill('"linear attention"')
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_url("**/?q=*")
    phrase_results = result_titles(page)
    assert phrase_results and len(phrase_results) < 49
    assert page.locator("ol.results mark").count() > 0

    page.get_by_label("Since").fill("2025-01-01")
    page.get_by_label("Min. upvotes").fill("1")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**since=2025-01-01**")
    narrowed = result_titles(page)
    assert narrowed and set(narrowed) < set(phrase_results)

    bookmark = page.url
    page.goto(bookmark)
    assert result_titles(page) == narrowed
    assert page.get_by_label("Search papers").input_value() == '"linear attention"'

    page.locator("ol.results h2 a").first.click()
    page.wait_for_url("**/papers/*/")  # the list page has an h1 too
    assert page.locator("h1").inner_text() == narrowed[0]
    assert page.get_by_role("heading", name="Abstract").is_visible()


def test_bad_filter_value_shows_its_error_next_to_the_field(live_server, page, seeded):
    response = page.goto(f"{live_server.url}/?min_upvotes=lots")
    assert response.status == 400
    assert page.locator("#id_min_upvotes_error").inner_text() == "Enter a whole number."


def test_daily_weekly_and_monthly_pages_follow_their_neighbours(live_server, page, seeded):
    card = "Architecture Decoupling Is Not All You Need For Unified Multimodal Model"
    page.goto(f"{live_server.url}/papers/daily/2025-11-27/")
    assert page.locator("h1").inner_text() == "Papers of Thursday, November 27, 2025"
    assert card in result_titles(page)
    page.locator(".window-nav a[rel=next]").click()
    page.wait_for_url("**/papers/daily/2025-11-28/")
    assert card not in result_titles(page)

    page.goto(f"{live_server.url}/papers/week/2025-W48/")
    assert card in result_titles(page)
    page.locator(".window-nav a[rel=prev]").click()
    page.wait_for_url("**/papers/week/2025-W47/")

    page.goto(f"{live_server.url}/papers/month/2025-11/")
    titles = result_titles(page)
    assert card in titles
    upvotes = [int(t.split()[-1]) for t in page.locator(".upvotes").all_inner_texts()]
    assert upvotes == sorted(upvotes, reverse=True)  # most upvoted first
    page.locator(".window-nav a[rel=next]").click()
    page.wait_for_url("**/papers/month/2025-12/")
