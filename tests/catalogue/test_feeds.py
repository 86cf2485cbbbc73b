"""/feed/?<list page parameters>: an Atom feed of any search."""

import datetime as dt
import html
import xml.etree.ElementTree as ET

import pytest
from django.urls import reverse

from catalogue.models import Paper, PaperTopic, Topic
from ingest.sources import hf_page
from ingest.upsert import upsert_papers

pytestmark = pytest.mark.django_db

ATOM = {"atom": "http://www.w3.org/2005/Atom"}


@pytest.fixture
def seed(seed_bytes):
    records = list(hf_page.parse(seed_bytes, listed_on=dt.date(2025, 12, 24)))
    upsert_papers(records)
    return records


@pytest.fixture
def arxiv_paper():
    """A paper with everything a feed entry can show: authors, categories, a topic."""
    paper = Paper.objects.create(
        arxiv_id="2501.00001",
        title="Decoupling <attention> & memory",
        abstract="We decouple a < b from c & d.",
        authors=["Ada Lovelace", "Alan Turing", "Grace Hopper"],
        published_on=dt.date(2025, 1, 2),
        primary_category="cs.LG",
        categories=["cs.LG", "cs.CL"],
        upvotes=7,
    )
    topic = Topic.objects.create(name="Memory", slug="memory", query="memory")
    PaperTopic.objects.create(paper=paper, topic=topic, reason=PaperTopic.Reason.RULE)
    return paper


def feed(client, **params):
    return client.get(reverse("feed"), params)


def entries(response) -> list[ET.Element]:
    return ET.fromstring(response.content).findall("atom:entry", ATOM)


def entry_titles(response) -> list[str]:
    return [entry.findtext("atom:title", namespaces=ATOM) for entry in entries(response)]


def list_page_titles(client, **params) -> set[str]:
    response = client.get(reverse("paper-list"), params)
    return {paper.title for paper in response.context["page"].paginator.object_list}


