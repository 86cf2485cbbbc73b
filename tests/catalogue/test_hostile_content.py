"""Hostile listings stay inert: markup in a title, abstract, author or comment is stored as given
and comes out escaped everywhere; a listing's URL is linked only when it is http(s).

Papers are written straight to the database, as an old row (or a listing an ingest did not
clean) would be.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils.html import escape
from markupsafe import escape as jinja_escape

from catalogue.digest import digest_email
from catalogue.models import Paper, PaperTopic, SavedSearch, Topic
from catalogue.security import web_url
from tests.admin_support import form_data

pytestmark = pytest.mark.django_db

TITLE = 'Decoupling attention <script>alert("title")</script> "><img src=x onerror=alert(1)>'
ABSTRACT = (
    "We study decoupling. <script>alert('abstract')</script> "
    "'\"><img src=x onerror=alert(2)> </textarea><svg onload=alert(3)>"
)
AUTHORS = ['Ada <script>alert("author")</script>', '"><img src=x onerror=alert(4)>']
COMMENT = '12 pages <script>alert("comment")</script>'
TOPIC_NAME = 'Decoupling <script>alert("topic")</script>'
PUBLISHED = dt.date(2025, 11, 27)
ATOM = "{http://www.w3.org/2005/Atom}"

# What a browser would run or load if any of it came out unescaped.
RAW_MARKUP = re.compile(r"<(script|img|svg)\b[^>]*?(alert|onerror|onload|src=x)", re.IGNORECASE)


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {name: value or "" for name, value in attrs}))


def shown_as_text(text: str, html: str) -> bool:
    """``text`` is in ``html`` escaped, by Django (``&quot;``, the admin, emails, highlights) or
    by Jinja2 (``&#34;``, the reader pages): the same characters to a browser."""
    return escape(text) in html or str(jinja_escape(text)) in html


def _scheme(url: str) -> str:
    """The scheme a browser reads: it drops tabs, newlines, leading spaces and controls."""
    cleaned = re.sub(r"[\x00-\x20]", "", url).lower()
    return cleaned.split(":", 1)[0] if ":" in cleaned.split("/", 1)[0] else ""


def assert_inert(html: str) -> None:
    """No hostile markup came out raw: no event handler, no inline or foreign script, no
    link or source whose scheme is not http(s)."""
    assert not RAW_MARKUP.search(html), RAW_MARKUP.search(html).group(0)
    parser = _Tags()
    parser.feed(html)
    for tag, attrs in parser.tags:
        handlers = [name for name in attrs if name.startswith("on")]
        assert not handlers, (tag, attrs)
        if tag == "script":  # only the site's own script files (the admin's)
            assert re.match(r"/[^/]", attrs.get("src", "")), attrs
        for name in ("href", "src", "action", "formaction", "xlink:href"):
            if name in attrs:
                assert _scheme(attrs[name]) in ("", "http", "https"), (tag, attrs)


def links(html: str) -> list[str]:
    parser = _Tags()
    parser.feed(html)
    return [attrs["href"] for tag, attrs in parser.tags if tag == "a" and "href" in attrs]


@pytest.fixture
def hostile():
    paper = Paper.objects.create(
        arxiv_id="2511.00001",
        title=TITLE,
        abstract=ABSTRACT,
        authors=AUTHORS,
        arxiv_comment=COMMENT,
        journal_ref="<b>J.</b> <script>alert('journal')</script>",
        published_on=PUBLISHED,
        listed_on=PUBLISHED,
        upvotes=7,
        code_url="javascript:alert(5)",
        project_url="JaVaScRiPt:alert(6)",
    )
    topic = Topic.objects.create(
        name=TOPIC_NAME,
        slug="decoupling",
        description="<script>alert('description')</script>",
        query="decoupling",
    )
    PaperTopic.objects.create(paper=paper, topic=topic, reason=PaperTopic.Reason.PINNED)
    return paper


def test_hostile_text_is_stored_as_given(hostile):
    hostile.refresh_from_db()
    assert (hostile.title, hostile.abstract, hostile.authors) == (TITLE, ABSTRACT, AUTHORS)
    assert hostile.arxiv_comment == COMMENT


READER_PAGES = [
    "/",
    "/?q=decoupling",
    "/?q=decoupling&mode=keyword",
    "/?q=alert",  # words between tags (PostgreSQL's parser drops the tags themselves)
    "/?author=Ada",
    "/papers/2511.00001/",
    "/papers/daily/2025-11-27/",
    "/papers/week/2025-W48/",
    "/papers/month/2025-11/",
    "/topics/",
    "/topics/decoupling/",
    "/topics/decoupling/?q=decoupling",
]


@pytest.mark.parametrize("url", READER_PAGES)
def test_reader_pages_show_hostile_text_escaped(client, hostile, url):
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert_inert(html)
    # The text is there, as text: dropped or mangled text would also pass assert_inert.
    assert "&lt;script&gt;alert(" in html
    if url != "/topics/":
        assert shown_as_text('"><img src=x onerror=alert(', html)


def test_paper_page_shows_every_hostile_field_escaped(client, hostile):
    html = client.get(hostile.get_absolute_url()).content.decode()
    for text in (TITLE, *AUTHORS, COMMENT, TOPIC_NAME):
        assert shown_as_text(text, html)
    assert shown_as_text("<script>alert('abstract')</script>", html)


def test_atom_feed_carries_hostile_text_as_text(client, hostile):
    for url in ("/feed/", "/feed/?q=decoupling", "/feed/?topic=decoupling"):
        response = client.get(url)
        assert response.status_code == 200
        body = response.content.decode()
        assert "<script" not in body and "<img" not in body
        entry = ET.fromstring(response.content).find(f"{ATOM}entry")
        assert entry.find(f"{ATOM}title").text == TITLE  # text: shown as typed
        summary = entry.find(f"{ATOM}summary")
        assert summary.get("type") == "html"
        assert summary.text == escape(ABSTRACT)  # HTML whose text is the abstract
        names = [a.find(f"{ATOM}name").text for a in entry.findall(f"{ATOM}author")]
        assert names == AUTHORS
        assert all(_scheme(link.get("href")) in ("", "http") for link in entry.iter(f"{ATOM}link"))


def test_api_returns_hostile_text_as_json_data(client, hostile):
    for url in ("/api/papers", "/api/papers?q=decoupling"):
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        assert response["X-Content-Type-Options"] == "nosniff"  # never sniffed as HTML
        [paper] = json.loads(response.content)["results"]
        assert (paper["title"], paper["abstract"], paper["authors"]) == (TITLE, ABSTRACT, AUTHORS)
        assert (paper["code_url"], paper["project_url"]) == (None, None)  # not web links


def test_digest_email_is_plain_text_and_escaped_html(hostile):
    reader = User.objects.create_user("ada", "ada@example.org", "a long passphrase")
    saved = SavedSearch.objects.create(
        user=reader, name='My "><script>alert(7)</script>', query="q=decoupling"
    )
    email = digest_email(saved, [hostile])
    assert TITLE in email.body  # text/plain is shown as text: as stored
    assert ", ".join(AUTHORS) in email.body
    [(html, mimetype)] = email.alternatives
    assert mimetype == "text/html"
    assert_inert(html)
    assert escape(TITLE) in html and escape(saved.name) in html
    assert escape(AUTHORS[0]) in html


def test_saved_search_names_are_escaped_on_the_readers_pages(client, hostile):
    reader = User.objects.create_user("ada", "ada@example.org", "a long passphrase")
    name = 'Mine "><img src=x onerror=alert(8)>'
    saved = SavedSearch.objects.create(user=reader, name=name, query="q=decoupling")
    client.force_login(reader)
    for url in ("/saved/", f"/saved/{saved.pk}/edit/", f"/saved/{saved.pk}/delete/"):
        html = client.get(url).content.decode()
        assert_inert(html)
        assert shown_as_text(name, html)


def test_admin_changelist_and_change_page_escape_hostile_text(admin_client, hostile):
    changelist = reverse("admin:catalogue_paper_changelist")
    for url in (changelist, f"{changelist}?q=decoupling", f"{changelist}?q=2511.00001"):
        html = admin_client.get(url).content.decode()
        assert_inert(html)
        assert escape(TITLE) in html
    change = admin_client.get(reverse("admin:catalogue_paper_change", args=[hostile.pk]))
    html = change.content.decode()
    assert_inert(html)
    assert escape(TITLE) in html and escape(ABSTRACT) in html
    topic = Topic.objects.get(slug="decoupling")
    for url in (
        reverse("admin:catalogue_topic_changelist"),
        reverse("admin:catalogue_topic_change", args=[topic.pk]),
    ):
        html = admin_client.get(url).content.decode()
        assert_inert(html)
        assert escape(TOPIC_NAME) in html


# --- links: only http(s) ---------------------------------------------------------------------

HOSTILE_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "  javascript:alert(1)",
    "\x01javascript:alert(1)",
    "javascript://example.org/%0aalert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "//evil.example.org/x",
    "/relative/junk",
    "relative junk",
    "ftp://files.example.org/paper.pdf",
    "https://[broken/",
    "http:alert(1)",
]
GOOD_URL = "https://github.com/example/decoupling"


