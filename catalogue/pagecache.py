"""Whole pages for readers without a session, cached in Redis.

Most readers of a catalogue are anonymous, and they ask for the same hot searches and papers.
For them a list page (and the JSON API, a search's feed, which many readers poll, and a
paper's page, shared and linked) is the same bytes until the catalogue changes, so it is
cached under its full URL (scheme and host included: the API and feeds hold absolute links)
and the catalogue's latest change (as ``catalogue.summary`` keys its figures) for
``PAGE_CACHE_SECONDS``. Pages for a session (signed-in readers, pending messages) are never
cached, and anonymous pages carry no CSRF token (their "save this search" form is a GET that
goes through the login), so nothing personal is ever in a cached page. What changes beside
the papers (a paper's upvote history, its topic chips) shows within those seconds.
"""

from __future__ import annotations

import hashlib
from functools import wraps

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse

from catalogue.summary import catalogue_version


def cached_for_anonymous_readers(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not _cacheable(request):
            return view(request, *args, **kwargs)
        key = _key(request)
        hit = cache.get(key)
        if hit is not None:
            content, headers = hit
            response = HttpResponse(content, headers=headers)
            response["X-Page-Cache"] = "hit"
            return response
        response = view(request, *args, **kwargs)
        if response.status_code == 200 and not response.cookies:
            cache.set(key, (response.content, _kept_headers(response)), _seconds())
        return response

    return wrapper


# What a cached response keeps of its headers: its type, and the date a feed reader's next
# If-Modified-Since sends back (catalogue.feeds). The others are the middleware's, set anew.
KEPT_HEADERS = ("Content-Type", "Last-Modified")


def _kept_headers(response: HttpResponse) -> dict[str, str]:
    return {name: response[name] for name in KEPT_HEADERS if response.has_header(name)}


def _seconds() -> int:
    return settings.PAGE_CACHE_SECONDS


def _cacheable(request) -> bool:
    return (
        _seconds() > 0
        and request.method == "GET"
        and settings.SESSION_COOKIE_NAME not in request.COOKIES
        and "messages" not in request.COOKIES
    )


def _key(request) -> str:
    # The absolute URL: a page served under another allowed host (or scheme) links to it.
    text = f"{request.build_absolute_uri()}\x00{catalogue_version()}"
    return "page:" + hashlib.sha256(text.encode()).hexdigest()
