"""Fuzzing every URL and every parameter: whatever a client sends, the answer is 2xx, 3xx or 4xx,
never a server error, and a 400 says what was wrong (the form's error), never a traceback.

In-process (Django's test client), against a small catalogue: papers (one at each end of the
calendar, one without an arXiv id, one with an embedding), topics, a reader with a saved search.

- Path segments: every URL pattern of catalogue/urls*.py, enumerated from the resolver (a new
  route is fuzzed without touching this file; the admin only through its login page), each
  placeholder filled with random text, control characters, lone surrogates, huge numbers,
  other scripts' digits, percent-encoding junk, and values its converter accepts.
- Parameters of the list pages, the API, the feed and the saved-search endpoints: every known
  name with random and plausible values, unknown names, repeated keys, 100 kB values, NULs;
  raw query strings and form bodies of arbitrary bytes (invalid UTF-8 included).
- Search syntax: queries made of operators, quotes, fields and words, in every mode.

Each test's example budget is ``FUZZ_EXAMPLES`` (default 50; a third of it for each route);
``FUZZ_EXAMPLES=5000`` is the long variant. Every 500 these found has a plain example test,
in test_bad_paths.py or below.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from functools import cache
from urllib.parse import quote, quote_plus

import markupsafe
import numpy as np
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils.html import escape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalogue.filters import PERIOD_DAYS, PUBLIC_PARAMS, Sort
from catalogue.hybrid import Mode
from catalogue.models import Paper, PaperEmbedding, SavedSearch, Topic
from tests.catalogue.test_bad_paths import assert_a_page_or_explained_400

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))


def fuzz(examples: int):
    return settings(
        max_examples=max(examples, 1),
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # the catalogue is built once per test: on purpose
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


FUZZ = fuzz(EXAMPLES)
# Each of the 23 routes is a target of its own, with a third of the budget: the routes together
# then cost about what the list page's parameters do.
FUZZ_EACH_ROUTE = fuzz(EXAMPLES // 3)

# --- the catalogue ------------------------------------------------------------------------------

PAPER_IDS = ["2401.01234", "hep-th/9901001", "0001.00001", "9912.99999", "1", "5"]
TOPIC_SLUGS = ["linear-attention", "decoupling"]


@pytest.fixture
def catalogue(settings):
    # The page and summary caches are part of what a request runs through (cache keys are
    # built from the raw URL): on, in this test's own Redis database.
    settings.PAGE_CACHE_SECONDS = 60
    settings.SUMMARY_CACHE_SECONDS = 60
    day = dt.date(2024, 1, 5)
    first = Paper.objects.create(
        arxiv_id="2401.01234",
        title="Linear attention for long sequences",
        abstract="We decouple heads. Code at https://github.com/a/b.",
        authors=["Ada Lovelace", "Alan Turing"],
        published_on=day,
        listed_on=day,
        upvotes=12,
        code_url="https://github.com/a/b",
    )
    vector = np.zeros(384)
    vector[0] = 1.0
    PaperEmbedding.objects.create(paper=first, vector=vector, model="test", text_hash="x")
    Paper.objects.create(arxiv_id="hep-th/9901001", title="Strings", published_on=day)
    Paper.objects.create(arxiv_id="0001.00001", title="The first", published_on=dt.date.min)
    Paper.objects.create(arxiv_id="9912.99999", title="The last", published_on=dt.date.max)
    Paper.objects.create(source_key="seed:1", title="Decoupled heads, no arXiv id")
    for slug in TOPIC_SLUGS:
        Topic.objects.create(name=slug.replace("-", " "), slug=slug, query=slug.split("-")[0])
    reader = User.objects.create(username="ada")  # no password: hashing one takes a second
    saved = SavedSearch.objects.create(user=reader, name="Attention", query="q=attention")
    signed_in = Client()
    signed_in.force_login(reader)
    return {"anonymous": Client(), "signed_in": signed_in, "saved": saved}


# --- what an answer must be ---------------------------------------------------------------------


def assert_answered(response, explains=None) -> None:
    """Not a server error; a client error without a traceback, that says what was wrong: a
    405 names the methods allowed; a 400 of our own forms passes ``explains`` (the form's
    error is in it), one Django answers itself (a redirect too long to send, too many fields)
    is templates/400.html."""
    status = response.status_code
    assert status < 500, status
    body = response.content.decode("utf-8", "replace")
    assert "Traceback" not in body
    if status == 405:
        assert response["Allow"]
    if status == 400 and response.request["REQUEST_METHOD"] != "HEAD":
        if any(template.name == "400.html" for template in response.templates):
            assert "too long or malformed" in body
        elif explains is not None:
            assert explains(response), body[:1000]
        else:
            assert body.strip()


def html_form_error(response) -> bool:
    """Every error of the page's form is shown on it, escaped as either template engine
    escapes it (a quote: Django's ``&quot;``, Jinja2's ``&#34;``)."""
    context = response.context
    form = context["filter"].form if "filter" in context else context["form"]
    messages = [message for errors in form.errors.values() for message in errors]
    body = response.content.decode()
    return bool(messages) and all(
        escape(message) in body or str(markupsafe.escape(message)) in body for message in messages
    )


def test_a_form_error_quoting_the_reader_s_value_is_shown(catalogue):
    """Found by the fuzzer: ``mode="`` is an invalid choice whose message quotes the value."""
    response = catalogue["anonymous"].get("/", {"mode": '"'})
    assert response.status_code == 400
    assert html_form_error(response)


def api_error(response) -> bool:
    errors = json.loads(response.content)["errors"]
    return bool(errors) and all(isinstance(m, list) and m for m in errors.values())


def feed_error(response) -> bool:
    return response.content.decode().startswith("Invalid feed parameters.\n")


# --- strategies: text a client can send ---------------------------------------------------------

# Percent-encoding junk, sent as is: broken escapes, an escaped NUL, slash and dot-dot, a lone
# surrogate's and an overlong NUL's UTF-8 bytes, bytes that are never UTF-8.
JUNK = [
    "%", "%%", "%z", "%zz", "%C3", "%C3%28", "%ED%A0%80", "%C0%80", "%FF%FE", "%00", "%2F",
    "%2e%2e", "..", ".", "/", "//", "\\", ";", "%u0041", "%25", "+", "%0A", "%0D%0A",
]  # fmt: skip

control_text = st.text(st.characters(max_codepoint=0x1F) | st.sampled_from("\x7f\x85\u2028"))
surrogate_text = st.text(st.characters(categories=["Cs"]), min_size=1)
# str.isdigit() says yes to all of these; int() reads some ("٤٨", "４８") and not others ("²").
odd_digits = st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=12)
huge_number = st.one_of(
    st.integers(-(10**40), 10**40).map(str),
    st.sampled_from(["9" * 30, "9" * 5000, "1e309", "-0", "+1", "0x10", "1_000", " 1 ", "nan"]),
)
any_text = st.one_of(
    st.text(),
    # Odd Unicode: format controls (BOM, right-to-left override, joiners), combining marks,
    # odd spaces and line separators, private use.
    st.text(st.characters(categories=["Cf", "Mn", "Zs", "Zl", "Zp", "Co"]), max_size=20),
    control_text,
    surrogate_text,
    odd_digits,
    huge_number,
)


