"""A topic link's copy of its paper's date (``PaperTopic.published_on``, kept by the triggers of
migration 0023), and the topic pages of a date range that read it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from catalogue import merging, summary, tagging
from catalogue.filters import PaperFilter
from catalogue.models import Paper, PaperTopic, Topic
from catalogue.tasks import tag_recent_papers
from tests.catalogue.test_query_plans import analysed

pytestmark = pytest.mark.django_db

JAN, MAR, MAY = dt.date(2024, 1, 10), dt.date(2024, 3, 10), dt.date(2024, 5, 10)


def _link_dates(topic) -> dict[int, dt.date | None]:
    return dict(PaperTopic.objects.filter(topic=topic).values_list("paper_id", "published_on"))


@pytest.fixture
def topic():
    return Topic.objects.create(name="Linear attention", slug="linear-attention", query="linear")


def test_a_link_takes_its_papers_date_whatever_writes_it(topic):
    by_orm = Paper.objects.create(arxiv_id="2401.00001", title="Linear one", published_on=JAN)
    in_bulk = Paper.objects.create(arxiv_id="2403.00002", title="Linear two", published_on=MAR)
    by_rule = Paper.objects.create(arxiv_id="2405.00003", title="Linear three", published_on=MAY)
    undated = Paper.objects.create(arxiv_id="2405.00004", title="Linear four")
    # A date handed over is not the paper's: the paper's wins.
    PaperTopic.objects.create(paper=by_orm, topic=topic, published_on=MAY)
    PaperTopic.objects.bulk_create([PaperTopic(paper=in_bulk, topic=topic)])
    tagging.retag(topic)  # the rule's INSERT ... SELECT adds the two others
    assert _link_dates(topic) == {
        by_orm.pk: JAN,
        in_bulk.pk: MAR,
        by_rule.pk: MAY,
        undated.pk: None,
    }


def test_a_papers_new_date_reaches_its_links(topic):
    paper = Paper.objects.create(arxiv_id="2401.00001", title="Linear one", published_on=JAN)
    other = Topic.objects.create(name="Other", slug="other", query="one")
    tagging.retag(topic), tagging.retag(other)
    paper.published_on = MAR
    paper.save()
    assert _link_dates(topic) == _link_dates(other) == {paper.pk: MAR}
    Paper.objects.filter(pk=paper.pk).update(published_on=None)
    assert _link_dates(topic) == {paper.pk: None}
    # A link saved again (a staff choice) keeps the paper's date, not the one it was read with.
    Paper.objects.filter(pk=paper.pk).update(published_on=MAY)
    link = PaperTopic.objects.get(topic=topic)
    link.published_on = JAN
    link.reason = PaperTopic.Reason.PINNED
    link.save()
    assert _link_dates(topic) == {paper.pk: MAY}


def test_a_merged_papers_links_take_the_survivors_date(topic):
    survivor = Paper.objects.create(arxiv_id="2401.00001", title="Linear one", published_on=JAN)
    duplicate = Paper.objects.create(source_key="hf:x", title="Linear one again", published_on=MAY)
    PaperTopic.objects.create(paper=duplicate, topic=topic, reason=PaperTopic.Reason.PINNED)
    merging.merge(survivor, [duplicate])
    survivor.refresh_from_db()
    assert _link_dates(topic) == {survivor.pk: survivor.published_on}


def _topic_catalogue(topic) -> list[Paper]:
    """300 papers over 300 days, every third in the topic; fresh statistics."""
    start = dt.date(2023, 1, 1)
    analysed(
        Paper(
            arxiv_id=f"2301.{i:05d}",
            title=f"Paper {i} on {'linear' if i % 3 == 0 else 'other'} things",
            published_on=None if i % 50 == 7 else start + dt.timedelta(days=i),
        )
        for i in range(300)
    )
    tagging.retag(topic)
    return list(Paper.objects.order_by("pk"))


def _page(params: str):
    paper_filter = PaperFilter(
        QueryDict(params), queryset=Paper.objects.visible(), today=dt.date(2023, 10, 27)
    )
    assert paper_filter.is_valid(), paper_filter.errors
    return paper_filter


@pytest.mark.parametrize(
    "params",
    [
        "topic=linear-attention&since=2023-03-01&until=2023-05-31",
        "topic=linear-attention&since=2023-06-01",
        "topic=linear-attention&until=2023-02-15&sort=oldest",
        "topic=linear-attention&period=month",
        "topic=linear-attention",
    ],
)
def test_a_topics_papers_of_a_date_range_are_those_of_the_papers_dates(topic, params):
    papers = _topic_catalogue(topic)
    # Staff hide one, redate another out of every range, exclude a third.
    in_topic = [p for p in papers if "linear" in p.title and p.published_on]
    Paper.objects.filter(pk=in_topic[40].pk).update(hidden=True)
    Paper.objects.filter(pk=in_topic[41].pk).update(published_on=dt.date(2030, 1, 1))
    PaperTopic.objects.filter(paper=in_topic[42]).update(reason=PaperTopic.Reason.EXCLUDED)
    page = _page(params)
    expected = set(
        Paper.objects.visible()
        .filter(papertopic__topic=topic, papertopic__reason__in=["rule", "pinned"])
        .published_between(*(page._published_range() or (None, None)))
        .values_list("pk", flat=True)
    )
    shown = [p.pk for p in page.qs]
    assert set(shown) == expected and len(shown) == len(expected) >= 5
    assert summary.summarise(page.matches).count == len(expected)


def test_a_topic_page_of_a_date_range_reads_the_links_dates(topic, settings):
    settings.SUMMARY_EXACT_BELOW = 1  # counted as a large catalogue is, from the sample
    _topic_catalogue(topic)
    page = _page("topic=linear-attention&since=2023-03-01&until=2023-05-31")
    with CaptureQueriesContext(connection) as statements:
        summary.summarise(page.matches)
    (counted,) = [s["sql"] for s in statements.captured_queries if "WITH sample" in s["sql"]]
    assert '"catalogue_papertopic"."published_on" >= ' in counted
    assert '"catalogue_papertopic"."published_on" <= ' in counted
    # Without a date range, the links are not limited by date.
    plain = str(_page("topic=linear-attention").matches.query)
    assert '"catalogue_papertopic"."published_on"' not in plain


def test_a_topics_own_page_of_a_date_range_reads_the_links_dates(topic, client):
    papers = _topic_catalogue(topic)
    first, last = dt.date(2023, 3, 1), dt.date(2023, 5, 31)
    with CaptureQueriesContext(connection) as statements:
        response = client.get(f"/topics/{topic.slug}/", {"since": first, "until": last})
    assert response.status_code == 200
    dated = [p for p in papers if "linear" in p.title and p.published_on]
    expected = {p.pk for p in dated if first <= p.published_on <= last}
    shown = {p.pk for p in response.context["page"].object_list}
    assert response.context["summary"].count == len(expected) > len(shown) == 25
    assert shown <= expected
    sql = " ".join(s["sql"] for s in statements.captured_queries)
    assert '"catalogue_papertopic"."published_on" >= ' in sql


def _dated_behind_the_triggers_back(link: PaperTopic, day: dt.date | None) -> None:
    """A link left with another date than its paper's, as two transactions racing leave it
    (each trigger read the other's row before it committed)."""
    table = PaperTopic._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no foreign-key checks pending
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER papertopic_dated")
        cursor.execute(f"UPDATE {table} SET published_on = %s WHERE id = %s", [day, link.pk])
        cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER papertopic_dated")


def test_the_recent_papers_task_mends_their_links_dates(topic):
    recent = Paper.objects.create(arxiv_id="2401.00001", title="Linear one", published_on=JAN)
    old = Paper.objects.create(arxiv_id="2401.00002", title="Linear two", published_on=MAR)
    tagging.retag(topic)
    since = dt.datetime.now(dt.UTC)
    Paper.objects.filter(pk=recent.pk).update(title="Linear one, again", updated_at=since)
    for paper in (recent, old):
        _dated_behind_the_triggers_back(PaperTopic.objects.get(paper=paper), MAY)
    assert _link_dates(topic) == {recent.pk: MAY, old.pk: MAY}
    assert tag_recent_papers(since.isoformat()) == {"added": 0, "removed": 0, "redated": 1}
    # Only the papers changed since then: the other link waits for its paper's next change.
    assert _link_dates(topic) == {recent.pk: JAN, old.pk: MAY}
    assert tagging.redate_links(Paper.objects.all()) == 1
    assert _link_dates(topic) == {recent.pk: JAN, old.pk: MAR}
