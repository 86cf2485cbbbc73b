"""Saved searches: a reader keeps a list page's canonical query under a name.

Every view but ``unsubscribe`` looks searches up among the reader's own, so another reader's id
is a 404 (not a 403: we do not even say that it exists).
"""

from __future__ import annotations

import unicodedata
from urllib.parse import parse_qsl, urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from catalogue.filters import PaperFilter
from catalogue.models import SavedSearch


def canonical(query: str, queryset=None) -> PaperFilter:
    """The PaperFilter of a list page's query string (with or without its leading "?")."""
    return PaperFilter(QueryDict(query.lstrip("?")), queryset=queryset)


def describe(query: str) -> list[tuple[str, str]]:
    """A saved query as (parameter, value) pairs, for people to read."""
    return parse_qsl(query)


def unique_name(search: SavedSearch, name: str) -> str:
    """``name`` if no other saved search of the same reader has it (a form error, not a 500)."""
    name = name.strip()
    # A name becomes a digest's email subject, where a line break is refused at every send.
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise forms.ValidationError("A name is one line of text, without control characters.")
    others = SavedSearch.objects.filter(user=search.user, name=name).exclude(pk=search.pk)
    if others.exists():
        raise forms.ValidationError("You already have a saved search with this name.")
    return name


class SavedSearchForm(forms.ModelForm):
    """Name a search. ``query`` arrives as the list page's query string and is stored canonical."""

    class Meta:
        model = SavedSearch
        fields = ["name", "query"]
        widgets = {"query": forms.HiddenInput}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["query"].required = False  # the empty query is "all papers"

    def clean_query(self):
        paper_filter = canonical(self.cleaned_data.get("query") or "")
        if not paper_filter.is_valid():
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in paper_filter.errors.items()
            )
            raise forms.ValidationError(f"This search has invalid parameters ({problems}).")
        return paper_filter.canonical_query()

    def clean_name(self):
        return unique_name(self.instance, self.cleaned_data["name"])


class RenameForm(forms.ModelForm):
    class Meta:
        model = SavedSearch
        fields = ["name", "alerts"]
        labels = {"alerts": "Email me a daily digest of new matches"}

    def clean_name(self):
        return unique_name(self.instance, self.cleaned_data["name"])


def _own(request, pk: int) -> SavedSearch:
    return get_object_or_404(SavedSearch, pk=pk, user=request.user)


@login_required
def saved_list(request):
    searches = list(request.user.saved_searches.all())
    for search in searches:
        search.params = describe(search.query)
    return render(request, "catalogue/saved/list.html", {"searches": searches})


@require_http_methods(["GET", "POST"])
def saved_create(request):
    """POST saves; GET shows the same form filled from ``?query=…&name=…`` (after logging in)."""
    if not request.user.is_authenticated:
        return _login_then_come_back(request)
    bound = request.method == "POST"
    form = SavedSearchForm(
        request.POST if bound else None,
        initial={"query": request.GET.get("query", ""), "name": request.GET.get("name", "")},
        instance=SavedSearch(user=request.user),
    )
    if bound and form.is_valid():
        form.save()
        return redirect("saved-list")
    query = form["query"].value() or ""
    context = {"form": form, "params": describe(canonical(query).canonical_query())}
    return render(request, "catalogue/saved/create.html", context, status=400 if bound else 200)


def _login_then_come_back(request):
    # What they were saving travels in ``next``, so after logging in the form is filled in.
    data = request.POST if request.method == "POST" else request.GET
    carried = {key: data.get(key, "") for key in ("query", "name")}
    return redirect_to_login(f"{reverse('saved-create')}?{urlencode(carried)}")


@login_required
@require_http_methods(["GET", "POST"])
def saved_edit(request, pk: int):
    search = _own(request, pk)
    form = RenameForm(request.POST if request.method == "POST" else None, instance=search)
    if form.is_bound and form.is_valid():
        form.save()
        return redirect("saved-list")
    return render(request, "catalogue/saved/edit.html", {"form": form, "search": search})


@login_required
@require_POST
def saved_alerts(request, pk: int):
    """Turn alerts on (``alerts=on``) or off (anything else): the list page's toggle button."""
    search = _own(request, pk)
    search.alerts = request.POST.get("alerts") == "on"
    search.save(update_fields=["alerts"])
    return redirect("saved-list")


@login_required
@require_http_methods(["GET", "POST"])
def saved_delete(request, pk: int):
    search = _own(request, pk)
    if request.method == "POST":
        search.delete()
        return redirect("saved-list")
    return render(request, "catalogue/saved/delete.html", {"search": search})


# Mail providers send the RFC 8058 one-click POST without cookies or a CSRF token; the secret
# token in the URL is the credential, and the only thing it can do is turn alerts off.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token: str):
    """GET asks for confirmation (link scanners must not unsubscribe anyone); POST turns off."""
    search = get_object_or_404(SavedSearch, unsubscribe_token=token)
    if request.method == "POST":
        SavedSearch.objects.filter(pk=search.pk).update(alerts=False)
        return render(request, "catalogue/saved/unsubscribed.html", {"search": search})
    return render(request, "catalogue/saved/unsubscribe.html", {"search": search})
