"""Whole pages for readers without a session come from Redis until the catalogue changes."""

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalogue.models import Paper

pytestmark = pytest.mark.django_db


@pytest.fixture
def cached(settings):
    settings.PAGE_CACHE_SECONDS = 60
    Paper.objects.create(
        arxiv_id="2411.00001", title="Cached attention", published_on=dt.date.today()
    )


def get(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    return response, [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize(
    "path",
    [
        "/?q=cached+attention",
        "/api/papers?q=cached+attention",
        "/feed/?q=cached+attention",
        "/papers/2411.00001/",
    ],
)
def test_an_anonymous_readers_second_request_is_served_from_the_cache(client, cached, path):
    first, _ = get(client, path)
    second, queries = get(client, path)
    assert second["X-Page-Cache"] == "hit"
    assert second.content == first.content
    assert len(queries) == 1  # only the catalogue's version: no search, no count


def test_a_change_to_any_paper_is_seen_at_once(client, cached):
    get(client, "/?q=attention+paper")
    Paper.objects.create(arxiv_id="2411.00002", title="Another attention paper")
    response, _ = get(client, "/?q=attention+paper")
    assert "X-Page-Cache" not in response
    assert "/papers/2411.00002/" in response.content.decode()


def test_a_curators_edit_of_a_paper_is_seen_on_its_page_at_once(client, cached):
    get(client, "/papers/2411.00001/")
    Paper.objects.filter(arxiv_id="2411.00001").update(
        title="Cached attention, corrected", updated_at=dt.datetime.now(tz=dt.UTC)
    )
    response, _ = get(client, "/papers/2411.00001/")
    assert "X-Page-Cache" not in response
    assert "Cached attention, corrected" in response.content.decode()


def test_a_missing_paper_is_not_cached(client, cached):
    for _ in range(2):
        response, _ = get(client, "/papers/2411.99999/")
        assert response.status_code == 404 and "X-Page-Cache" not in response


def test_signed_in_readers_pages_are_never_cached(client, cached):
    client.force_login(User.objects.create_user("ada", password="x" * 12))
    get(client, "/?q=cached")
    response, _ = get(client, "/?q=cached")
    assert "X-Page-Cache" not in response
    assert "csrfmiddlewaretoken" in response.content.decode()  # the POST "save" form


def test_anonymous_pages_carry_no_csrf_token_and_save_through_the_login(client, cached):
    html = client.get("/?q=cached").content.decode()
    assert "csrfmiddlewaretoken" not in html
    assert f'method="get" action="{reverse("saved-create")}"' in html
    response = client.get(reverse("saved-create"), {"query": "q=cached", "name": "Later"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_errors_are_not_cached(client, cached):
    get(client, "/?min_upvotes=lots")
    response, _ = get(client, "/?min_upvotes=lots")
    assert response.status_code == 400 and "X-Page-Cache" not in response


def test_a_cached_feed_keeps_its_date_for_readers_polling_with_if_modified_since(client, cached):
    """The feed's Last-Modified comes back with the cached bytes, so a polling reader still
    gets its 304 from the cache (conditional_page compares it)."""
    first, _ = get(client, "/feed/?q=cached")
    again, _ = get(client, "/feed/?q=cached")
    assert again["X-Page-Cache"] == "hit"
    assert again["Last-Modified"] == first["Last-Modified"]
    assert again["Content-Type"] == first["Content-Type"] == "application/atom+xml; charset=utf-8"
    polled = client.get("/feed/?q=cached", HTTP_IF_MODIFIED_SINCE=first["Last-Modified"])
    assert polled.status_code == 304


@pytest.mark.parametrize("path", ["/api/papers?q=cached", "/feed/?q=cached"])
def test_a_page_under_another_host_links_to_that_host(client, cached, settings, path):
    """The API and feeds hold absolute links: one host's cached copy is not another's."""
    settings.ALLOWED_HOSTS = ["one.example", "two.example"]
    client.get(path, HTTP_HOST="one.example")
    other = client.get(path, HTTP_HOST="two.example")
    assert "X-Page-Cache" not in other
    assert "two.example/papers/" in other.content.decode()
    assert "one.example" not in other.content.decode()
    assert client.get(path, HTTP_HOST="two.example")["X-Page-Cache"] == "hit"
