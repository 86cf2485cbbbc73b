"""Path segments and parameters that used to be server errors: each is a 404 (a path that names
nothing) or a 400 with the field's error (a parameter the form refuses), never a 500.

The fuzz tests (test_fuzz_http.py) look for more; every 500 they found has its example here.
"""

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from catalogue import charts, search
from catalogue.models import Paper, SavedSearch, Topic

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue():
    Paper.objects.create(
        arxiv_id="2401.01234", title="Linear attention", upvotes=3, published_on=dt.date(2024, 1, 5)
    )
    Paper.objects.create(arxiv_id="0001.00001", title="The first", published_on=dt.date.min)
    Paper.objects.create(arxiv_id="9912.99999", title="The last", published_on=dt.date.max)
    Topic.objects.create(name="Linear attention", slug="linear-attention", query="attention")


@pytest.fixture
def reader(client):
    user = User.objects.create_user("ada", "ada@example.org", "a long passphrase")
    client.force_login(user)
    return user


# --- the first and last day, week and month a date can name ------------------------------------


@pytest.mark.parametrize(
    ("url_name", "first", "last"),
    [
        ("day-page", "0001-01-01", "9999-12-31"),
        ("week-page", "0001-W01", "9999-W52"),
        ("month-page", "0001-01", "9999-12"),
    ],
)
def test_the_ends_of_the_calendar_are_pages_without_a_link_beyond(
    client, catalogue, url_name, first, last
):
    oldest = client.get(reverse(url_name, args=[first]))
    assert oldest.status_code == 200
    assert oldest.context["nav"]["previous"] is None
    assert oldest.context["nav"]["next"] is not None
    assert 'rel="prev"' not in oldest.content.decode().split("window-nav", 1)[1][:300]
    newest = client.get(reverse(url_name, args=[last]))
    assert newest.status_code == 200
    assert newest.context["nav"]["next"] is None
    assert newest.context["nav"]["previous"] is not None


def test_the_ends_of_the_calendar_list_their_papers(client, catalogue):
    first = client.get("/papers/daily/0001-01-01/")
    assert [p.arxiv_id for p in first.context["page"].object_list] == ["0001.00001"]
    last = client.get("/papers/month/9999-12/")
    assert [p.arxiv_id for p in last.context["page"].object_list] == ["9912.99999"]


@pytest.mark.parametrize(
    "path",
    [
        "/papers/daily/0000-12-31/",
        "/papers/daily/10000-01-01/",
        "/papers/week/0000-W52/",
        "/papers/week/10000-W01/",
        "/papers/week/9999-W53/",  # 9999 has 52 ISO weeks
        "/papers/month/0000-12/",
        "/papers/month/10000-01/",
        "/papers/week/99999999999999999999999-W01/",
        "/papers/week/2025-W99999999999999999999999/",
    ],
)
def test_dates_beyond_the_calendar_are_404(client, path):
    assert client.get(path).status_code == 404


# Digits that str.isdigit() accepts: superscripts (int() refuses them), Arabic-Indic and
# full-width digits (int() reads them). A date in a path is written in ASCII digits only.
@pytest.mark.parametrize(
    "path",
    [
        "/papers/daily/2025-11-2²/",
        "/papers/daily/٢٠٢٥-١١-٢٧/",
        "/papers/daily/２０２５-11-27/",
        "/papers/week/2025-W4²/",
        "/papers/week/٢٠٢٥-W48/",
        "/papers/week/2025-W٤٨/",
        "/papers/month/2025-1²/",
        "/papers/month/٢٠٢٥-11/",
        # Other spellings fromisoformat() reads: one URL per page.
        "/papers/daily/20251127/",
        "/papers/daily/2025-W48-1/",
        "/papers/week/2025-W48-1/",
        "/papers/month/2025-W48/",
    ],
)
def test_dates_in_paths_are_ascii_iso_dates(client, path):
    assert client.get(path).status_code == 404


def test_papers_at_both_ends_of_the_calendar_give_a_bounded_timeline(client, catalogue):
    response = client.get("/")
    assert response.status_code == 200
    bars = response.context["timeline"]
    assert len(bars) == charts.MAX_MONTHS  # not one bar per month since year 1
    assert bars[-1].month == dt.date(9999, 12, 1)
    assert bars[0].count == 2  # year 1 and 2024 are summed into the first bar


