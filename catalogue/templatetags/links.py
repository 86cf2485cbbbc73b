"""``{% load links %}`` then ``{{ paper.code_url|web_url }}``: a listing's URL, or "" unless it
is an http(s) URL. Wrap the link in ``{% with href=value|web_url %}{% if href %}…``."""

from django import template

from catalogue import security

register = template.Library()


@register.filter(is_safe=False)
def web_url(value) -> str:
    return security.web_url(value)
