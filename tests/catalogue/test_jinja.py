"""The Jinja2 environment of the reader pages (catalogue/jinja.py): each helper and filter gives
the text its Django template twin gave, and escaping stays on."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.contrib.auth.password_validation import password_validators_help_text_html
from django.contrib.humanize.templatetags.humanize import intcomma as django_intcomma
from django.forms import CharField, Form, IntegerField, PasswordInput
from django.template import Context, RequestContext, engines
from django.template import Template as DjangoTemplate
from django.template.defaultfilters import date as django_date
from django.test import RequestFactory
from django.utils import timezone
from django.utils.safestring import mark_safe

from catalogue import jinja


def render(source: str, context: dict | None = None, request=None) -> str:
    return engines["jinja2"].from_string(source).render(context or {}, request)


def django_render(source: str, context: dict, request=None) -> str:
    if request is None:
        return DjangoTemplate(source).render(Context(context))
    return DjangoTemplate(source).render(RequestContext(request, context))


@pytest.mark.parametrize(
    "value", [0, 7, 999, 1000, 1234567, -4321, 12.5, 1234.5, "12345", "n/a", None]
)
def test_intcomma_is_humanizes_intcomma(value):
    assert jinja.intcomma(value) == django_intcomma(value)


DATES = [
    dt.date(2025, 1, 2),
    dt.date(2025, 12, 31),
    dt.date(5, 3, 9),  # years before 1000 keep four digits, as Django's "Y" does
    dt.datetime(2025, 11, 27, 23, 30, tzinfo=dt.UTC),
    dt.datetime(2025, 11, 27, 23, 30),
]


@pytest.mark.parametrize("value", DATES)
@pytest.mark.parametrize("fmt", ["Y-m-d", "M j, Y", "M Y", "M j", "Y"])
def test_date_is_djangos_date_filter(value, fmt):
    assert jinja.date(value, fmt) == django_date(value, fmt)


def test_date_of_an_aware_datetime_is_in_the_current_time_zone_as_in_django():
    late = dt.datetime(2025, 11, 27, 23, 30, tzinfo=dt.UTC)
    with timezone.override(zoneinfo.ZoneInfo("Europe/Berlin")):
        expected = django_render('{{ t|date:"M j, Y" }}', {"t": late})
        assert jinja.date(late, "M j, Y") == expected == "Nov 28, 2025"


@pytest.mark.parametrize("value", [None, ""])
def test_date_of_nothing_is_empty(value):
    assert jinja.date(value, "M j, Y") == ""


@pytest.mark.parametrize(
    ("similarity", "expected"), [(0.5, "50"), (0.834, "83"), (0.125, "12"), (None, "")]
)
def test_widthratio_is_djangos(similarity, expected):
    source = "{% widthratio s 1 100 %}"
    assert django_render(source, {"s": similarity}) == expected
    assert jinja.widthratio(similarity, 1, 100) == expected


@pytest.mark.parametrize(
    "query",
    ["", "q=attention", "q=attention&page=3", "topic=a&topic=b&period=week&since=2025-01-01"],
)
def test_querystring_is_djangos_tag(query):
    request = RequestFactory().get(f"/?{query}")
    for changes, django_args in [
        ("page=2", "page=2"),
        ("page=None", "page=None"),
        ("period='month', since=None, until=None, page=None",
         "period='month' since=None until=None page=None"),
    ]:  # fmt: skip
        ours = render(f"{{{{ querystring({changes}) }}}}", request=request)
        theirs = django_render(f"{{% querystring {django_args} %}}", {}, request)
        assert ours == theirs


def test_text_is_escaped_and_safe_strings_are_not():
    html = render("{{ text }} {{ safe }}", {"text": '<b a="1">', "safe": mark_safe("<i>x</i>")})
    assert html == "&lt;b a=&#34;1&#34;&gt; <i>x</i>"


def test_a_lazy_safe_help_text_is_markup_as_in_django():
    """The password rules are a lazily built, safe list: a list on the page, not "&lt;ul&gt;"."""

    class Passwords(Form):
        password = CharField(widget=PasswordInput, help_text=password_validators_help_text_html())

    field = Passwords()["password"]
    assert render("{{ f.help_text }}", {"f": field}).startswith("<ul>")


def test_missing_variables_are_empty_and_false_as_in_django():
    source = "[{{ nothing }}][{{ nothing.at.all }}][{% if user.is_authenticated %}in{% endif %}]"
    assert render(source) == "[][][]"


def test_the_list_form_renders_the_same_widgets_as_djangos_renderer():
    class Numbers(Form):
        n = IntegerField(min_value=0, label="Minimum")

    ours = Numbers({"n": "3"}, renderer=jinja.FORM_RENDERER)["n"]
    django = Numbers({"n": "3"})["n"]
    assert str(ours) == str(django) and ours.label_tag() == django.label_tag()


# --- the list form's widgets, rendered once per value (jinja.RenderedOnce) ---------------------


def _list_form(params: dict):
    from django.http import QueryDict

    from catalogue.filters import PaperFilter

    data = QueryDict(mutable=True)
    for name, value in params.items():
        data.setlist(name, value if isinstance(value, list) else [value])
    paper_filter = PaperFilter(data)
    paper_filter.is_valid()
    return paper_filter.form


def _as_django_renders(form) -> dict[str, tuple[str, str]]:
    """Each field's widget and label as Django's own BoundField renders them."""
    from django.forms import BoundField

    rendered = {}
    for name, field in form.fields.items():
        plain = BoundField(form, field, name)
        rendered[name] = (str(plain), plain.label_tag())
    return rendered


LIST_FORM_VALUES = [
    {},
    {"q": "linear attention", "sort": "newest", "since": "2024-01-01"},
    {"q": 'x"><script>alert(1)</script>', "author": "<b>Ng</b>", "mode": "keyword"},
    {"period": "week", "min_upvotes": "5", "has_code": "on", "until": "2024-02-01"},
    {"min_upvotes": "3.5", "since": "2024-05-01", "until": "2024-01-01"},  # errors
]


@pytest.mark.django_db
@pytest.mark.parametrize("params", LIST_FORM_VALUES)
def test_the_list_forms_reused_widgets_are_the_ones_django_renders(params):
    for _ in range(2):  # the second time from what the first rendered
        form = _list_form(params)
        expected = _as_django_renders(form)
        for name, (widget, label) in expected.items():
            assert isinstance(form[name], jinja.RenderedOnce)
            assert (str(form[name]), form[name].label_tag()) == (widget, label), name


@pytest.mark.django_db
def test_a_fields_reused_html_follows_its_value_and_errors():
    first = str(_list_form({"since": "2024-01-01"})["since"])
    assert 'value="2024-01-01"' in first and "aria-invalid" not in first
    assert 'value="2023-12-31"' in str(_list_form({"since": "2023-12-31"})["since"])
    assert "value=" not in str(_list_form({})["since"])
    wrong = str(_list_form({"since": "2024-01-01", "until": "2023-01-01"})["until"])
    assert 'aria-invalid="true"' in wrong and 'value="2023-01-01"' in wrong
    escaped = str(_list_form({"q": '"><script>'})["q"])
    assert "<script>" not in escaped and "&lt;script&gt;" in escaped


def test_reused_renders_are_bounded():
    rendered = jinja.RenderedOnce._rendered
    saved = dict(rendered)
    try:
        rendered.clear()
        for n in range(jinja.RenderedOnce.MAX_RENDERED + 5):
            jinja.RenderedOnce._once(("test", n), lambda n=n: str(n))
        assert len(rendered) <= jinja.RenderedOnce.MAX_RENDERED
        assert jinja.RenderedOnce._once(("test", 3), lambda: "again") == "again"
    finally:
        rendered.clear()
        rendered.update(saved)


@pytest.mark.django_db
def test_the_list_form_class_is_built_once_and_each_form_has_its_own_fields():
    one, two = _list_form({}), _list_form({"q": "x"})
    assert type(one) is type(two)
    assert one.fields["q"] is not two.fields["q"]
    one.fields["q"].widget.attrs["data-test"] = "mine"
    assert "data-test" not in two.fields["q"].widget.attrs
    assert "data-test" not in _list_form({})["q"].field.widget.attrs
    # The side column's fields submit with the search form; a fraction is an error.
    assert one.fields["author"].widget.attrs["form"] == "search"
    assert "min_upvotes" in _list_form({"min_upvotes": "3.5"}).errors