# --- NUL bytes and odd digits in other path segments --------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/papers/2401.01234%00/",
        "/papers/ab%00cd/",
        "/papers/%00/",
        "/papers/²/",
        "/papers/١٢/",
        "/topics/linear%00attention/",
        "/papers/" + "9" * 5000 + "/",  # int() refuses 4,300 digits or more
        "/papers/" + "9" * 20 + "/",
        "/papers/daily/2025-11-27%00/",
    ],
)
def test_odd_characters_in_paths_are_404(client, catalogue, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("token", ["abc%00def", "%00", "²", "a\x01b"])
def test_unsubscribe_tokens_with_odd_characters_are_404(client, method, token):
    user = User.objects.create_user("bob", "bob@example.org", "another passphrase")
    SavedSearch.objects.create(user=user, name="Weekly", query="q=x")
    response = getattr(client, method)(f"/saved/unsubscribe/{token}/")
    assert response.status_code == 404


@pytest.mark.parametrize("pk", ["²", "١", "99999999999999999999999", "9223372036854775808"])
@pytest.mark.parametrize("action", ["edit", "delete"])
def test_saved_search_ids_beyond_any_row_are_404(client, reader, pk, action):
    assert client.get(f"/saved/{pk}/{action}/").status_code == 404


def test_a_search_too_long_to_carry_through_the_login_is_an_explained_400(client):
    # Saving a search signed out redirects to the login with the search in ``next``: Django
    # refuses to redirect to a URL of more than 16,384 characters (DisallowedRedirect).
    response = client.get("/saved/new/", {"query": "q=" + "x" * 20_000, "name": "Long"})
    assert response.status_code == 400
    assert "too long or malformed" in response.content.decode()


@pytest.mark.parametrize("next_url", ["0", "paper-list", "saved-list", "%00"])
def test_signup_goes_on_to_a_next_that_is_not_a_path_as_to_the_home_page(client, reader, next_url):
    # A bare word was reversed as a URL name: "0" was a NoReverseMatch.
    response = client.get(f"/accounts/signup/?next={next_url}")
    assert response.status_code == 302 and response.url == "/"


# --- parameters: a 400 that names the field ---------------------------------------------------


@pytest.mark.parametrize("value", ["linear%00attention", "%00", "²"])
def test_a_nul_or_odd_topic_parameter_is_a_form_error(client, catalogue, value):
    page = client.get(f"/?topic={value}")
    assert page.status_code == 400
    assert "topic" in page.context["filter"].errors
    api = client.get(f"/api/papers?topic={value}")
    assert api.status_code == 400 and "topic" in api.json()["errors"]
    feed = client.get(f"/feed/?topic={value}")
    assert feed.status_code == 400 and b"topic:" in feed.content


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("min_upvotes=²", "min_upvotes"),
        ("min_upvotes=" + "9" * 100, "min_upvotes"),
        ("since=99999-01-01", "since"),
        ("until=2025-1²-01", "until"),
        ("like=2401.01234%00", "like"),
        ("q=a%00b", "q"),
        ("author=%00", "author"),
        ("q=" + "x" * 100_000, "q"),
    ],
)
def test_bad_parameter_values_are_form_errors(client, catalogue, query, field):
    page = client.get(f"/?{query}")
    assert page.status_code == 400 and field in page.context["filter"].errors
    api = client.get(f"/api/papers?{query}")
    assert api.status_code == 400 and field in api.json()["errors"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=²", "page"),
        ("page=" + "9" * 30, "page"),
        ("page_size=²", "page_size"),
        ("page_size=" + "9" * 30, "page_size"),
    ],
)
def test_bad_api_paging_is_a_form_error(client, catalogue, query, field):
    response = client.get(f"/api/papers?{query}")
    assert response.status_code == 400 and field in response.json()["errors"]


@pytest.mark.parametrize("page", ["²", "١٢", "9" * 30, "9" * 5000, "-1", "1e9", "%00"])
def test_odd_page_numbers_on_the_list_page_are_a_page_or_an_explained_400(client, catalogue, page):
    assert_a_page_or_explained_400(client.get(f"/?page={page}"))


def assert_a_page_or_explained_400(response) -> None:
    """A page number the list cannot show is clamped to a page, or (past the last page) a 400
    that says where pages stop: never a 500."""
    if response.status_code == 400:
        assert response.context["filter"].errors
    else:
        assert response.status_code == 200
        page = response.context["page"]
        assert 1 <= page.number <= page.paginator.num_pages


def test_control_characters_in_a_feed_search_are_left_out_of_the_xml(client, catalogue):
    # XML 1.0 cannot carry them: Django's feed writer refuses them with an exception.
    response = client.get("/feed/?q=linear\x01attention")
    assert response.status_code == 200
    assert b"\x01" not in response.content
    assert "“linear attention”".encode() not in response.content  # the title keeps what was asked
    assert "“linearattention”".encode() in response.content


def test_control_characters_in_a_stored_title_are_left_out_of_the_feed(client, catalogue):
    title, abstract = "Bell\x07 and\x1b[31m escape", "\x0b"
    Paper.objects.create(arxiv_id="2401.05555", title=title, abstract=abstract)
    response = client.get("/feed/")
    assert response.status_code == 200
    assert b"Bell and[31m escape" in response.content


# --- search syntax ------------------------------------------------------------------------------


@pytest.mark.parametrize("q", ["title:attention", "title:author:", 'title:"linear attention" x'])
@pytest.mark.parametrize("mode", ["hybrid", "keyword"])
def test_title_terms_rank_by_relevance(client, catalogue, q, mode):
    # A title: term was weighted twice in the titles' candidate query ("'attent':A:A").
    page = client.get("/", {"q": q, "mode": mode})
    assert page.status_code == 200
    assert client.get("/api/papers", {"q": q, "mode": mode}).status_code == 200


def test_a_title_term_is_weighted_once_in_the_title_query():
    assert search.parse("title:attention").title_query == "(('attent':A))"
    assert search.parse("abstract:attention").title_query == "(('attent':A))"
