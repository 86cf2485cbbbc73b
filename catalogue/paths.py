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
    if not _fully_matches(slug_regex, slug):
        return reverse(url_name, args=[slug])
    before, after = _around_slug(url_name, *_where())
    return before + quote(slug, safe=_SAFE) + after


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
