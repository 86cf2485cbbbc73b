"""/api/papers: the list page's search as paginated JSON."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalogue import search
from catalogue.models import Paper, PaperTopic, Topic
from ingest.sources import hf_page
from ingest.upsert import upsert_papers

pytestmark = pytest.mark.django_db

FIELDS = {
    "id", "arxiv_id", "title", "authors", "abstract", "published_on", "listed_on", "upvotes",
    "code_url", "project_url", "url", "topics", "matched",
}  # fmt: skip


@pytest.fixture
def seed(seed_bytes):
    records = list(hf_page.parse(seed_bytes, listed_on=dt.date(2025, 12, 24)))
    upsert_papers(records)
    return records


def api(client, **params):
    return client.get(reverse("api-papers"), params)


def list_page_ids(client, **params) -> list[int]:
    response = client.get(reverse("paper-list"), params)
    return [paper.pk for paper in response.context["page"].paginator.object_list]


def test_results_have_every_documented_field(client, seed):
    body = api(client, q="decoupling").json()
    assert body["count"] > 10
    assert set(body["results"][0]) == FIELDS
    first = Paper.objects.get(pk=body["results"][0]["id"])
    assert body["results"][0]["title"] == first.title
    assert body["results"][0]["authors"] == first.authors
    assert body["results"][0]["url"] == f"http://testserver{first.get_absolute_url()}"


def test_results_are_the_list_pages_results_in_the_same_order(client, seed):
    params = {"q": "attention", "since": "2024-01-01", "sort": "upvotes"}
    body = api(client, **params, page_size=100).json()
    assert [paper["id"] for paper in body["results"]] == list_page_ids(client, **params)
    assert body["count"] == len(body["results"])


def test_dates_are_iso_and_missing_values_are_null(client, seed):
    results = api(client, page_size=100).json()["results"]
    dated = [p for p in results if p["published_on"]]
    assert dt.date.fromisoformat(dated[0]["published_on"])
    assert any(p["published_on"] is None for p in results)  # one seed card lacks its date
    assert all(p["listed_on"] in ("2025-12-24", None) for p in results)
    assert {p["code_url"] for p in results} - {None}  # GitHub links from the abstracts


def test_pages_link_to_each_other_with_the_canonical_parameters(client, seed):
    first = api(client, min_upvotes="01", page_size=2).json()
    assert first["previous"] is None
    assert first["next"] == "http://testserver/api/papers?min_upvotes=1&page=2&page_size=2"
    second = client.get(first["next"]).json()
    assert second["previous"] == "http://testserver/api/papers?min_upvotes=1&page=1&page_size=2"
    ids = [p["id"] for p in first["results"] + second["results"]]
    assert len(set(ids)) == 4


def test_default_page_size_is_25_and_the_last_page_has_no_next(client, seed):
    first = api(client).json()
    assert first["count"] == 49 and len(first["results"]) == 25
    assert first["next"] == "http://testserver/api/papers?page=2"
    last = client.get(first["next"]).json()
    assert len(last["results"]) == 24 and last["next"] is None


def test_an_empty_result_is_a_page_with_count_zero(client, seed):
    body = api(client, q="xylophonic").json()
    assert body == {
        "count": 0,
        "count_is_estimate": False,
        "pages": 1,
        "next": None,
        "previous": None,
        "results": [],
    }


def test_topics_are_the_shown_topics_slugs(client, seed):
    pinned, excluded = Paper.objects.order_by("pk")[:2]
    attention = Topic.objects.create(name="Attention", slug="attention", query="attention")
    PaperTopic.objects.create(paper=pinned, topic=attention, reason=PaperTopic.Reason.PINNED)
    PaperTopic.objects.create(paper=excluded, topic=attention, reason=PaperTopic.Reason.EXCLUDED)
    results = {p["id"]: p for p in api(client, page_size=100).json()["results"]}
    assert results[pinned.pk]["topics"] == ["attention"]
    assert results[excluded.pk]["topics"] == []
    assert [p["id"] for p in api(client, topic="attention").json()["results"]] == [pinned.pk]


def test_hidden_papers_are_not_listed(client, seed):
    Paper.objects.filter(pk=Paper.objects.order_by("pk")[0].pk).update(hidden=True)
    assert api(client).json()["count"] == 48


def test_a_full_page_costs_a_bounded_number_of_queries(client, seed, django_assert_max_num_queries):
    topic = Topic.objects.create(name="Decoupling", slug="decoupling", query="decoupling")
    PaperTopic.objects.bulk_create(PaperTopic(paper=p, topic=topic) for p in Paper.objects.all())
    params = {"q": "decoupling", "topic": "decoupling"}
    # The topic, the query's normalisation by PostgreSQL (once: parses are cached), the
    # catalogue's version and size, the count, the nearest papers by meaning (hybrid search),
    # the ranking's version and the ranking, the page, all its topics in one prefetch.
    search.parse.cache_clear()  # as a new query: not normalised by an earlier test
    with django_assert_max_num_queries(10):
        body = api(client, **params, page_size=100).json()
    assert body["count"] > 10 and all(p["topics"] == ["decoupling"] for p in body["results"])
    with CaptureQueriesContext(connection) as small_page:
        api(client, **params, page_size=2)
    with CaptureQueriesContext(connection) as full_page:
        api(client, **params, page_size=100)
    assert len(full_page) == len(small_page)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": "101"}, "page_size"),
        ({"page_size": "0"}, "page_size"),
        ({"page": "0"}, "page"),
        ({"page": "many"}, "page"),
        ({"page": "3"}, "page"),  # 49 papers: there are 2 pages
        ({"min_upvotes": "lots"}, "min_upvotes"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-02-01", "until": "2025-01-01"}, "until"),
        ({"sort": "random"}, "sort"),
        ({"topic": "no-such-topic"}, "topic"),
        ({"period": "fortnight"}, "period"),
    ],
)
def test_bad_parameters_are_400_with_errors_by_field(client, seed, params, field):
    response = api(client, **params)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == [field] and errors[field][0]


@pytest.mark.parametrize(
    "name", ["q", "topic", "author", "since", "until", "period", "min_upvotes", "has_code",
             "sort", "page", "page_size"],
)  # fmt: skip
@pytest.mark.parametrize("garbage", ["\x00", "' OR 1=1 --", "9" * 40, "-1", '"', "%ff"])
def test_garbage_in_any_parameter_is_never_a_server_error(client, seed, name, garbage):
    response = api(client, **{name: garbage})
    assert response.status_code in (200, 400)
    assert response["Content-Type"] == "application/json"


def test_only_get_is_allowed(client, seed):
    assert client.post(reverse("api-papers")).status_code == 405
