"""Saved searches: save, list, rename, alerts, delete, unsubscribe; private to their owner."""

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse

from catalogue.models import SavedSearch
from ingest.sources import hf_page
from ingest.upsert import upsert_papers

pytestmark = pytest.mark.django_db


@pytest.fixture
def seed(seed_bytes):
    upsert_papers(hf_page.parse(seed_bytes, listed_on=dt.date(2025, 12, 24)))


@pytest.fixture
def reader(client):
    user = User.objects.create_user("ada", "ada@example.org", "a long passphrase")
    client.force_login(user)
    return user


@pytest.fixture
def other_reader():
    return User.objects.create_user("bob", "bob@example.org", "another passphrase")


def save(client, query: str, name: str = "Decoupling"):
    return client.post(reverse("saved-create"), {"query": query, "name": name})


def result_titles(client, query: str) -> list[str]:
    response = client.get(f"{reverse('paper-list')}?{query}")
    return [paper.title for paper in response.context["page"].paginator.object_list]


# --- saving ------------------------------------------------------------------------------------


def test_saving_stores_the_canonical_query_under_its_name(client, reader):
    response = save(client, "?page=2&sort=newest&min_upvotes=03&q=decoupling&utm=x")
    assert response.status_code == 302 and response.url == reverse("saved-list")
    saved = SavedSearch.objects.get(user=reader)
    assert saved.name == "Decoupling"
    assert saved.query == "q=decoupling&min_upvotes=3&sort=newest"
    assert saved.alerts  # the digest is what saving is for; one click turns it off


def test_equal_searches_are_stored_equally(client, reader):
    save(client, "topic=&sort=newest&since=2025-01-01", name="one")
    save(client, "since=2025-01-01", name="two")
    assert set(SavedSearch.objects.values_list("query", flat=True)) == {"since=2025-01-01"}


def test_the_saved_search_opens_the_same_results(client, reader, seed):
    query = "q=decoupling&since=2024-06-01&min_upvotes=1"
    save(client, query)
    saved = SavedSearch.objects.get()
    assert result_titles(client, saved.query) == result_titles(client, query)


def test_saving_an_invalid_search_is_a_form_error(client, reader):
    response = save(client, "min_upvotes=lots")
    assert response.status_code == 400
    assert "invalid parameters" in response.content.decode()
    assert not SavedSearch.objects.exists()


def test_a_name_is_required_and_unique_per_reader(client, reader, other_reader):
    assert save(client, "q=a", name="  ").status_code == 400
    assert save(client, "q=a", name="Mine").status_code == 302
    response = save(client, "q=b", name="Mine")
    assert response.status_code == 400
    assert "already have a saved search with this name" in response.content.decode()
    SavedSearch.objects.create(user=other_reader, name="Theirs", query="")
    assert save(client, "q=c", name="Theirs").status_code == 302  # names are per reader


@pytest.mark.parametrize("name", ["Two\nlines", "Tab\there", "Bell\x07"])
def test_a_name_is_one_line_since_it_becomes_an_email_subject(client, reader, name):
    response = save(client, "q=a", name=name)
    assert response.status_code == 400
    assert "one line of text, without control characters" in response.content.decode()
    assert not SavedSearch.objects.exists()


def test_saving_when_logged_out_goes_through_login_and_keeps_the_search(client, reader):
    client.logout()
    response = save(client, "q=decoupling", name="Later")
    assert response.status_code == 302
    login_url = urlsplit(response.url)
    assert login_url.path == reverse("login")
    next_url = parse_qs(login_url.query)["next"][0]
    assert not SavedSearch.objects.exists()
    client.force_login(reader)
    form = client.get(next_url)
    assert form.status_code == 200
    assert form.context["form"]["query"].value() == "q=decoupling"
    assert form.context["form"]["name"].value() == "Later"
    assert 'value="q=decoupling"' in form.content.decode()


def test_the_include_renders_a_form_posting_the_canonical_query():
    html = render_to_string(
        "catalogue/_save_search.html", {"canonical_query": "q=a+b&since=2025-01-01"}
    )
    assert f'action="{reverse("saved-create")}"' in html
    assert 'name="query" value="q=a+b&amp;since=2025-01-01"' in html
    assert 'name="name"' in html


# --- listing and changing ----------------------------------------------------------------------


