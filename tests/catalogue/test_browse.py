"""Browsing: canonical URLs, every parameter, facets, timeline, day/week/month pages, topics."""

import datetime as dt
import re
from collections import Counter
from urllib.parse import parse_qsl, urlencode

import pytest
from django.urls import reverse

from catalogue import views
from catalogue.models import Paper, PaperTopic, PopularitySnapshot, Sighting, Topic

pytestmark = pytest.mark.django_db

TODAY = dt.date.today()


def make(key, title, published_on, upvotes=0, abstract="", code_url="", authors=()):
    return Paper.objects.create(
        arxiv_id=key,
        title=title,
        abstract=abstract,
        published_on=published_on,
        upvotes=upvotes,
        code_url=code_url,
        authors=list(authors),
    )


@pytest.fixture
def papers():
    return {
        "today": make(
            "2611.00001", "Linear attention today", TODAY, 5, code_url="https://github.com/a/b"
        ),
        "week": make("2611.00002", "Decoupled heads", TODAY - dt.timedelta(days=5), 50),
        "month": make(
            "2611.00003",
            "Sparse attention",
            TODAY - dt.timedelta(days=20),
            9,
            authors=["Ada Lovelace"],
        ),
        "old": make("2001.00004", "Old attention", dt.date(2020, 3, 3), 100),
    }


def listed(response) -> list[str]:
    assert response.status_code == 200, response.content[:500]
    return [p.arxiv_id for p in response.context["page"].paginator.object_list]


def test_canonical_query_omits_defaults_and_orders_parameters(client, papers):
    response = client.get(
        "/", {"sort": "relevance", "min_upvotes": "3", "q": " attention ", "has_code": "false"}
    )
    assert response.context["canonical_query"] == "q=attention&min_upvotes=3"
    other = client.get("/", {"min_upvotes": "3", "q": "attention"})
    assert other.context["canonical_query"] == response.context["canonical_query"]


def test_period_windows_end_today(client, papers):
    assert listed(client.get("/", {"period": "day"})) == ["2611.00001"]
    assert set(listed(client.get("/", {"period": "week"}))) == {"2611.00001", "2611.00002"}
    assert "2001.00004" not in listed(client.get("/", {"period": "year"}))


def test_top_of_the_week_by_upvotes(client, papers):
    assert listed(client.get("/", {"period": "week", "sort": "upvotes"})) == [
        "2611.00002",
        "2611.00001",
    ]


def test_oldest_first(client, papers):
    assert listed(client.get("/", {"sort": "oldest"}))[0] == "2001.00004"


def test_has_code_and_author(client, papers):
    assert listed(client.get("/", {"has_code": "1"})) == ["2611.00001"]
    assert listed(client.get("/", {"author": "lovelace"})) == ["2611.00003"]


def test_topics_filter_all_given_topics_and_ignore_exclusions(client, papers):
    attention = Topic.objects.create(name="Attention", slug="attention", query="attention")
    fresh = Topic.objects.create(name="Fresh", slug="fresh", query="today")
    PaperTopic.objects.create(paper=papers["today"], topic=attention)
    PaperTopic.objects.create(paper=papers["today"], topic=fresh, reason="pinned")
    PaperTopic.objects.create(paper=papers["old"], topic=attention)
    PaperTopic.objects.create(paper=papers["month"], topic=attention, reason="excluded")
    assert set(listed(client.get("/", {"topic": "attention"}))) == {"2611.00001", "2001.00004"}
    assert listed(client.get("/", {"topic": ["attention", "fresh"]})) == ["2611.00001"]
    response = client.get(reverse("topic-detail", args=["attention"]))
    assert set(listed(response)) == {"2611.00001", "2001.00004"}
    topics_page = client.get(reverse("topic-list")).content.decode()
    assert re.search(r"Attention</a> <span class=\"count\">2 papers", topics_page)