def utf8(text: str) -> bytes:
    """Text as bytes on the wire; a lone surrogate becomes the invalid bytes it would be."""
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw, values: list[str]):
    """A valid value with one edit: a character inserted, replaced or dropped, or cut short."""
    value = draw(st.sampled_from(values))
    at = draw(st.integers(0, len(value)))
    char = draw(st.one_of(st.characters(), st.sampled_from("\x00²٤-/.W")))
    edit = draw(st.sampled_from(["insert", "replace", "drop", "cut"]))
    if edit == "insert":
        return value[:at] + char + value[at:]
    if edit == "replace":
        return value[:at] + char + value[at + 1 :]
    if edit == "drop":
        return value[:at] + value[at + 1 :]
    return value[:at]


# --- every route, with random path segments and parameters -----------------------------------


@cache
def routes() -> list[tuple[str, dict]]:
    """(route, {placeholder: converter}) of every URL pattern; of the admin, its login page."""
    found = []

    def walk(patterns, prefix: str, converters: dict):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            merged = {**converters, **pattern.pattern.converters}
            if isinstance(pattern, URLResolver):
                if pattern.app_name == "admin":
                    login = [p for p in pattern.url_patterns if getattr(p, "name", "") == "login"]
                    walk(login, route, merged)
                else:
                    walk(pattern.url_patterns, route, merged)
            elif isinstance(pattern, URLPattern):
                found.append((route, merged))

    walk(get_resolver().url_patterns, "/", {})
    return found


