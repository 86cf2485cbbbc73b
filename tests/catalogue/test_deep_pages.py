"""Where pages stop: past the last reachable page (LIST_MAX_RESULTS results, or a relevance
ranking's candidates) the list pages and the API answer 400, saying to narrow the search,
instead of the last page again under endless URLs a crawler would follow."""

import datetime as dt

import pytest
from django.urls import reverse

from catalogue.models import Paper

pytestmark = pytest.mark.django_db

START = dt.date(2024, 1, 1)
NARROW = "To see others, narrow the search"


@pytest.fixture
def papers(settings):
    """60 papers, one a day, every other on attention; pages reach the first 30 results."""
    settings.LIST_MAX_RESULTS = 30
    Paper.objects.bulk_create(
        Paper(
            arxiv_id=f"2401.{i:05d}",
            title=f"Paper {i}" + (" on attention" if i % 2 else ""),
            abstract="We study models.",
            published_on=START + dt.timedelta(days=i),
            upvotes=i,
        )
        for i in range(60)
    )


@pytest.mark.parametrize("page", ["3", "401", "40000", "9" * 30])
def test_a_list_page_past_the_last_is_a_400_that_says_to_narrow_the_search(client, papers, page):
    response = client.get(reverse("paper-list"), {"page": page})
    assert response.status_code == 400
    html = response.content.decode()
    assert f"There are 2 pages, reaching 30 results. {NARROW}" in html
    assert 'class="results"' not in html  # no papers: not the last page again


def test_the_last_reachable_page_still_answers(client, papers):
    response = client.get(reverse("paper-list"), {"page": 2, "sort": "upvotes"})
    assert response.status_code == 200
    assert [p.upvotes for p in response.context["page"].object_list] == list(range(34, 29, -1))


def test_day_and_month_pages_stop_at_their_last_page_too(client, papers):
    month = client.get(reverse("month-page", args=["2024-01"]), {"page": 3})
    assert month.status_code == 400 and NARROW in month.content.decode()
    day = client.get(reverse("day-page", args=["2024-01-05"]), {"page": 2})
    assert day.status_code == 400
    assert f"There is 1 page, reaching 1 results. {NARROW}" in day.content.decode()


def test_a_search_stops_at_its_last_page(client, papers):
    search = {"q": "attention", "page": 2}
    assert client.get(reverse("paper-list"), search).status_code == 200  # 30 matches
    response = client.get(reverse("paper-list"), {**search, "page": 3})
    assert response.status_code == 400
    assert "There are 2 pages, reaching 30 results." in response.content.decode()


def test_an_empty_result_has_one_page_and_nothing_after_it(client, papers):
    empty = {"q": "nonexistentword"}
    assert client.get(reverse("paper-list"), empty).status_code == 200
    response = client.get(reverse("paper-list"), {**empty, "page": 2})
    assert response.status_code == 400
    assert "There is 1 page, reaching 0 results." in response.content.decode()


@pytest.mark.parametrize("page", [3, 40000])
def test_an_api_page_past_the_last_is_a_400_that_says_to_narrow_the_search(client, papers, page):
    response = client.get(reverse("api-papers"), {"page": page})
    assert response.status_code == 400
    assert response.json() == {
        "errors": {"page": [f"There are 2 pages, reaching 30 results. {NARROW}: a date range, "
                            "a topic, more words."]}
    }  # fmt: skip


def test_the_api_last_page_is_the_last_reachable_results(client, papers):
    body = client.get(reverse("api-papers"), {"page": 2, "page_size": 20}).json()
    assert body["count"] == 60 and body["pages"] == 2
    assert len(body["results"]) == 10 and body["next"] is None