def test_the_list_shows_own_searches_with_links_to_results_and_feed(client, reader, other_reader):
    SavedSearch.objects.create(user=reader, name="Mine", query="q=decoupling&min_upvotes=3")
    SavedSearch.objects.create(user=other_reader, name="Theirs", query="q=secret")
    html = client.get(reverse("saved-list")).content.decode()
    assert "Mine" in html and "Theirs" not in html and "secret" not in html
    assert 'href="/?q=decoupling&amp;min_upvotes=3"' in html
    assert 'href="/feed/?q=decoupling&amp;min_upvotes=3"' in html


def test_the_list_requires_logging_in(client):
    response = client.get(reverse("saved-list"))
    assert response.status_code == 302
    assert response.url == f"{reverse('login')}?next={reverse('saved-list')}"


def test_rename_and_turn_alerts_off_and_on(client, reader):
    saved = SavedSearch.objects.create(user=reader, name="Old", query="q=x")
    edit = reverse("saved-edit", args=[saved.pk])
    assert client.get(edit).status_code == 200
    assert client.post(edit, {"name": "New", "alerts": "on"}).status_code == 302
    saved.refresh_from_db()
    assert (saved.name, saved.alerts) == ("New", True)
    client.post(reverse("saved-alerts", args=[saved.pk]), {"alerts": "off"})
    saved.refresh_from_db()
    assert not saved.alerts
    client.post(reverse("saved-alerts", args=[saved.pk]), {"alerts": "on"})
    saved.refresh_from_db()
    assert saved.alerts
    assert saved.query == "q=x"


def test_renaming_to_another_searchs_name_is_a_form_error(client, reader):
    SavedSearch.objects.create(user=reader, name="Taken", query="")
    saved = SavedSearch.objects.create(user=reader, name="Mine", query="q=x")
    response = client.post(reverse("saved-edit", args=[saved.pk]), {"name": "Taken"})
    assert response.status_code == 200
    assert "already have a saved search with this name" in response.content.decode()


def test_delete_asks_then_deletes(client, reader):
    saved = SavedSearch.objects.create(user=reader, name="Gone soon", query="q=x")
    url = reverse("saved-delete", args=[saved.pk])
    assert "Delete “Gone soon”?" in client.get(url).content.decode()
    assert SavedSearch.objects.exists()
    assert client.post(url).status_code == 302
    assert not SavedSearch.objects.exists()


@pytest.mark.parametrize(
    ("name", "method", "data"),
    [
        ("saved-edit", "get", {}),
        ("saved-edit", "post", {"name": "Hijacked", "alerts": ""}),
        ("saved-alerts", "post", {"alerts": "off"}),
        ("saved-delete", "get", {}),
        ("saved-delete", "post", {}),
    ],
)
def test_another_readers_search_is_a_404(client, reader, other_reader, name, method, data):
    theirs = SavedSearch.objects.create(user=other_reader, name="Theirs", query="q=secret")
    response = getattr(client, method)(reverse(name, args=[theirs.pk]), data)
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert (theirs.name, theirs.alerts) == ("Theirs", True)


def test_changes_require_post(client, reader):
    saved = SavedSearch.objects.create(user=reader, name="Mine", query="")
    assert client.get(reverse("saved-alerts", args=[saved.pk])).status_code == 405


# --- unsubscribe -------------------------------------------------------------------------------


def test_unsubscribe_link_asks_before_turning_alerts_off(other_reader):
    saved = SavedSearch.objects.create(user=other_reader, name="Weekly", query="q=x")
    url = reverse("saved-unsubscribe", args=[saved.unsubscribe_token])
    anonymous = Client(enforce_csrf_checks=True)
    page = anonymous.get(url)
    assert page.status_code == 200 and 'method="post"' in page.content.decode()
    saved.refresh_from_db()
    assert saved.alerts  # link scanners that GET it unsubscribe no one
    assert anonymous.post(url).status_code == 200
    saved.refresh_from_db()
    assert not saved.alerts
    assert SavedSearch.objects.filter(pk=saved.pk).exists()  # the search itself stays


def test_one_click_unsubscribe_post_per_rfc_8058(other_reader):
    saved = SavedSearch.objects.create(user=other_reader, name="Weekly", query="q=x")
    url = reverse("saved-unsubscribe", args=[saved.unsubscribe_token])
    response = Client(enforce_csrf_checks=True).post(
        url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    saved.refresh_from_db()
    assert not saved.alerts


def test_unknown_unsubscribe_token_is_a_404(client):
    assert client.get(reverse("saved-unsubscribe", args=["nope"])).status_code == 404
    assert client.post(reverse("saved-unsubscribe", args=["nope"])).status_code == 404
