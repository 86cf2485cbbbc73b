"""Topics as keyword rules in the admin: preview, save, tagging, and staff choices that last."""

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.urls import reverse

from catalogue import tagging
from catalogue.models import Paper, PaperTopic, Topic
from catalogue.tasks import tag_recent_papers, tag_topic
from ingest.runner import create_run, execute_run
from tests.admin_support import (
    action_data,
    eager_tasks,
    form_data,
    linear_attention_ids,
    seed_catalogue,
)
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:catalogue_topic_add")
RSS = DATA_DIR / "formats/arxiv_rss/rss_quant-ph_2025-04-28.xml"
LINEAR_ATTENTION = {
    "name": "Linear attention",
    "slug": "linear-attention",
    "description": "Attention in linear time.",
    "query": '"linear attention"',
}


@pytest.fixture
def seeded():
    seed_catalogue()


def rule_tagged(topic) -> set[int]:
    rows = PaperTopic.objects.filter(topic=topic, reason=PaperTopic.Reason.RULE)
    return set(rows.values_list("paper_id", flat=True))


def make_topic(**fields) -> Topic:
    topic = Topic.objects.create(**{**LINEAR_ATTENTION, **fields})
    tagging.retag(topic)
    return topic


def test_preview_shows_the_match_count_and_a_sample_without_saving(admin_client, seeded):
    expected = linear_attention_ids()
    response = admin_client.post(ADD_URL, {**LINEAR_ATTENTION, "_preview": "1"})
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview.count == len(expected) == 4
    assert {paper.pk for paper in preview.sample} == expected
    assert f"<strong>{len(expected)}</strong> papers match" in response.content.decode()
    assert not response.context["adminform"].form.errors
    assert not Topic.objects.exists()


def test_saving_the_topic_tags_exactly_the_papers_with_the_phrase(
    admin_client, admin_user, seeded, django_capture_on_commit_callbacks
):
    with eager_tasks(), django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(ADD_URL, {**LINEAR_ATTENTION, "_save": "Save"})
    assert response.status_code == 302
    topic = Topic.objects.get(slug="linear-attention")
    assert rule_tagged(topic) == linear_attention_ids()
    entry = LogEntry.objects.get(object_id=str(topic.pk))
    assert (entry.action_flag, entry.user) == (ADDITION, admin_user)


def test_change_page_previews_what_the_saved_rule_matches(admin_client, seeded):
    topic = make_topic()
    response = admin_client.get(reverse("admin:catalogue_topic_change", args=[topic.pk]))
    assert response.context["preview"].count == 4
    assert 'id="topic-preview"' in response.content.decode()


@pytest.mark.parametrize(
    ("query", "problem"),
    [("the of", "no searchable words"), ("-mamba", "not excluded")],
)
def test_a_query_that_cannot_be_a_rule_is_a_form_error(admin_client, query, problem):
    response = admin_client.post(ADD_URL, {**LINEAR_ATTENTION, "query": query, "_preview": "1"})
    assert problem in str(response.context["adminform"].form.errors["query"])
    assert response.context["preview"] is None


def test_changing_the_query_retags_and_keeps_pins_and_exclusions(
    admin_client, seeded, django_capture_on_commit_callbacks
):
    topic = make_topic()
    matching = sorted(linear_attention_ids())
    excluded = Paper.objects.get(pk=matching[0])
    pinned = Paper.objects.exclude(pk__in=matching).order_by("pk").first()
    changelist = reverse("admin:catalogue_paper_changelist")
    remove = action_data("remove_from_topic", [excluded], topic=topic.pk, apply="1")
    admin_client.post(changelist, remove)
    admin_client.post(changelist, action_data("add_to_topic", [pinned], topic=topic.pk, apply="1"))

    url = reverse("admin:catalogue_topic_change", args=[topic.pk])
    data = form_data(admin_client.get(url))
    data.update(query='"linear attention" OR mamba', _save="Save")
    with eager_tasks(), django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post(url, data).status_code == 302

    broader = set(tagging.matching(data["query"]).values_list("pk", flat=True))
    assert len(broader) > len(matching)
    assert rule_tagged(topic) == broader - {excluded.pk, pinned.pk}
    reasons = dict(PaperTopic.objects.filter(topic=topic).values_list("paper_id", "reason"))
    assert reasons[excluded.pk] == PaperTopic.Reason.EXCLUDED
    assert reasons[pinned.pk] == PaperTopic.Reason.PINNED


def test_narrower_rule_removes_rule_rows_that_no_longer_match(seeded):
    topic = make_topic(query='"linear attention" OR mamba')
    topic.query = '"linear attention"'
    topic.save()
    counts = tag_topic(topic.pk)
    assert counts["removed"] > 0
    assert rule_tagged(topic) == linear_attention_ids()
    assert tag_topic(topic.pk) == {"added": 0, "removed": 0}  # idempotent


def test_papers_an_ingest_run_brings_are_tagged_after_it(django_capture_on_commit_callbacks):
    topic = Topic.objects.create(name="Quantum", slug="quantum", query="entanglement")
    with eager_tasks(), django_capture_on_commit_callbacks(execute=True) as callbacks:
        run = execute_run(create_run(str(RSS), fmt="arxiv_rss"))
    assert run.status == "succeeded" and run.created == 81
    assert len(callbacks) == 1  # the hook queued tagging once, after the run
    tagged = rule_tagged(topic)
    assert tagged and tagged == set(tagging.matching("entanglement").values_list("pk", flat=True))


def test_unchanged_papers_are_not_retagged_by_the_recent_papers_task(seeded):
    topic = Topic.objects.create(**LINEAR_ATTENTION)
    future = "2999-01-01T00:00:00+00:00"
    assert tag_recent_papers(future) == {"added": 0, "removed": 0, "redated": 0}
    assert not rule_tagged(topic)


def test_topic_list_counts_tagged_pinned_and_excluded(admin_client, seeded):
    topic = make_topic()
    PaperTopic.objects.filter(topic=topic).update(reason=PaperTopic.Reason.PINNED)
    response = admin_client.get(reverse("admin:catalogue_topic_changelist"))
    row = response.context["cl"].result_list.get(pk=topic.pk)
    assert (row.tagged_count, row.pinned_count, row.excluded_count) == (4, 4, 0)


def test_deleted_topic_task_is_a_no_op(seeded):
    assert tag_topic(10**9) is None
