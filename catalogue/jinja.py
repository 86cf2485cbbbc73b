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
from django.forms import BoundField, ModelChoiceField, renderers
from django.template import defaultfilters, defaulttags
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import Promise
from jinja2 import ChainableUndefined, Environment, pass_context

from catalogue import security
from catalogue.paths import fixed_path

# For the list page's form (catalogue.filters): its ten widgets from Django's Jinja2 widget
# templates render in a third of the time of the Django-template ones (same HTML). One instance:
# it holds its template engine.
FORM_RENDERER = renderers.Jinja2()


class RenderedOnce(BoundField):
    """A form field whose widget and label HTML is rendered once per form class and value,
    then reused (``Form.bound_field_class``). A list page renders its form's nine widgets and
    labels from the same few values on every request (empty dates, the sort, the mode):
    a third of the page's template time, and none of it differs. Kept per process, at most
    ``MAX_RENDERED`` pieces (a reader's words are values too), then started afresh.

    Only for forms of fixed fields: a field whose choices come from the database, a field
    with errors, or a call with its own widget or attributes renders as usual."""

    MAX_RENDERED = 2_000
    _rendered: dict = {}

    def as_widget(self, widget=None, attrs=None, only_initial=False):
        if widget is not None or attrs or only_initial or not self._reusable():
            return super().as_widget(widget, attrs, only_initial)
        key = ("widget", self._form_key(), repr(self.value()))
        return self._once(key, super().as_widget)

    def label_tag(self, contents=None, attrs=None, label_suffix=None, tag=None):
        if attrs or not self._reusable():
            return super().label_tag(contents, attrs, label_suffix, tag)
        key = ("label", self._form_key(), contents, label_suffix, tag)
        label = super().label_tag
        return self._once(key, lambda: label(contents, None, label_suffix, tag))

    def _reusable(self) -> bool:
        return not isinstance(self.field, ModelChoiceField) and not self.errors

    def _form_key(self) -> tuple:
        return (type(self.form), self.form.prefix, self.auto_id, self.html_name)

    @classmethod
    def _once(cls, key: tuple, render):
        html = cls._rendered.get(key)
        if html is None:
            if len(cls._rendered) >= cls.MAX_RENDERED:
                cls._rendered.clear()
            html = cls._rendered[key] = render()
        return html


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
    if not args and not kwargs:
        return fixed_path(name)
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
