"""What keeps hostile listings inert: only web links are linked; and the headers Django lacks.

Listings are untrusted: a project page may be stored as ``javascript:…`` (an old row, or a
listing an ingest did not clean). Templates link a listing-provided URL only through the
``web_url`` filter (``catalogue.templatetags.links``), and the admin accepts only web links.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.validators import URLValidator

WEB_SCHEMES = ("http", "https")


def web_url(value: str | None) -> str:
    """``value`` if it is an absolute http(s) URL, else "" (so the caller renders no link).

    ``urlsplit`` drops tabs and newlines and the leading control characters a browser ignores
    too, so "java\\tscript:" or " javascript:" is read with the scheme a browser would see.
    Protocol-relative ("//host") and relative values are refused: a listing gives whole URLs.
    """
    text = (value or "").strip()
    if not text:
        return ""
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return ""
    if parts.scheme.lower() not in WEB_SCHEMES or not parts.hostname:
        return ""
    return text


class WebURLValidator(URLValidator):
    """A URL field of the admin: http(s) only (Django's default also takes ftp and ftps)."""

    schemes = list(WEB_SCHEMES)
    message = "Enter a web address starting with http:// or https://."


class WebURLField(forms.URLField):
    """A form's URL field that takes web links only, with one clear message for the others."""

    default_validators = [WebURLValidator()]
    # The field's message wins over its validator's for the same code ("invalid").
    default_error_messages = {"invalid": WebURLValidator.message}


class PermissionsPolicyMiddleware:
    """The ``Permissions-Policy`` header (``settings.PERMISSIONS_POLICY``): no page here needs
    a camera, a microphone or a location, so no page (nor anything injected into it) gets one."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.header = ", ".join(
            f"{feature}=({' '.join(allowed)})" for feature, allowed in settings.PERMISSIONS_POLICY
        )

    def __call__(self, request):
        response = self.get_response(request)
        if self.header:
            response.headers.setdefault("Permissions-Policy", self.header)
        return response