@pytest.mark.parametrize("url", ["https://example.org/x", "http://example.org", "HTTPS://A.B/c"])
def test_web_urls_pass(url):
    assert web_url(url) == url


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_other_urls_are_refused(url):
    assert web_url(url) == ""


def linked_paper(url: str) -> Paper:
    return Paper.objects.create(
        arxiv_id="2511.00002",
        title="Decoupling links",
        abstract="Where the code lives.",
        published_on=PUBLISHED,
        code_url=url,
        project_url=url,
    )


def rendered_links(client, admin_client, paper: Paper) -> dict[str, list[str]]:
    """Every link of the pages, email and API that show a paper's code and project links."""
    reader = User.objects.create_user("bob", "bob@example.org", "a long passphrase")
    saved = SavedSearch.objects.create(user=reader, name="Links", query="q=decoupling")
    [(digest_html, _)] = digest_email(saved, [paper]).alternatives
    api = json.loads(client.get("/api/papers").content)["results"][0]
    pages = {
        "paper page": client.get(paper.get_absolute_url()).content.decode(),
        "list page": client.get("/").content.decode(),
        "search": client.get("/?q=decoupling").content.decode(),
        "day page": client.get("/papers/daily/2025-11-27/").content.decode(),
        "digest": digest_html,
        "admin": admin_client.get(
            reverse("admin:catalogue_paper_change", args=[paper.pk])
        ).content.decode(),
    }
    for html in pages.values():
        assert_inert(html)
    found = {name: [u for u in links(html) if u == paper.code_url] for name, html in pages.items()}
    found["api"] = [u for u in (api["code_url"], api["project_url"]) if u]
    return found


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_a_stored_non_web_url_is_never_linked(client, admin_client, url):
    paper = linked_paper(url)
    assert Paper.objects.get(pk=paper.pk).code_url == url  # stored as given
    found = rendered_links(client, admin_client, paper)
    assert found == {name: [] for name in found}