def test_unknown_topic_is_a_form_error(client, papers):
    response = client.get("/", {"topic": "nope"})
    assert response.status_code == 400
    assert "id_topic_error" in response.content.decode()


def test_since_after_until_is_a_form_error(client, papers):
    response = client.get("/", {"since": "2025-02-01", "until": "2025-01-01"})
    assert response.status_code == 400
    assert "Until must not be before since." in response.content.decode()


@pytest.mark.parametrize(
    "name",
    ["q", "topic", "author", "since", "until", "period", "min_upvotes", "has_code", "sort", "page"],
)
@pytest.mark.parametrize("garbage", ["%00", "x" * 3000, "-1", "💥", "'; DROP TABLE x;--", "9" * 40])
def test_garbage_in_every_parameter_gives_no_server_error(client, papers, name, garbage):
    for path in ("/", reverse("day-page", args=[TODAY.isoformat()])):
        response = client.get(path, {name: garbage})
        assert response.status_code in (200, 400), (name, garbage, response.status_code)


def test_summary_links_remove_one_filter_each(client, papers):
    html = client.get("/", {"q": "attention", "min_upvotes": "3"}).content.decode()
    assert 'href="?min_upvotes=3" title="Remove this filter"' in html
    assert 'href="?q=attention" title="Remove this filter"' in html


def test_timeline_counts_matches_per_month(client, papers):
    response = client.get("/", {"q": "attention"})
    bars = [b for b in response.context["timeline"] if b.count]
    assert sum(b.count for b in bars) == 3
    assert bars[0].month == dt.date(2020, 3, 1)
    html = response.content.decode()
    assert "<svg" in html
    # One titled rect per month with matches, the empty months between drawn as nothing.
    titles = re.findall(r"<rect [^>]*><title>([^<]*)</title></rect>", html)
    assert titles[0] == "Mar 2020: 1 paper"
    assert len(titles) == len({b.month for b in bars})


def test_timeline_titles_are_escaped():
    from catalogue.charts import Bar, timeline_rects

    class Odd(Bar):
        label = "<b>&</b>"

    drawn = str(timeline_rects([Odd(dt.date(2020, 1, 1), 3, 0.0, 30.0, 4.25, 30.0)]))
    assert drawn == (
        '<rect x="0.0" y="30.0" width="4.25" height="30.0"><title>&lt;b&gt;&amp;&lt;/b&gt;'
        "</title></rect>"
    )


def test_year_facets_link_to_that_year(client, papers):
    response = client.get("/", {"q": "attention"})
    facets = {f["year"]: f for f in response.context["year_facets"]}
    assert facets[2020]["n"] == 1
    assert dict(parse_qsl(facets[2020]["href"][1:])) == {
        "q": "attention",
        "since": "2020-01-01",
        "until": "2020-12-31",
    }


@pytest.mark.parametrize(
    "pairs",
    [
        [],
        [("q", "linear attention"), ("since", "2019-03-01"), ("topic", "rl")],
        [("q", '"a&b" = c?'), ("until", "2020-01-01"), ("topic", "diffusion"), ("sort", "upvotes")],
    ],
)
def test_facet_links_keep_the_search_and_change_only_their_own_parameters(pairs):
    """The facets' links, made with the search's part encoded once, are the search's pairs
    with their own changed (years: the date range; topics: one more, unless chosen)."""
    years = views._hrefs(pairs, changed=("since", "until"))
    for year in (2019, 2020):
        kept = [(k, v) for k, v in pairs if k not in ("since", "until")]
        changes = [("since", f"{year}-01-01"), ("until", f"{year}-12-31")]
        assert years(since=f"{year}-01-01", until=f"{year}-12-31") == "?" + urlencode(
            kept + changes
        )
    topics = views._hrefs(pairs, add=True)
    assert topics(topic="linear-attention") == "?" + urlencode(
        [*pairs, ("topic", "linear-attention")]
    )
    assert topics(topic="diffusion") == "?" + urlencode(
        pairs if ("topic", "diffusion") in pairs else [*pairs, ("topic", "diffusion")]
    )


