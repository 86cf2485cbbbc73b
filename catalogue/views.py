"""Server-rendered pages: the filtered list and the paper page."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from catalogue import search
from catalogue.filters import PaperFilter
from catalogue.models import Paper

PAGE_SIZE = 25


def paper_list(request):
    """The catalogue, filtered by the GET parameters of ``PaperFilter``."""
    paper_filter = PaperFilter(request.GET, queryset=Paper.objects.visible())
    papers = paper_filter.qs if paper_filter.is_valid() else Paper.objects.none()
    page = Paginator(papers, PAGE_SIZE).get_page(request.GET.get("page"))
    query = paper_filter.query_text
    if query:
        # Highlights cost a re-parse of each document: only for the rows on this page.
        ids = [paper.pk for paper in page.object_list]
        highlighted = {p.pk: p for p in search.highlight(Paper.objects.filter(pk__in=ids), query)}
        page.object_list = [highlighted.get(p.pk, p) for p in page.object_list]
    status = 200 if paper_filter.is_valid() else 400
    context = {"filter": paper_filter, "page": page, "query": query}
    return render(request, "catalogue/paper_list.html", context, status=status)


def paper_detail(request, slug: str):
    """A paper by arXiv id (``2401.01234``, ``hep-th/9901001``) or catalogue number."""
    papers = Paper.objects.visible()
    if slug.isdigit():
        paper = get_object_or_404(papers, pk=int(slug), arxiv_id__isnull=True)
    else:
        paper = get_object_or_404(papers, arxiv_id=slug)
    return render(request, "catalogue/paper_detail.html", {"paper": paper})
