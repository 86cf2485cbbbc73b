"""The paper admin: full-text search, filters, bounded queries, curation actions, roles."""

import http.server
import threading
from dataclasses import replace

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalogue import admin as paper_admin
from catalogue import broker, tagging
from catalogue.models import Paper, PaperTopic, Topic
from ingest import upsert
from ingest.models import IngestRun
from ingest.records import PaperRecord
from ingest.sources import arxiv_rss
from ingest.upsert import upsert_papers
from tests.admin_support import (
    action_data,
    eager_tasks,
    form_data,
    linear_attention_ids,
    seed_catalogue,
    wait_for,
)
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:catalogue_paper_changelist")
RSS = DATA_DIR / "formats/arxiv_rss/rss_quant-ph_2025-04-28.xml"
ATOM_ENTRY = DATA_DIR / "formats/arxiv_api/xml/id_1707.08567_s0_m100_6a1afebfc6a3.xml"


@pytest.fixture
def seed():
    return seed_catalogue()


@pytest.fixture
def topic(seed):
    topic = Topic.objects.create(name="Linear attention", slug="la", query='"linear attention"')
    tagging.retag(topic)
    return topic


def listed(response) -> set[int]:
    return {paper.pk for paper in response.context["cl"].result_list}


def change_url(paper) -> str:
    return reverse("admin:catalogue_paper_change", args=[paper.pk])


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- search and filters --------------------------------------------------------------------


def test_search_by_arxiv_id_is_exact_and_ignores_prefix_and_version(admin_client):
    upsert_papers(
        [
            PaperRecord(source="arxiv_atom", source_key=i, arxiv_id=i, title=f"Paper {i}")
            for i in ("2401.00001", "2401.000011", "hep-th/9901001")
        ]
    )
    response = admin_client.get(CHANGELIST, {"q": "arXiv:2401.00001v3"})
    assert [p.arxiv_id for p in response.context["cl"].result_list] == ["2401.00001"]
    response = admin_client.get(CHANGELIST, {"q": "hep-th/9901001"})
    assert [p.arxiv_id for p in response.context["cl"].result_list] == ["hep-th/9901001"]


def test_search_uses_the_full_text_index_not_a_table_scan(admin_client, seed):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST, {"q": '"linear attention"'})
    assert listed(response) == linear_attention_ids()
    sql = " ".join(query["sql"] for query in queries.captured_queries)
    assert "@@" in sql
    assert "LIKE" not in sql.upper()


def test_plain_words_also_find_an_author(admin_client):
    upsert_papers(
        [
            PaperRecord(
                source="arxiv_atom",
                source_key="2401.00002",
                arxiv_id="2401.00002",
                title="Notes on engines",
                authors=("Ada Lovelace",),
            )
        ]
    )
    response = admin_client.get(CHANGELIST, {"q": "Lovelace"})
    assert [p.arxiv_id for p in response.context["cl"].result_list] == ["2401.00002"]


def test_filters_by_topic_source_code_and_flags(admin_client, topic):
    with_code = set(Paper.objects.exclude(code_url="").values_list("pk", flat=True))
    excluded = Paper.objects.get(pk=min(linear_attention_ids()))
    PaperTopic.objects.filter(paper=excluded).update(reason=PaperTopic.Reason.EXCLUDED)
    Paper.objects.filter(pk__in=list(with_code)[:2]).update(featured=True)

    assert listed(admin_client.get(CHANGELIST, {"topic": "la"})) == linear_attention_ids() - {
        excluded.pk
    }
    assert listed(admin_client.get(CHANGELIST, {"has_code": "yes"})) == with_code
    assert len(listed(admin_client.get(CHANGELIST, {"featured__exact": "1"}))) == 2
    assert len(listed(admin_client.get(CHANGELIST, {"source": "hf_page"}))) == 49
    assert not listed(admin_client.get(CHANGELIST, {"source": "arxiv_rss"}))
    response = admin_client.get(CHANGELIST, {"published_on__year": "2025"})
    assert listed(response) == set(
        Paper.objects.filter(published_on__year=2025).values_list("pk", flat=True)
    )