def test_every_route_is_enumerated():
    """The fuzz reaches the catalogue's routes through the resolver, admin only at login."""
    found = {route for route, _ in routes()}
    assert {"/", "/papers/daily/<day:day>/", "/papers/<paper:slug>/", "/api/papers"} <= found
    assert "/saved/unsubscribe/<slug:token>/" in found and "/admin/login/" in found
    assert not any(r.startswith("/admin/") and r != "/admin/login/" for r in found)


# Plausible values by placeholder name: mutated, they reach the views' own checks.
VALID_SEGMENTS = {
    "day": ["2024-01-05", "0001-01-01", "9999-12-31"],
    "week": ["2024-W01", "0001-W01", "9999-W52"],
    "month": ["2024-01", "0001-01", "9999-12"],
    "slug": PAPER_IDS + TOPIC_SLUGS,
    "pk": ["1", "2"],
    "token": ["set-password", "abcdefghijklmnopqrstuvwxyz012345678901234_-"],
    "uidb64": ["MQ", "Mg", "AA"],
}


def segment(name: str, converter) -> st.SearchStrategy[str]:
    """A path segment for placeholder ``name``, percent-encoded or raw junk."""
    encoded = st.one_of(
        any_text,
        st.from_regex(converter.regex, fullmatch=True),
        mutated(VALID_SEGMENTS.get(name, ["x"])),
    ).map(lambda text: quote(utf8(text), safe="/"))
    junk = st.lists(st.sampled_from(JUNK) | encoded, min_size=1, max_size=4).map("".join)
    return st.one_of(encoded, junk)


_PLACEHOLDER = re.compile(r"<(?:\w+:)?(\w+)>")


@st.composite
def request_path(draw, route: str, converters: dict) -> str:
    return _PLACEHOLDER.sub(lambda m: draw(segment(m[1], converters[m[1]])), route)


@pytest.mark.parametrize(("route", "converters"), routes(), ids=[r for r, _ in routes()])
@FUZZ_EACH_ROUTE
@given(data=st.data())
def test_any_request_to_any_route_is_answered(catalogue, route, converters, data):
    """Random path segments; random parameters in the query string and (POST) form body."""
    path = data.draw(request_path(route, converters)) if converters else route
    method = data.draw(st.sampled_from(["GET", "POST", "HEAD"]))
    client = catalogue[data.draw(st.sampled_from(["anonymous", "signed_in"]))]
    query = data.draw(st.one_of(st.just(""), parameters.map(query_string)))
    body = data.draw(parameters.map(query_string)) if method == "POST" else ""
    form = "application/x-www-form-urlencoded"
    response = client.generic(method, f"{path}?{query}" if query else path, body, form)
    assert_answered(response)


# --- every parameter ----------------------------------------------------------------------------

PLAUSIBLE = {
    "q": st.sampled_from(
        ["attention", '"linear attention"', "-heads", "a OR b", "title:strings", "author:ada"]
    ),
    "mode": st.sampled_from([m for m, _ in Mode.CHOICES]),
    "like": st.sampled_from(PAPER_IDS),
    "topic": st.sampled_from(TOPIC_SLUGS),
    "author": st.sampled_from(["Ada Lovelace", "Turing", '"Ada']),
    "since": st.dates().map(dt.date.isoformat),
    "until": st.dates().map(dt.date.isoformat),
    "period": st.sampled_from(list(PERIOD_DAYS)),
    "min_upvotes": st.integers(-5, 10**7).map(str),
    "has_code": st.sampled_from(["1", "0", "true", "false", "on", ""]),
    "sort": st.sampled_from([s for s, _ in Sort.CHOICES]),
    "page": st.integers(-3, 10**30).map(str),
    "page_size": st.integers(-3, 10**6).map(str),
    "format": st.sampled_from(["json", "atom", "rss", "html"]),
}
PARAMETER_NAMES = [*PUBLIC_PARAMS, "page", "page_size", "format", "query", "name", "alerts", "next"]
HUGE = ["x" * 100_000, "attention " * 10_000, "\x00" * 1000, "9" * 100_000]


def parameter_value(name: str) -> st.SearchStrategy[str]:
    plausible = PLAUSIBLE.get(name, st.just(""))
    return st.one_of(plausible, mutated([""]) | plausible.flatmap(lambda v: mutated([v])), any_text)