def test_day_week_and_month_pages_rank_by_upvotes_with_neighbours(client, papers):
    day = papers["week"].published_on
    response = client.get(reverse("day-page", args=[day.isoformat()]))
    assert listed(response) == ["2611.00002"]
    nav = response.context["nav"]
    assert nav["next"] == reverse("day-page", args=[(day + dt.timedelta(days=1)).isoformat()])

    year, week, _ = TODAY.isocalendar()
    response = client.get(reverse("week-page", args=[f"{year}-W{week:02d}"]))
    week_ids = listed(response)
    assert week_ids == sorted(week_ids, key=lambda k: -Paper.objects.get(arxiv_id=k).upvotes)
    assert "2611.00001" in week_ids

    response = client.get(reverse("month-page", args=["2020-03"]))
    assert listed(response) == ["2001.00004"]
    assert response.context["nav"]["previous"] == reverse("month-page", args=["2020-02"])


@pytest.mark.parametrize(
    "path",
    [
        "/papers/daily/2025-02-30/",
        "/papers/week/2025-W60/",
        "/papers/month/2025-13/",
        "/papers/week/nonsense/",
    ],
)
def test_impossible_dates_are_404(client, path):
    assert client.get(path).status_code == 404


def test_paper_page_shows_history_links_sightings_and_similar_papers(client, papers):
    paper = papers["today"]
    for day, votes in [(TODAY - dt.timedelta(days=2), 1), (TODAY, 5)]:
        PopularitySnapshot.objects.create(paper=paper, observed_on=day, upvotes=votes)
    now = dt.datetime.now(dt.UTC)
    Sighting.objects.create(paper=paper, source="hf_daily", first_seen_at=now, last_seen_at=now)
    html = client.get(paper.get_absolute_url()).content.decode()
    assert "<polyline" in html
    assert 'href="https://arxiv.org/pdf/2611.00001"' in html
    assert 'href="https://huggingface.co/papers/2611.00001"' in html
    assert "Hugging Face Daily Papers" in html  # the source by name, not its code
    similar = client.get(paper.get_absolute_url()).context["similar"]
    assert {p.arxiv_id for p in similar} == {"2611.00003", "2001.00004"}  # share "attention"


def test_abstract_is_escaped(client):
    paper = make("2611.00009", "Tags <b>", TODAY, abstract="<script>alert(1)</script> & more")
    html = client.get(paper.get_absolute_url()).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_every_list_page_advertises_the_feed_of_its_search(client, papers):
    html = client.get("/", {"min_upvotes": "3", "q": "attention", "sort": "relevance"}).content
    html = html.decode()
    feed = "/feed/?q=attention&amp;min_upvotes=3"
    alternate = '<link rel="alternate" type="application/atom+xml" title="Feed of this search"'
    assert f'{alternate} href="{feed}">' in html
    assert f'<a class="feed" href="{feed}">' in html
    day = client.get(reverse("day-page", args=[TODAY.isoformat()])).content.decode()
    assert 'rel="alternate" type="application/atom+xml"' in day


def test_list_page_scans_the_matches_once_for_count_timeline_and_years(client, papers):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/", {"q": "attention"})
    sqls = [q["sql"] for q in queries.captured_queries]
    assert response.context["page"].paginator.count == 3
    expected_years = Counter(papers[k].published_on.year for k in ("today", "month", "old"))
    assert {y["year"]: y["n"] for y in response.context["year_facets"]} == expected_years
    assert not [s for s in sqls if "COUNT(*)" in s], "the count comes from the month histogram"
    assert sum("DATE_TRUNC" in s for s in sqls) == 1
    # 10: with the two cache-version look-ups (summary, ranking) of catalogue.summary and the
    # nearest papers by meaning (hybrid search).
    assert len(sqls) <= 10, sqls
