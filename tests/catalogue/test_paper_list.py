"""The list page: full-text search, date and popularity filters, sorting, pagination, errors."""

import datetime as dt
import re

import pytest
from django.urls import reverse

from catalogue.models import Paper
from ingest.sources import hf_page
from ingest.upsert import upsert_papers

pytestmark = pytest.mark.django_db


@pytest.fixture
def seed(seed_bytes):
    records = list(hf_page.parse(seed_bytes, listed_on=dt.date(2025, 12, 24)))
    upsert_papers(records)
    return records


def titles(response) -> set[str]:
    return {p.title for p in response.context["page"].paginator.object_list}


def get(client, **params):
    return client.get(reverse("paper-list"), params)


def cards_whose_text_matches(records, pattern: str) -> set[str]:
    regex = re.compile(pattern, re.IGNORECASE)
    return {r.title for r in records if regex.search(f"{r.title}\n{r.abstract}")}


def test_home_lists_every_seed_paper(client, seed):
    response = get(client)
    assert response.status_code == 200
    assert response.context["page"].paginator.count == 49


def test_decoupling_finds_every_inflection_and_nothing_else(client, seed):
    expected = cards_whose_text_matches(seed, r"decoupl")
    assert len(expected) > 10  # the seed was a search for decoupling: most cards qualify
    found = titles(get(client, q="decoupling"))
    assert found == expected


def test_quoted_phrase_matches_exactly_the_cards_with_that_phrase(client, seed):
    expected = cards_whose_text_matches(seed, r"\blinear[\s-]+attention")
    found = titles(get(client, q='"linear attention"'))
    assert found == expected
    # Not the same as both words anywhere in the text:
    both_words = cards_whose_text_matches(seed, r"(?=.*\blinear\b)(?=.*\battention\b)")
    assert found < both_words | found
    assert titles(get(client, q="linear attention")) >= found


def test_since_and_until_are_inclusive_dates(client, seed):
    since = titles(get(client, since="2025-01-01"))
    assert since == {r.title for r in seed if r.published_on and r.published_on.year >= 2025}
    until = titles(get(client, until="2019-12-31"))
    assert until == {r.title for r in seed if r.published_on and r.published_on.year <= 2019}
    assert until  # the seed has old papers
    exact_day = titles(get(client, since="2025-11-27", until="2025-11-27"))
    assert "Architecture Decoupling Is Not All You Need For Unified Multimodal Model" in exact_day


def test_min_upvotes_keeps_only_popular_papers(client, seed):
    found = titles(get(client, min_upvotes=3))
    assert found == {r.title for r in seed if (r.upvotes or 0) >= 3}
    assert 0 < len(found) < 49


def test_sort_by_upvotes_puts_the_most_upvoted_first(client, seed):
    response = get(client, sort="upvotes")
    upvotes = [p.upvotes for p in response.context["page"].object_list]
    assert upvotes == sorted(upvotes, reverse=True)
    assert upvotes[0] == max(r.upvotes or 0 for r in seed)


def test_default_order_is_newest_first_with_undated_last(client, seed):
    papers = list(get(client).context["page"].paginator.object_list)
    dates = [p.published_on for p in papers if p.published_on]
    assert dates == sorted(dates, reverse=True)
    assert papers[-1].published_on is None


def test_relevance_ranks_title_matches_above_abstract_matches(client, seed):
    papers = list(get(client, q="decoupling").context["page"].paginator.object_list)
    in_title = [i for i, p in enumerate(papers) if re.search("decoupl", p.title, re.I)]
    only_abstract = [i for i, p in enumerate(papers) if not re.search("decoupl", p.title, re.I)]
    assert in_title and only_abstract
    assert max(in_title) < min(only_abstract)


def test_matches_are_highlighted_on_the_page(client, seed):
    html = get(client, q="decoupling").content.decode()
    assert re.search(r"<mark>decoupl\w*</mark>", html, re.IGNORECASE)


def test_pagination_links_carry_rel_and_keep_the_filters(client, seed):
    html = get(client, since="2020-01-01").content.decode()
    assert 'rel="next" href="?since=2020-01-01&amp;page=2"' in html
    html = get(client, since="2020-01-01", page=2).content.decode()
    assert 'rel="prev" href="?since=2020-01-01&amp;page=1"' in html


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"until": "2025-13-45"},
        {"min_upvotes": "lots"},
        {"min_upvotes": "-3"},
        {"min_upvotes": "2.5"},
        {"sort": "random"},
        {"page": "many"},
        {"q": "\x00"},
        {"q": '"unclosed phrase'},
        {"q": "!!! && ||"},
    ],
)
def test_bad_parameters_are_form_errors_not_server_errors(client, seed, params):
    response = get(client, **params)
    assert response.status_code in (200, 400)


def test_bad_date_shows_a_message_next_to_its_field(client, seed):
    response = get(client, since="yesterday")
    assert response.status_code == 400
    assert 'id="id_since_error"' in response.content.decode()
    assert "Enter a valid date" in response.content.decode()


def test_paper_page_shows_the_full_abstract(client, seed):
    paper = Paper.objects.get(title__startswith="decoupleQ")
    response = client.get(paper.get_absolute_url())
    assert response.status_code == 200
    html = response.content.decode()
    assert "decoupleQ abandons the traditional heuristic" in html
    assert 'href="https://github.com/bytedance/decoupleQ"' in html


def test_paper_page_by_arxiv_id_including_old_style_ids(client):
    Paper.objects.create(arxiv_id="hep-th/9901001", title="Strings")
    assert client.get("/papers/hep-th/9901001/").status_code == 200
    assert client.get("/papers/hep-th/9901002/").status_code == 404


def test_hidden_papers_are_neither_listed_nor_served(client, seed):
    paper = Paper.objects.get(title__startswith="decoupleQ")
    Paper.objects.filter(pk=paper.pk).update(hidden=True)
    assert paper.title not in titles(get(client))
    assert client.get(paper.get_absolute_url()).status_code == 404


def test_highlights_show_a_listings_markup_as_text_never_as_markup(client):
    Paper.objects.create(
        arxiv_id="2512.00001",
        title='<script>alert("t")</script> Decoupling "><img src=x onerror=alert(1)>',
        abstract="We study decoupling. <script>alert('a')</script><b onmouseover=alert(2)>x</b>",
    )
    response = get(client, q="decoupling")
    html = response.content.decode()
    assert response.context["page"].object_list[0].title_html  # the highlighted path
    assert "<mark>Decoupling</mark>" in html and "<mark>decoupling</mark>" in html
    for live in ("<script>alert", "<img src=x", "<b onmouseover"):
        assert live not in html
    assert "&lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt;" in html  # as Jinja2 escapes
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