def test_a_web_url_is_linked_everywhere(client, admin_client):
    found = rendered_links(client, admin_client, linked_paper(GOOD_URL))
    assert found["paper page"] == [GOOD_URL, GOOD_URL]  # code and project page
    assert found["api"] == [GOOD_URL, GOOD_URL]
    for name in ("list page", "search", "day page", "digest", "admin"):
        assert found[name], name


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x", "ftp://e.org/x"]
)
def test_admin_refuses_a_non_web_url(admin_client, url):
    paper = linked_paper(GOOD_URL)
    change = reverse("admin:catalogue_paper_change", args=[paper.pk])
    data = {**form_data(admin_client.get(change)), "project_url": url, "_save": "Save"}
    response = admin_client.post(change, data)
    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert errors["project_url"] == ["Enter a web address starting with http:// or https://."]
    assert Paper.objects.get(pk=paper.pk).project_url == GOOD_URL


@pytest.mark.parametrize(
    "typed, stored",
    [
        ("http://example.org/p", "http://example.org/p"),
        ("example.org/p", "https://example.org/p"),  # no scheme: https
        ("//example.org/p", "https://example.org/p"),
    ],
)
def test_admin_accepts_a_web_url(admin_client, typed, stored):
    paper = linked_paper(GOOD_URL)
    change = reverse("admin:catalogue_paper_change", args=[paper.pk])
    data = {**form_data(admin_client.get(change)), "project_url": typed, "_save": "Save"}
    assert admin_client.post(change, data).status_code == 302
    assert Paper.objects.get(pk=paper.pk).project_url == stored


def test_headlines_mark_only_the_words_and_escape_everything_else():
    from catalogue.headlines import excerpt, marked_title

    title = '<script>alert("decoupling")</script> \x02Decoupling\x03 <b>'
    assert str(marked_title(title, ["decoupling"])) == (
        "&lt;script&gt;alert(&#34;<mark>decoupling</mark>&#34;)&lt;/script&gt; "
        "\x02<mark>Decoupling</mark>\x03 &lt;b&gt;"
    )
    abstract = "<img src=x onerror=alert(1)> " * 30 + "we study decoupling <i>"
    shown = str(excerpt(abstract, ["decoupling"]))
    assert "<mark>decoupling</mark> &lt;i&gt;" in shown
    assert "<img" not in shown and "<i>" not in shown
