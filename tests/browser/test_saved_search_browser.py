"""A reader in real Chromium: sign up, search, save the search, reopen it and open its feed."""

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from django.contrib.auth.models import User

from catalogue.models import SavedSearch
from ingest.sources import hf_page
from ingest.upsert import upsert_papers

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ATOM = {"atom": "http://www.w3.org/2005/Atom"}
PASSWORD = "correct horse battery staple"


@pytest.fixture
def seeded(seed_bytes):
    upsert_papers(hf_page.parse(seed_bytes, listed_on=dt.date(2025, 12, 24)))


def result_titles(page) -> list[str]:
    return page.locator("ol.results li.card h2").all_inner_texts()


def sign_up(page, live_server, username: str) -> None:
    page.goto(live_server.url)
    page.get_by_role("link", name="Sign up").click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.org")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(f"{live_server.url}/")


def search_decoupling_since_2025_with_upvotes(page) -> list[str]:
    page.get_by_label("Search papers").fill("decoupling")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_url("**/?q=decoupling*")
    page.get_by_label("Since").fill("2025-01-01")
    page.get_by_label("Min. upvotes").fill("1")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**since=2025-01-01**")
    return result_titles(page)


def feed_titles(page, url: str) -> list[str]:
    response = page.request.get(url)
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(response.body())
    return [e.findtext("atom:title", namespaces=ATOM) for e in root.findall("atom:entry", ATOM)]


def test_sign_up_save_a_search_reopen_it_and_follow_its_feed(live_server, page, seeded):
    sign_up(page, live_server, "ada")
    assert page.get_by_role("button", name="Log out").is_visible()

    narrowed = search_decoupling_since_2025_with_upvotes(page)
    assert 0 < len(narrowed) < 49

    page.get_by_label("Name of the saved search").fill("Recent decoupling")
    page.get_by_role("button", name="Save this search").click()
    page.wait_for_url("**/saved/")
    saved = SavedSearch.objects.get(user__username="ada")
    assert saved.query == "q=decoupling&since=2025-01-01&min_upvotes=1"

    page.get_by_role("link", name="Recent decoupling", exact=True).click()
    page.wait_for_url("**/?q=decoupling&since=2025-01-01&min_upvotes=1")
    assert result_titles(page) == narrowed

    page.goto(f"{live_server.url}/saved/")
    feed_href = page.get_by_role("link", name="Atom feed").get_attribute("href")
    assert feed_href == "/feed/?q=decoupling&since=2025-01-01&min_upvotes=1"
    assert set(feed_titles(page, live_server.url + feed_href)) == set(narrowed)


def test_saving_while_logged_out_keeps_the_search_through_login(live_server, page, seeded):
    User.objects.create_user("grace", "grace@example.org", PASSWORD)
    page.goto(live_server.url)
    narrowed = search_decoupling_since_2025_with_upvotes(page)
    page.get_by_label("Name of the saved search").fill("For later")
    page.get_by_role("button", name="Save this search").click()

    page.wait_for_url("**/accounts/login/**")
    page.get_by_label("Username").fill("grace")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.wait_for_url("**/saved/new/**")  # the form, filled in with what they were saving
    assert page.get_by_label("Name").input_value() == "For later"
    page.get_by_role("button", name="Save this search").click()
    page.wait_for_url("**/saved/")
    page.get_by_role("link", name="For later", exact=True).click()
    # Without the wait the titles can be read from /saved/ before the click's page arrives.
    page.wait_for_url("**/?q=decoupling&since=2025-01-01&min_upvotes=1")
    assert result_titles(page) == narrowed