parameter = st.one_of(
    st.sampled_from(PARAMETER_NAMES).flatmap(lambda n: st.tuples(st.just(n), parameter_value(n))),
    st.tuples(any_text, any_text),  # unknown names
)
# A few pairs, names repeated at random; sometimes one huge value.
parameters = st.lists(parameter, max_size=8).flatmap(
    lambda pairs: st.one_of(
        st.just(pairs),
        st.tuples(st.sampled_from(PARAMETER_NAMES), st.sampled_from(HUGE)).map(
            lambda huge: [*pairs, huge]
        ),
    )
)


def query_string(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote_plus(utf8(k))}={quote_plus(utf8(v))}" for k, v in pairs)


LIST_PAGES = [
    "/",
    "/topics/linear-attention/",
    "/papers/daily/2024-01-05/",
    "/papers/week/2024-W01/",
]


@FUZZ
@given(
    path=st.sampled_from(LIST_PAGES),
    pairs=parameters,
    who=st.sampled_from(["anonymous", "signed_in"]),
)
def test_list_pages_answer_any_parameters(catalogue, path, pairs, who):
    response = catalogue[who].get(f"{path}?{query_string(pairs)}")
    assert_answered(response, html_form_error)


@FUZZ
@given(pairs=parameters)
def test_api_answers_any_parameters(catalogue, pairs):
    response = catalogue["anonymous"].get(f"/api/papers?{query_string(pairs)}")
    assert_answered(response, api_error)


@FUZZ
@given(pairs=parameters)
def test_feed_answers_any_parameters(catalogue, pairs):
    response = catalogue["anonymous"].get(f"/feed/?{query_string(pairs)}")
    assert_answered(response, feed_error)


@st.composite
def saved_search_request(draw, saved: SavedSearch):
    """A request to one of the saved-search endpoints, with random fields."""
    query = draw(st.one_of(parameters.map(query_string), any_text))
    name = draw(st.one_of(any_text, st.sampled_from(["Attention", "", " ", "x" * 300])))
    alerts = draw(st.one_of(st.sampled_from(["on", "off", ""]), any_text))
    targets = [
        ("GET", reverse("saved-create"), {"query": query, "name": name}),
        ("POST", reverse("saved-create"), {"query": query, "name": name}),
        ("POST", reverse("saved-edit", args=[saved.pk]), {"name": name, "alerts": alerts}),
        ("POST", reverse("saved-alerts", args=[saved.pk]), {"alerts": alerts}),
        ("POST", reverse("saved-delete", args=[saved.pk + 1]), {}),
        ("GET", reverse("saved-list"), {"page": query}),
        ("POST", reverse("saved-unsubscribe", args=[saved.unsubscribe_token]), {"x": alerts}),
    ]
    method, path, fields = draw(st.sampled_from(targets))
    return method, path, query_string(list(fields.items()))


@FUZZ
@given(data=st.data(), who=st.sampled_from(["anonymous", "signed_in"]))
def test_saved_search_endpoints_answer_any_fields(catalogue, data, who):
    method, path, fields = data.draw(saved_search_request(catalogue["saved"]))
    client = catalogue[who]
    if method == "GET":
        response = client.get(f"{path}?{fields}")
    else:
        response = client.generic(
            "POST", path, fields, content_type="application/x-www-form-urlencoded"
        )
    assert_answered(response, html_form_error)


# Raw bytes in the query string and in a form body: WSGI carries them as latin-1 text.
raw_bytes = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"&", b"=", b"&&", b"==", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80"]),
        st.sampled_from(PARAMETER_NAMES).map(lambda n: n.encode() + b"="),
        st.sampled_from(JUNK).map(str.encode),
    ),
    max_size=12,
).map(b"".join)
RAW_TARGETS = {"/": html_form_error, "/api/papers": api_error, "/feed/": feed_error}


@FUZZ
@given(path=st.sampled_from(list(RAW_TARGETS)), raw=raw_bytes)
def test_raw_query_strings_are_answered(catalogue, path, raw):
    response = catalogue["anonymous"].get(path, QUERY_STRING=raw.decode("latin-1"))
    assert_answered(response, RAW_TARGETS[path])


@FUZZ
@given(raw=raw_bytes, who=st.sampled_from(["anonymous", "signed_in"]))
def test_raw_form_bodies_are_answered(catalogue, raw, who):
    for path in (reverse("saved-create"), reverse("login")):
        response = catalogue[who].generic(
            "POST", path, raw, content_type="application/x-www-form-urlencoded"
        )
        assert_answered(response)


# --- search syntax ------------------------------------------------------------------------------

