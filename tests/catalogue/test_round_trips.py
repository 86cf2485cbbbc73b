"""What an uncached page costs in statements, pinned per page kind so it cannot creep back.

A new query's page is its SQL and little else: the catalogue's version and size are read in
one statement once per request (for the page cache, the summary and the ranking alike);
planner settings travel in the statement they govern; highlights and topic chips come with
the page's rows; the search vectors (~1.6 KB a paper) are never read for display.
"""

import datetime as dt

import pytest
from django.db import connection
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext

from catalogue import search, summary
from catalogue.models import Paper, PaperTopic, Topic
from ingest.sources import hf_page
from ingest.upsert import upsert_papers

pytestmark = pytest.mark.django_db


@pytest.fixture
def seed(seed_bytes):
    upsert_papers(list(hf_page.parse(seed_bytes, listed_on=dt.date(2025, 12, 24))))
    topic = Topic.objects.create(name="Decoupling", slug="decoupling", query="decoupling")
    PaperTopic.objects.bulk_create(
        PaperTopic(paper=p, topic=topic) for p in Paper.objects.search("decoupling")
    )
    search.parse.cache_clear()  # every query new, as a reader's is


def statements(client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return [q["sql"] for q in queries.captured_queries]


# (url, statements): the query's normalisation, the nearest papers by meaning, the catalogue's
# state, the matches by month, the topic facets, the ranking, the page's rows.
PAGES = [
    ("/?q=decoupling", 7),
    ("/?q=decoupling&sort=upvotes", 6),  # no ranking
    ("/?q=decoupling&mode=keyword", 6),  # no neighbours
    ("/", 4),  # state, months, facets, rows
    ("/?topic=decoupling&since=2025-01-01", 5),  # + the topic of the parameter
    ("/topics/decoupling/", 5),  # + the topic of the path
    ("/papers/month/2025-11/", 4),
    ("/api/papers?q=decoupling&page_size=100", 6),  # no facets: the count's months
    ("/feed/?q=decoupling", 3),  # normalisation, neighbours, the 50 newest matches
]


@pytest.mark.parametrize(("url", "count"), PAGES)
def test_a_pages_statements_are_pinned(client, seed, url, count):
    assert len(statements(client, url)) == count


@pytest.mark.parametrize(("url", "count"), PAGES)
def test_a_large_catalogues_pages_cost_the_same(client, seed, settings, url, count):
    """Past SUMMARY_EXACT_BELOW the figures come from the sample: its pass and, when it finds
    too few, the pass over every match are one statement."""
    settings.SUMMARY_EXACT_BELOW = 1
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_paper")  # reltuples: what says "large"
    sql = statements(client, url)
    assert len(sql) == count
    if not url.startswith("/feed/"):
        assert len([s for s in sql if "MOD(" in s and "ARRAY_AGG" in s]) == 1


def test_a_page_reads_the_catalogues_state_once(client, seed, settings):
    settings.PAGE_CACHE_SECONDS = settings.SUMMARY_CACHE_SECONDS = 60
    sql = statements(client, "/?q=decoupling")
    assert len([s for s in sql if "max(updated_at)" in s.lower()]) == 1
    assert not [s for s in sql if "reltuples" in s and "max(updated_at)" not in s]


def test_outside_a_request_the_catalogues_state_is_read_afresh(seed):
    before = summary.catalogue_version()
    Paper.objects.filter(pk=Paper.objects.order_by("pk")[0].pk).update(
        upvotes=7, updated_at=dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    )
    assert summary.catalogue_version() != before


def test_a_request_after_a_change_sees_it(client, seed, settings):
    settings.PAGE_CACHE_SECONDS = settings.SUMMARY_CACHE_SECONDS = 60
    first = client.get("/api/papers?q=decoupling&sort=upvotes&page_size=1").json()
    Paper.objects.filter(pk=first["results"][0]["id"]).update(upvotes=99_999, updated_at=Now())
    again = client.get("/api/papers?q=decoupling&sort=upvotes&page_size=1").json()
    assert again["results"][0]["upvotes"] == 99_999


@pytest.mark.parametrize("url", ["/?q=decoupling", "/", "/api/papers?q=decoupling", "/feed/"])
def test_pages_never_read_the_search_vectors_for_display(client, seed, url):
    shown = [s.split(" FROM ")[0] for s in statements(client, url) if '"title", ' in s]
    assert shown  # the page's papers were read
    for selected in shown:
        assert '"search_vector"' not in selected and '"author_vector"' not in selected


def test_cards_carry_their_highlights_and_topic_chips(client, seed):
    response = client.get("/?q=decoupling")
    cards = response.context["page"].object_list
    assert cards and all(paper.topic_chips[0].slug == "decoupling" for paper in cards)
    assert all("<mark>" in (paper.title_html or "") + paper.excerpt_html for paper in cards)
    html = response.content.decode()
    assert 'href="/topics/decoupling/"' in html and "<mark>" in html


def test_a_feed_lists_the_newest_matches_without_ranking_them(client, seed):
    sql = statements(client, "/feed/?q=decoupling")
    assert not [s for s in sql if "ts_rank" in s]
    newest = Paper.objects.visible().search("decoupling").newest_first()[:50]
    body = client.get("/feed/?q=decoupling").content.decode()
    positions = [body.index(p.get_absolute_url()) for p in newest]
    assert positions == sorted(positions)


def _as_djangos_expressions(papers, text: str):
    """The cards' topics and headlines as Django's own expressions wrote them before they
    were written as SQL (``models._topic_list``, ``search._headline``)."""
    from django.contrib.postgres.expressions import ArraySubquery
    from django.contrib.postgres.search import SearchHeadline
    from django.db.models import Case, F, OuterRef, When
    from django.db.models.functions import JSONObject

    from catalogue.models import SHOWN_REASONS

    shown = (
        PaperTopic.objects.filter(paper=OuterRef("pk"), reason__in=SHOWN_REASONS)
        .order_by("topic__name")
        .values(shown=JSONObject(slug="topic__slug", name="topic__name"))
    )
    query = search.RawTsQuery(search.parse(text).highlight_query)
    has_a_term = search.SearchVectorExact(F("search_vector"), query)
    mark = {"start_sel": "\x02", "stop_sel": "\x03"}
    excerpt = {"max_words": 45, "min_words": 25, "max_fragments": 2, "fragment_delimiter": " … "}

    def headline(field, **options):
        found = SearchHeadline(field, query, config=search.CONFIG, **mark, **options)
        return Case(When(has_a_term, then=found), default=None)

    return papers.annotate(
        topic_list=ArraySubquery(shown),
        title_html=headline("title", highlight_all=True),
        excerpt_html=headline("abstract", **excerpt),
    )


@pytest.mark.parametrize("text", ["decoupling", '"linear attention" OR diffusion', "model -video"])
def test_cards_written_as_sql_read_what_djangos_expressions_read(seed, text):
    other = Topic.objects.create(name="Attention", slug="attention", query="attention")
    reasons = [PaperTopic.Reason.PINNED, PaperTopic.Reason.EXCLUDED]  # shown, not shown
    PaperTopic.objects.bulk_create(
        PaperTopic(paper=p, topic=other, reason=reasons[n % 2])
        for n, p in enumerate(Paper.objects.all()[:12])
    )
    fields = ("pk", "topic_list", "title_html", "excerpt_html")
    ours = search.highlight(Paper.objects.all().for_cards(), text).values_list(*fields)
    django = _as_djangos_expressions(Paper.objects.all(), text).values_list(*fields)
    ours, django = sorted(ours), sorted(django)
    assert ours == django
    assert any(len(topics) == 2 for _, topics, *_ in ours)  # both topics, by name
    assert any(title for _, _, title, _ in ours) and any(t is None for _, _, t, _ in ours)