def test_a_page_of_100_papers_costs_the_same_few_queries_as_a_page_of_10(admin_client, topic):
    upsert_papers(r for r in arxiv_rss.parse(RSS.read_bytes()) if isinstance(r, PaperRecord))
    tagging.retag(Topic.objects.create(name="Quantum", slug="q", query="quantum"))
    assert Paper.objects.count() == 130

    def queries_for(params) -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(CHANGELIST, params)
        assert response.status_code == 200
        return len(response.context["cl"].result_list), len(queries)

    rows, full_page = queries_for({})
    assert rows == 100
    rows, small_page = queries_for({"q": '"linear attention"'})
    assert rows == 4
    # Session, user, the two filters' choices, the count, the rows, their topics, their
    # sightings, the date hierarchy's range and years: 10, whatever the page size. A search
    # hides the date drill-down (two queries fewer) and may add the query's normalisation.
    assert full_page == 10
    assert small_page <= full_page - 1


# --- actions -------------------------------------------------------------------------------


def test_hide_and_feature_actions_tell_the_user_and_write_history(admin_client, admin_user, seed):
    papers = list(Paper.objects.order_by("pk")[:3])
    response = admin_client.post(CHANGELIST, action_data("hide", papers), follow=True)
    assert "Hid 3 papers." in messages_of(response)
    assert Paper.objects.filter(hidden=True).count() == 3

    response = admin_client.post(CHANGELIST, action_data("unhide", papers[:1]), follow=True)
    assert "1 paper visible again." in messages_of(response)
    response = admin_client.post(CHANGELIST, action_data("feature", papers[1:]), follow=True)
    assert "Featured 2 papers." in messages_of(response)
    admin_client.post(CHANGELIST, action_data("unfeature", papers[2:]))
    assert list(Paper.objects.filter(featured=True)) == [papers[1]]

    history = LogEntry.objects.filter(user=admin_user, action_flag=CHANGE)
    assert history.filter(object_id=str(papers[0].pk)).count() == 2  # hidden, then shown
    entries = history.filter(object_id=str(papers[2].pk)).order_by("pk")
    assert [e.get_change_message() for e in entries] == [
        "Changed hidden.",
        "Changed featured.",
        "Changed featured.",
    ]


def test_add_to_topic_asks_which_topic_then_pins(admin_client, topic):
    paper = Paper.objects.exclude(pk__in=linear_attention_ids()).first()
    page = admin_client.post(CHANGELIST, action_data("add_to_topic", [paper]))
    assert page.status_code == 200
    assert page.templates[0].name == "admin/catalogue/paper/choose_topic.html"
    assert not PaperTopic.objects.filter(paper=paper).exists()

    data = action_data("add_to_topic", [paper], topic=topic.pk, apply="Pin to topic")
    response = admin_client.post(CHANGELIST, data, follow=True)
    assert "Pinned to “Linear attention”: 1 paper." in messages_of(response)[0]
    assert PaperTopic.objects.get(paper=paper).reason == PaperTopic.Reason.PINNED
    tagging.retag(topic)
    assert PaperTopic.objects.get(paper=paper).reason == PaperTopic.Reason.PINNED
    assert LogEntry.objects.get(object_id=str(paper.pk)).change_message == (
        "Pinned to topic “Linear attention”."
    )


def test_remove_from_topic_excludes_for_good(admin_client, topic):
    paper = Paper.objects.get(pk=min(linear_attention_ids()))
    data = action_data("remove_from_topic", [paper], topic=topic.pk, apply="Exclude")
    admin_client.post(CHANGELIST, data)
    tagging.retag(topic)
    assert PaperTopic.objects.get(paper=paper).reason == PaperTopic.Reason.EXCLUDED
    response = admin_client.get(CHANGELIST, {"topic": "la"})
    assert paper.pk not in listed(response)


# Committed for real: the task is sent once the action's writes commit, and only then does
# the admin say it was queued.
@pytest.mark.django_db(transaction=True)
def test_refetch_sends_the_ingest_task_by_name_for_papers_with_arxiv_ids(
    admin_client, seed, monkeypatch
):
    upsert_papers(
        [PaperRecord(source="arxiv_rss", source_key="1707.08567", arxiv_id="1707.08567", title="x")]
    )
    sent = []
    monkeypatch.setattr(
        broker.current_app, "send_task", lambda name, args: sent.append((name, args))
    )
    papers = [Paper.objects.get(arxiv_id="1707.08567"), Paper.objects.filter(arxiv_id=None)[0]]
    response = admin_client.post(CHANGELIST, action_data("refetch", papers), follow=True)
    assert sent == [("ingest.tasks.refetch_arxiv", [["1707.08567"]])]
    notes = messages_of(response)
    assert "Re-fetch of 1 paper from arXiv queued" in notes[0]
    assert "Skipped 1 paper without an arXiv id" in notes[1]


