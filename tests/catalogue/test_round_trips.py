"""What an uncached page costs in statements, pinned per page kind so it cannot creep back.

A new query's page is its SQL and little else: the catalogue's version and size are read in
one statement once per request (for the page cache, the summary and the ranking alike);
planner settings travel in the statement they govern; highlights and topic chips come with
the page's rows; the search vectors (~1.6 KB a paper) are never read for display.
"""

import datetime as dt
import re

import pytest
from django.db import connection
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext

from catalogue import headlines, search, summary, wordmonths
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
    # A server process reads which words are common once a minute, not once a page: read
    # here, whenever the test runs (alone, its first page paid that statement).
    wordmonths.forget_common()
    wordmonths.is_common("decoupl")


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


# Past SUMMARY_EXACT_BELOW, a search in relevance order whose sample finds few matches
# reads and ranks every match in the summary's statement: no ranking statement follows.
RANKED_BY_THE_SUMMARY = {
    "/?q=decoupling",
    "/?q=decoupling&mode=keyword",
    "/api/papers?q=decoupling&page_size=100",
}


@pytest.mark.parametrize(("url", "count"), PAGES)
def test_a_large_catalogues_pages_cost_the_same(client, seed, settings, url, count):
    """Past SUMMARY_EXACT_BELOW the figures come from the sample: its pass and, when it finds
    too few, the pass over every match are one statement; that pass ranks the matches of a
    search in relevance order, and the ranking's own statement goes."""
    count -= url in RANKED_BY_THE_SUMMARY
    settings.SUMMARY_EXACT_BELOW = 1
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_paper")  # reltuples: what says "large"
    sql = statements(client, url)
    assert len(sql) == count
    if not url.startswith("/feed/"):
        assert len([s for s in sql if "MOD(" in s.upper() and "ARRAY_AGG" in s.upper()]) == 1


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


def _as_djangos_expressions(papers):
    """The cards' topics as Django's own expressions wrote them before they were written as
    SQL (``models._topic_list``)."""
    from django.contrib.postgres.expressions import ArraySubquery
    from django.db.models import OuterRef
    from django.db.models.functions import JSONObject

    from catalogue.models import SHOWN_REASONS

    shown = (
        PaperTopic.objects.filter(paper=OuterRef("pk"), reason__in=SHOWN_REASONS)
        .order_by("topic__name")
        .values(shown=JSONObject(slug="topic__slug", name="topic__name"))
    )
    return papers.annotate(topic_list=ArraySubquery(shown))


def test_cards_topics_written_as_sql_read_what_djangos_expressions_read(seed):
    other = Topic.objects.create(name="Attention", slug="attention", query="attention")
    reasons = [PaperTopic.Reason.PINNED, PaperTopic.Reason.EXCLUDED]  # shown, not shown
    PaperTopic.objects.bulk_create(
        PaperTopic(paper=p, topic=other, reason=reasons[n % 2])
        for n, p in enumerate(Paper.objects.all()[:12])
    )
    ours = sorted(Paper.objects.all().for_cards().values_list("pk", "topic_list"))
    django = sorted(_as_djangos_expressions(Paper.objects.all()).values_list("pk", "topic_list"))
    assert ours == django
    assert any(len(topics) == 2 for _, topics in ours)  # both topics, by name


# What ts_headline marks, to compare with (HighlightAll: every word holding a term, anywhere),
# in the text without its web addresses: PostgreSQL's parser reads an address as one token,
# so it marks no word of ".../hybrid-linear-attention-research", where we mark two.
_WEB_ADDRESS = r"https?://\S+"
_MARKED_BY_POSTGRESQL = f"""
    SELECT id, ts_headline('english', regexp_replace(title || ' ' || abstract,
                                                     '{_WEB_ADDRESS}', '', 'g'),
                           %s::tsquery, 'StartSel=<<, StopSel=>>, HighlightAll=true')
    FROM catalogue_paper WHERE search_vector @@ %s::tsquery
"""


@pytest.mark.parametrize(
    "text",
    [
        "decoupling",
        '"linear attention" OR diffusion',
        "model -video",
        "title:attention training",
        "state-of-the-art GPT-4 models",
        "Using 3D point clouds",
    ],
)
def test_cards_mark_the_words_postgresqls_own_headlines_mark(seed, text):
    """``search.highlight`` stems only words beginning like a term; ``ts_headline`` parses
    and stems the whole text. They mark the same words of every matching paper."""
    query = search.parse(text).highlight_query
    with connection.cursor() as cursor:
        cursor.execute(_MARKED_BY_POSTGRESQL, [query, query])
        theirs = {
            pk: sorted(w.lower() for w in re.findall("<<(.*?)>>", marked))
            for pk, marked in cursor.fetchall()
        }
    cards = search.highlight(Paper.objects.all().for_cards(), text)
    ours = {}
    for paper in cards:
        if paper.marked_words is None:
            continue  # holds no term: nothing marked
        shown = re.sub(_WEB_ADDRESS, "", f"{paper.title} {paper.abstract}")
        text_marked = headlines.marked_title(shown, paper.marked_words)
        ours[paper.pk] = sorted(
            w.lower() for w in re.findall("<mark>(.*?)</mark>", str(text_marked or ""))
        )
    assert theirs
    for pk, words in theirs.items():
        assert ours.get(pk) == words, pk
