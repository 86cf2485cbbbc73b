"""Django's test runner records every Django template a response renders (``response.templates``,
``response.context``); Jinja2 templates it does not. ``record_jinja2_renders`` makes the Jinja2
backend's pages recorded the same way, so tests read a reader page's context as before."""

from __future__ import annotations

import functools
from types import SimpleNamespace

from django.template.backends import jinja2 as backend
from django.template.backends.utils import csrf_input_lazy, csrf_token_lazy
from django.test.signals import template_rendered
from jinja2 import meta


def record_jinja2_renders() -> None:
    if getattr(backend.Template.render, "records", False):
        return
    original = backend.Template.render

    def render(self, context=None, request=None):
        # The context as the backend completes it (request, csrf, context processors): the
        # client keeps a copy made now, so ``response.context["user"]`` must already be in it.
        context = dict(context or {})
        if request is not None:
            context["request"] = request
            context["csrf_input"] = csrf_input_lazy(request)
            context["csrf_token"] = csrf_token_lazy(request)
            for processor in self.backend.template_context_processors:
                context.update(processor(request))
        for name in _with_parents(self.template.environment, self.template.name):
            recorded = SimpleNamespace(name=name)
            template_rendered.send(sender=self, template=recorded, context=context)
        return original(self, context)

    render.records = True
    backend.Template.render = render


@functools.cache
def _with_parents(environment, name: str) -> tuple[str, ...]:
    """``name`` and every template it extends or includes, as Django records them."""
    if name is None:  # from_string
        return ()
    source = environment.loader.get_source(environment, name)[0]
    names = [name]
    for other in meta.find_referenced_templates(environment.parse(source)):
        if other is not None:
            names += [n for n in _with_parents(environment, other) if n not in names]
    return tuple(names)