# --- curated fields ------------------------------------------------------------------------


def test_curatable_fields_are_the_ones_ingest_protects():
    assert paper_admin.CURATABLE == upsert.CURATABLE


def test_an_edited_title_is_curated_and_survives_reingest_until_released(
    admin_client, seed, django_capture_on_commit_callbacks
):
    record = seed[0]
    paper = Paper.objects.get(source_key=record.natural_key)
    data = form_data(admin_client.get(change_url(paper)))
    data.update(title="A better title", _save="Save")
    with eager_tasks(), django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(change_url(paper), data)
    assert response.status_code == 302
    paper.refresh_from_db()
    assert (paper.title, paper.curated_fields) == ("A better title", ["title"])

    upsert_papers([replace(record, upvotes=(record.upvotes or 0) + 5)])
    paper.refresh_from_db()
    assert paper.title == "A better title"
    assert paper.upvotes == (record.upvotes or 0) + 5  # the rest still updates

    page = admin_client.get(change_url(paper))
    assert "title" in page.context["adminform"].form.instance.curated_fields
    response = admin_client.post(
        CHANGELIST, action_data("release_curated_fields", [paper]), follow=True
    )
    assert "Released the curated fields of 1 paper." in messages_of(response)
    upsert_papers([record])
    paper.refresh_from_db()
    assert (paper.title, paper.curated_fields) == (record.title, [])


def test_saving_without_changes_curates_nothing(admin_client, seed):
    paper = Paper.objects.first()
    data = form_data(admin_client.get(change_url(paper)))
    assert admin_client.post(change_url(paper), {**data, "_save": "Save"}).status_code == 302
    paper.refresh_from_db()
    assert paper.curated_fields == []


# --- re-fetch on a real worker -------------------------------------------------------------


class AtomServer:
    """arXiv's API answering an id_list query from a recorded response."""

    def __init__(self):
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                body = ATOM_ENTRY.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/api/query"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.django_db(transaction=True)
def test_refetch_task_runs_an_arxiv_query_on_the_worker(celery_worker):
    from celery import current_app

    upsert_papers(
        [PaperRecord(source="hf_daily", source_key="1707.08567", arxiv_id="1707.08567", title="x")]
    )
    server = AtomServer()
    try:
        # What the admin action sends, pointed at the recorded API.
        current_app.send_task(
            "ingest.tasks.refetch_arxiv", args=[["1707.08567"]], kwargs={"api_url": server.url}
        )
        run = wait_for(
            lambda: IngestRun.objects.filter(status="succeeded").first(), 30, "the re-fetch run"
        )
    finally:
        server.close()
    assert server.requests == ["/api/query?id_list=1707.08567&max_results=1"]
    assert (run.format, run.updated) == ("arxiv_atom", 1)
    paper = Paper.objects.get(arxiv_id="1707.08567")
    assert paper.title != "x" and paper.primary_category


# --- roles ---------------------------------------------------------------------------------


@pytest.fixture
def curator_client(client):
    user = User.objects.create_user("cora", password="pw-for-tests-only", is_staff=True)
    user.groups.add(Group.objects.get(name="curator"))
    client.force_login(user)
    return client


def test_curators_change_papers_and_topics_but_not_users_or_sources(curator_client, seed):
    paper = Paper.objects.first()
    assert curator_client.get(CHANGELIST).status_code == 200
    data = form_data(curator_client.get(change_url(paper)))
    data.update(title="Curated by a curator", _save="Save")
    assert curator_client.post(change_url(paper), data).status_code == 302
    assert Paper.objects.get(pk=paper.pk).title == "Curated by a curator"
    assert LogEntry.objects.get(object_id=str(paper.pk)).user.username == "cora"

    assert curator_client.get(reverse("admin:catalogue_topic_add")).status_code == 200
    assert curator_client.get(reverse("admin:ingest_ingestrun_changelist")).status_code == 200
    assert curator_client.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert curator_client.get(reverse("admin:auth_group_changelist")).status_code == 403
    assert curator_client.get(reverse("admin:ingest_source_changelist")).status_code == 403
    assert curator_client.get(reverse("admin:ingest_source_add")).status_code == 403
