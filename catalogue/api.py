"""``/api/papers``: the list page's search as JSON, paginated with next/previous links.

It takes the list page's parameters (``catalogue.filters.PaperFilter``) plus ``page`` and
``page_size``; results come in the list page's order. Errors are ``400 {"errors": {...}}``.
``count`` is estimated for huge result sets (``count_is_estimate``, see catalogue.summary);
``pages`` stops where the list page's do (the newest candidates for relevance, else the first
``LIST_MAX_RESULTS``).
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.db.models import QuerySet
from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from catalogue.filters import PaperFilter
from catalogue.models import Paper
from catalogue.pagecache import cached_for_anonymous_readers
from catalogue.paths import absolute_urls
from catalogue.security import web_url
from catalogue.summary import KnownCountPaginator
from catalogue.summary import reachable as reachable_count

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100


def with_topics(papers: QuerySet) -> QuerySet:
    """Each paper with its shown topics (by rule or pinned) as ``topic_list``, in the same
    statement as the papers (``PaperQuerySet.for_cards``)."""
    return papers.for_cards()


class PageForm(forms.Form):
    page = forms.IntegerField(min_value=1, required=False)
    page_size = forms.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, required=False)


@require_GET
@cached_for_anonymous_readers
def papers(request):
    paper_filter = PaperFilter(request.GET, queryset=Paper.objects.visible())
    paging = PageForm(request.GET)
    errors = {**_errors(paper_filter.form), **_errors(paging)}
    if errors:
        return _bad_request(errors)
    size = paging.cleaned_data["page_size"] or DEFAULT_PAGE_SIZE
    summary, results = paper_filter.summary_and_results(with_topics, topics=False)
    reachable = reachable_count(results, summary.count, paper_filter.reachable)
    paginator = KnownCountPaginator(results, size, count=reachable)
    number = paging.cleaned_data["page"] or 1
    if paginator.past_the_end(number):
        return _bad_request({"page": [paginator.past_the_end_message()]})
    page = paginator.page(number)
    url_of = paper_urls(request)
    return JsonResponse(
        {
            "count": summary.count,
            "count_is_estimate": not summary.exact,
            "pages": paginator.num_pages,
            **_neighbour_links(request, paper_filter.canonical_params(), page, size),
            "results": [paper_json(paper, url_of(paper)) for paper in page.object_list],
        }
    )


def paper_urls(request):
    """A function of a paper to its page's absolute URL, for a page of many papers."""
    path_of, absolute = Paper.paths(), absolute_urls(request)
    return lambda paper: absolute(path_of(paper.slug))


def paper_json(paper: Paper, url: str) -> dict:
    """A paper as the API gives it; ``url``: its page's absolute URL (``paper_urls``)."""
    return {
        "id": paper.pk,
        "arxiv_id": paper.arxiv_id,
        "title": paper.title,
        "authors": paper.authors,
        "abstract": paper.abstract,
        "published_on": _iso(paper.published_on),
        "listed_on": _iso(paper.listed_on),
        "upvotes": paper.upvotes,
        # Only web links: a client would link them, and a stored "javascript:" must stay inert.
        "code_url": web_url(paper.code_url) or None,
        "project_url": web_url(paper.project_url) or None,
        "url": url,
        "topics": [topic["slug"] for topic in paper.topic_list],
        # Why a relevance-ranked result matched: "words", "meaning" or both.
        "matched": list(getattr(paper, "match_reasons", ())),
    }


def _iso(day) -> str | None:
    return day.isoformat() if day else None


def _neighbour_links(request, params: list[tuple[str, str]], page, size: int) -> dict:
    """``next`` and ``previous`` page URLs, with the canonical parameters: stable, cacheable."""

    def url(number: int) -> str:
        paging = [("page", str(number))]
        if size != DEFAULT_PAGE_SIZE:
            paging.append(("page_size", str(size)))
        query = urlencode(params + paging)
        return request.build_absolute_uri(f"{reverse('api-papers')}?{query}")

    return {
        "next": url(page.next_page_number()) if page.has_next() else None,
        "previous": url(page.previous_page_number()) if page.has_previous() else None,
    }


def _errors(form: forms.Form) -> dict[str, list[str]]:
    return {field: list(messages) for field, messages in form.errors.items()}


def _bad_request(errors: dict[str, list[str]]) -> JsonResponse:
    return JsonResponse({"errors": errors}, status=400)
