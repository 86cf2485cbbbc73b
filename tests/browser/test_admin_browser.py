"""Staff in real Chromium: log in, write a topic rule, preview what it matches, save it."""

import pytest
from django.contrib.auth.models import User

from catalogue.models import PaperTopic, Topic
from tests.admin_support import linear_attention_ids, seed_catalogue, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-test-password-only"


@pytest.fixture
def staff():
    return User.objects.create_superuser("editor", "editor@example.org", PASSWORD)


def log_in(page, live_server, next_path: str) -> None:
    page.goto(f"{live_server.url}/admin/login/?next={next_path}")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{next_path}")


def test_staff_previews_a_topic_rule_then_saves_it_and_the_worker_tags_papers(
    live_server, page, staff, celery_worker
):
    seed_catalogue()
    expected = linear_attention_ids()
    log_in(page, live_server, "/admin/catalogue/topic/add/")

    page.get_by_label("Name").press_sequentially("Linear attention")  # keyup: fills slug
    assert page.get_by_label("Slug").input_value() == "linear-attention"  # prepopulated
    page.get_by_label("Query").fill('"linear attention"')
    page.get_by_role("button", name="Preview matches").click()

    preview = page.locator("#topic-preview")
    preview.wait_for()
    assert preview.locator(".preview-count").inner_text().startswith(f"{len(expected)} papers")
    assert preview.locator(".preview-sample li").count() == len(expected)
    assert page.get_by_label("Query").input_value() == '"linear attention"'  # still the form
    assert not Topic.objects.exists()  # a preview saves nothing

    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**/admin/catalogue/topic/")
    assert "was added successfully" in page.locator(".messagelist").inner_text()

    topic = Topic.objects.get(slug="linear-attention")
    tagged = PaperTopic.objects.filter(topic=topic, reason=PaperTopic.Reason.RULE)
    wait_for(lambda: tagged.count() == len(expected), 30, "the worker to tag the papers")
    assert set(tagged.values_list("paper_id", flat=True)) == expected
