"""Paths of the catalogue's pages without a ``reverse()`` each.

A list page links every card to its paper and its topics: ``reverse()`` took 12-16 µs a link
(the resolver's candidates, its regex check, the quoting of the whole path), 1-2 ms of a
page of 25 cards or an API page of 100. The path of one URL name differs from paper to paper
only in the slug, so it is reversed once per URL configuration and script prefix with a
placeholder, and each slug is quoted into it as ``reverse()`` quotes it. A slug the
converter would refuse goes through ``reverse()``, which raises as before. The paths
without arguments the page's frame links to (``fixed_path``) are reversed once too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from urllib.parse import quote

from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.http import RFC3986_SUBDELIMS

# What ``reverse()`` leaves unquoted in a path (django.urls.resolvers).
_SAFE = RFC3986_SUBDELIMS + "/~:@"
# Matches every slug converter of the URLs it stands in for, and quotes to itself.
_PLACEHOLDER = "slugplaceholder0"


def slug_path(url_name: str, slug: str, slug_regex: str) -> str:
    """``reverse(url_name, args=[slug])`` for a URL whose one argument is matched by
    ``slug_regex`` and converted to itself."""
    return slug_paths(url_name, slug_regex)(slug)


def slug_paths(url_name: str, slug_regex: str) -> Callable[[str], str]:
    """``slug_path`` of ``url_name`` as a function of the slug, for the many papers of one
    page: what ``reverse()`` reads from thread-local state (``_where``, ~4 µs) read once."""
    before, after = _around_slug(url_name, *_where())
    fully_matches = _fully_matcher(slug_regex)

    def path(slug: str) -> str:
        if not slug or fully_matches(slug) is None:
            return reverse(url_name, args=[slug])
        return before + quote(slug, safe=_SAFE) + after

    return path


# A path Django's ``build_absolute_uri`` appends to the origin as it is: from the root, not
# "//" (another host), no dot segment to resolve, only characters ``iri_to_uri`` keeps.
_PLAIN_PATH = re.compile(r"/(?!/)[A-Za-z0-9\-._~/#%\[\]=:;$&()+,!?*@']*")


def absolute_urls(request) -> Callable[[str], str]:
    """``request.build_absolute_uri`` as a function of a path, for the many links of one API
    page or feed: the origin worked out once (~10 µs a link otherwise). The paths this module
    makes are plain (``_PLAIN_PATH``); others go through Django's own."""
    origin = request.build_absolute_uri("/")[:-1]

    def absolute(path: str) -> str:
        if _PLAIN_PATH.fullmatch(path) is None or "/." in path:
            return request.build_absolute_uri(path)
        return origin + path

    return absolute


def fixed_path(url_name: str) -> str:
    """``reverse(url_name)`` of a URL without arguments."""
    return _fixed(url_name, *_where())


def _where() -> tuple:
    """What ``reverse()`` reads besides its arguments (tests and scripts change them): part of
    each memo's key."""
    return settings.ROOT_URLCONF, get_urlconf(), get_script_prefix()


@functools.lru_cache(maxsize=256)
def _fixed(url_name: str, root_urlconf, urlconf, prefix: str) -> str:
    return reverse(url_name)


@functools.lru_cache(maxsize=64)
def _fully_matcher(slug_regex: str):
    return re.compile(slug_regex).fullmatch


def _fully_matches(slug_regex: str, slug: str) -> bool:
    return bool(slug) and _fully_matcher(slug_regex)(slug) is not None


@functools.lru_cache(maxsize=64)
def _around_slug(url_name: str, root_urlconf, urlconf, prefix: str) -> tuple[str, str]:
    """The path of ``url_name`` before and after its slug."""
    path = reverse(url_name, args=[_PLACEHOLDER])
    before, placeholder, after = path.partition(_PLACEHOLDER)
    assert placeholder, f"{url_name}'s path does not hold its slug: {path}"
    return before, after
