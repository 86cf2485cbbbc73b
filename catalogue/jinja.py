"""The Jinja2 environment of the reader-facing pages (templates/jinja2/).

Jinja2 compiles templates to Python functions: a 25-card list page renders in about a third of
the CPU time Django templates took, its form widgets too (``FORM_RENDERER``). The admin, other
forms' widgets and the emails stay Django templates (templates/). What the pages used from
Django's template language is here: the ``url``, ``static`` and ``querystring`` helpers,
``now``'s date and the filters the pages use, each giving the same text as its Django twin
(tests/catalogue/test_jinja.py compares). Autoescape stays on: listing text is never trusted;
Django's safe strings (form widgets, highlights) keep their ``__html__``.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from django.contrib.humanize.templatetags import humanize
from django.forms import renderers
from django.template import defaultfilters, defaulttags
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import Promise
from jinja2 import ChainableUndefined, Environment, pass_context

from catalogue import security

# For the list page's form (catalogue.filters): its ten widgets from Django's Jinja2 widget
# templates render in a third of the time of the Django-template ones (same HTML). One instance:
# it holds its template engine.
FORM_RENDERER = renderers.Jinja2()

# Django's own abbreviations ("M"): the format is not the process locale's (%b).
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def environment(**options) -> Environment:
    # As in Django templates, a missing variable or attribute (``topic`` on a list page that is
    # not a topic's; ``user`` without a request) is empty and false, not an error. (Django's
    # backend passes Undefined, DebugUndefined with DEBUG: that would print "{{ topic }}".)
    options["undefined"] = ChainableUndefined
    env = Environment(finalize=_resolve_lazy, **options)
    env.globals.update(url=url, static=static, querystring=querystring, today=timezone.localdate)
    env.globals.update(widthratio=widthratio)
    env.filters.update(
        date=date,
        intcomma=intcomma,
        pluralize=defaultfilters.pluralize,
        truncatewords=defaultfilters.truncatewords,
        web_url=security.web_url,
    )
    return env


def _resolve_lazy(value):
    """A lazy string (a form's help text) as its value, so a safe one is not escaped: Django
    templates do the same (the password rules are a list, not "&lt;ul&gt;")."""
    return str(value) if isinstance(value, Promise) else value


def url(name: str, *args, **kwargs) -> str:
    """Django's ``{% url %}``."""
    return reverse(name, args=args or None, kwargs=kwargs or None)


@pass_context
def querystring(context, **changes) -> str:
    """Django's ``{% querystring %}``: the request's GET parameters with ``changes`` (None
    removes one)."""
    return defaulttags.querystring(SimpleNamespace(request=context["request"]), **changes)


def widthratio(value, max_value, max_width) -> str:
    """Django's ``{% widthratio %}`` (a percentage: ``widthratio(x, 1, 100)``)."""
    try:
        return str(round(float(value) / float(max_value) * float(max_width)))
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        return ""


def intcomma(value) -> str:
    """humanize's ``intcomma``; an int (every count on a page) without the locale lookups."""
    if type(value) is int:
        return f"{value:,}"
    return humanize.intcomma(value)


def date(value, fmt: str) -> str:
    """Django's ``date`` filter in the current time zone; the formats the pages use most
    without Django's format parser (a list page formats 25+ dates)."""
    if value in (None, ""):
        return ""
    if isinstance(value, dt.datetime) and timezone.is_aware(value):
        value = timezone.localtime(value)
    if isinstance(value, dt.date):
        if fmt == "Y-m-d":
            return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        if fmt == "M j, Y":
            return f"{MONTHS[value.month - 1]} {value.day}, {value.year:04d}"
    return defaultfilters.date(value, fmt)