def test_feed_is_atom_with_the_list_pages_matches(client, seed):
    params = {"q": "decoupling", "since": "2024-01-01", "min_upvotes": "1"}
    response = feed(client, **params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/atom+xml")
    titles = entry_titles(response)
    assert titles and set(titles) == list_page_titles(client, **params)


def test_feed_lists_the_newest_first_unless_a_sort_is_given(client, seed):
    newest = [Paper.objects.get(title=t).published_on for t in entry_titles(feed(client))]
    dated = [day for day in newest if day]
    assert dated == sorted(dated, reverse=True)
    # A query's list page ranks by relevance; its feed still shows what is new first.
    by_query = [
        Paper.objects.get(title=t).published_on for t in entry_titles(feed(client, q="decoupling"))
    ]
    assert [d for d in by_query if d] == sorted((d for d in by_query if d), reverse=True)
    by_upvotes = [
        Paper.objects.get(title=t).upvotes for t in entry_titles(feed(client, sort="upvotes"))
    ]
    assert by_upvotes == sorted(by_upvotes, reverse=True)


def test_feed_has_at_most_50_entries(client, seed):
    Paper.objects.bulk_create(
        Paper(source_key=f"test:{n}", title=f"Extra paper {n}", published_on=dt.date(2026, 1, 1))
        for n in range(10)
    )
    assert Paper.objects.count() == 59
    titles = entry_titles(feed(client))
    assert len(titles) == 50
    assert "Extra paper 0" in titles  # newest first


def test_entry_carries_title_link_summary_authors_date_and_categories(client, arxiv_paper):
    (entry,) = entries(feed(client, q="decoupling"))
    assert entry.findtext("atom:title", namespaces=ATOM) == arxiv_paper.title
    link = entry.find("atom:link[@rel='alternate']", ATOM).get("href")
    assert link == "http://testserver/papers/2501.00001/"
    summary = entry.find("atom:summary", ATOM)
    assert summary.get("type") == "html"
    assert html.unescape(summary.text) == arxiv_paper.abstract
    authors = [a.findtext("atom:name", namespaces=ATOM) for a in entry.findall("atom:author", ATOM)]
    assert authors == arxiv_paper.authors
    assert entry.findtext("atom:published", namespaces=ATOM) == "2025-01-02T00:00:00+00:00"
    assert entry.findtext("atom:updated", namespaces=ATOM)  # Atom requires it
    terms = [c.get("term") for c in entry.findall("atom:category", ATOM)]
    assert terms == ["cs.LG", "cs.CL", "memory"]


def test_feed_links_to_its_list_page_and_itself_canonically(client, seed):
    root = ET.fromstring(feed(client, min_upvotes="03", q="decoupling", page="2").content)
    links = {link.get("rel"): link.get("href") for link in root.findall("atom:link", ATOM)}
    assert links["alternate"] == "http://testserver/?q=decoupling&min_upvotes=3"
    assert links["self"] == "http://testserver/feed/?q=decoupling&min_upvotes=3"
    assert "decoupling" in root.findtext("atom:title", namespaces=ATOM)


def test_hidden_papers_are_not_in_the_feed(client, arxiv_paper):
    Paper.objects.filter(pk=arxiv_paper.pk).update(hidden=True)
    assert entries(feed(client)) == []


def test_excluded_topics_are_not_categories(client, arxiv_paper):
    PaperTopic.objects.filter(paper=arxiv_paper).update(reason=PaperTopic.Reason.EXCLUDED)
    (entry,) = entries(feed(client))
    assert "memory" not in [c.get("term") for c in entry.findall("atom:category", ATOM)]


def test_a_feed_costs_a_bounded_number_of_queries(client, seed, django_assert_max_num_queries):
    topic = Topic.objects.create(name="Decoupling", slug="decoupling", query="decoupling")
    PaperTopic.objects.bulk_create(PaperTopic(paper=p, topic=topic) for p in Paper.objects.all())
    # The topic, the papers, their topics, and PostgreSQL's normalisations of the query.
    with django_assert_max_num_queries(8):
        response = feed(client, q="decoupling", topic="decoupling")
    assert len(entries(response)) > 10


def test_bad_parameter_is_a_plain_400_naming_it(client, seed):
    response = feed(client, min_upvotes="lots")
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert "min_upvotes: Enter a whole number." in response.content.decode()


@pytest.mark.parametrize(
    "name",
    ["q", "topic", "author", "since", "until", "period", "min_upvotes", "has_code", "sort", "page"],
)
@pytest.mark.parametrize("garbage", ["\x00", "' OR 1=1 --", "9" * 40, "-1", '"', "%ff", "é"])
def test_garbage_in_any_parameter_is_never_a_server_error(client, seed, name, garbage):
    assert feed(client, **{name: garbage}).status_code in (200, 400)


def test_the_feed_heads_with_title_id_updated_author_and_last_modified(client, arxiv_paper):
    """Atom's required feed elements; <updated> and Last-Modified are the newest entry's date."""
    response = feed(client, q="decoupling")
    assert response["Content-Type"] == "application/atom+xml; charset=utf-8"
    assert response.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<feed ')
    root = ET.fromstring(response.content)
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "en-us"
    assert root.findtext("atom:title", namespaces=ATOM) == "Paper catalogue: “decoupling”"
    assert root.findtext("atom:id", namespaces=ATOM) == "http://testserver/?q=decoupling"
    assert root.findtext("atom:updated", namespaces=ATOM) == "2025-01-02T00:00:00+00:00"
    assert root.findtext("atom:author/atom:name", namespaces=ATOM) == "Paper catalogue"
    assert root.findtext("atom:subtitle", namespaces=ATOM).startswith("The 50 newest papers")
    assert response["Last-Modified"] == "Thu, 02 Jan 2025 00:00:00 GMT"


def test_a_reader_polling_with_if_modified_since_gets_304_until_a_newer_paper(client, arxiv_paper):
    first = feed(client)
    since = {"HTTP_IF_MODIFIED_SINCE": first["Last-Modified"]}
    unchanged = client.get(reverse("feed"), **since)
    assert unchanged.status_code == 304 and unchanged.content == b""
    Paper.objects.create(arxiv_id="2501.00002", title="Newer", published_on=dt.date(2025, 1, 3))
    changed = client.get(reverse("feed"), **since)
    assert changed.status_code == 200
    assert entry_titles(changed)[0] == "Newer"


def test_an_empty_feed_is_valid_and_updated_now(client, arxiv_paper):
    before = dt.datetime.now(tz=dt.UTC)
    root = ET.fromstring(feed(client, q="nothingmatchesthis").content)
    assert root.findall("atom:entry", ATOM) == []
    assert dt.datetime.fromisoformat(root.findtext("atom:updated", namespaces=ATOM)) >= before


def test_a_feed_answers_head_and_refuses_post(client, arxiv_paper):
    assert client.head(reverse("feed")).status_code == 200
    assert client.post(reverse("feed")).status_code == 405


def test_quotes_ampersands_and_controls_survive_in_text_and_attributes(client, arxiv_paper):
    """Category terms are attributes: a term with both quote kinds, an ampersand and a control
    character is written so the document parses and the term reads back (without the control,
    which XML cannot carry); an empty title is an empty element."""
    Paper.objects.filter(pk=arxiv_paper.pk).update(
        title="", categories=["cs.LG", "a\"b'c & <d>\x07"], abstract="x\x0b & y"
    )
    (entry,) = entries(feed(client))
    assert entry.findtext("atom:title", namespaces=ATOM) in ("", None)
    terms = [c.get("term") for c in entry.findall("atom:category", ATOM)]
    assert terms == ["cs.LG", "a\"b'c & <d>", "memory"]
    assert html.unescape(entry.findtext("atom:summary", namespaces=ATOM)) == "x & y"
