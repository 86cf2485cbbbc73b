"""Whole list pages for readers without a session come from Redis until the catalogue changes."""

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


@pytest.mark.parametrize("path", ["/?q=cached+attention", "/api/papers?q=cached+attention"])
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