SYNTAX = ['"', "-", "OR", "title:", "author:", "abstract:", "TITLE:", "or", "(", ")", "*", ":",
          "&", "|", "!", "<->", "'", "\\", ":*", "attention", "linear", "the", "a", "ada",
          " ", " ", "\t", "\x00", "\x02", "\x03", "-\"", "\"\""]  # fmt: skip
search_query = st.lists(st.sampled_from(SYNTAX), max_size=12).map("".join)


@FUZZ
@given(
    q=search_query,
    mode=st.sampled_from(["", *(m for m, _ in Mode.CHOICES)]),
    sort=st.sampled_from(["", Sort.RELEVANCE, Sort.NEWEST]),
    path=st.sampled_from(["/", "/api/papers", "/feed/"]),
)
def test_any_search_syntax_is_answered(catalogue, q, mode, sort, path):
    pairs = [("q", q), ("mode", mode), ("sort", sort), ("author", q[:20])]
    response = catalogue["anonymous"].get(f"{path}?{query_string(pairs)}")
    assert_answered(
        response, {"/": html_form_error, "/api/papers": api_error}.get(path, feed_error)
    )


# --- plain examples: operators alone, empty fields, huge values -----------------------------


@pytest.mark.parametrize(
    "q",
    ['"', '""', "-", "--", "OR", "OR OR", "- OR -", '-""', "title:", "author:", "abstract:",
     'title:""', 'author:"', "-title:", "title:author:", "&|!", "<->", ":*", "'", "\\",
     "the OR a", "-attention", "title: author: OR -"],
)  # fmt: skip
@pytest.mark.parametrize("mode", ["hybrid", "keyword", "semantic"])
def test_queries_of_operators_or_empty_fields_show_a_page(client, catalogue, q, mode):
    response = client.get("/", {"q": q, "mode": mode})
    assert response.status_code == 200
    assert client.get("/api/papers", {"q": q, "mode": mode}).status_code == 200
    assert client.get("/feed/", {"q": q, "mode": mode}).status_code == 200


def offsets(queries) -> list[int]:
    return [int(n) for q in queries for n in re.findall(r"\bOFFSET (\d+)", q["sql"])]


@pytest.mark.parametrize(
    "query",
    ["page=" + "9" * 30, "page=" + "9" * 5000, "page=-" + "9" * 30, "page=0"],
)
def test_huge_page_numbers_are_a_page_or_a_400_without_a_deep_offset(
    client, catalogue, settings, query
):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"/?{query}")
    assert_a_page_or_explained_400(response)
    assert all(offset <= settings.LIST_MAX_RESULTS for offset in offsets(captured))


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page_size=" + "9" * 30, "page_size"),
        ("min_upvotes=1" + "0" * 100, "min_upvotes"),
        ("since=99999-01-01", "since"),
        ("until=-0001-01-01", "until"),
        ("since=2025-01-01&until=2024-01-01", "until"),
        ("like=" + "9" * 100, "like"),
        ("q=" + "x" * 100_000, "q"),
        ("author=" + "x" * 100_000, "author"),
    ],
)
def test_huge_api_values_are_form_errors_before_any_search(
    client, catalogue, settings, query, field
):
    settings.PAGE_CACHE_SECONDS = 0  # its key reads the catalogue's latest change
    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"/api/papers?{query}")
    assert response.status_code == 400 and field in response.json()["errors"]
    assert not any("paper" in q["sql"] for q in captured)  # no search, no like= lookup


@pytest.mark.parametrize("page", ["9" * 30, "2"])
def test_api_pages_beyond_the_last_are_form_errors_without_a_deep_offset(
    client, catalogue, settings, page
):
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/api/papers", {"page": page})
    assert response.status_code == 400 and list(response.json()["errors"]) == ["page"]
    assert all(offset <= settings.LIST_MAX_RESULTS for offset in offsets(captured))


def test_the_widest_date_range_is_a_page(client, catalogue):
    response = client.get("/", {"since": "0001-01-01", "until": "9999-12-31", "sort": "oldest"})
    assert [p.arxiv_id for p in response.context["page"].object_list][:1] == ["0001.00001"]


def test_a_repeated_key_takes_its_last_value_and_one_bad_topic_is_an_error(client, catalogue):
    response = client.get("/api/papers?sort=oldest&sort=newest")
    dates = [paper["published_on"] for paper in response.json()["results"]]
    assert dates[0] == "9999-12-31" and dates[-2:] == ["0001-01-01", None]
    response = client.get("/api/papers?topic=linear-attention&topic=%00")
    assert response.status_code == 400 and "topic" in response.json()["errors"]
