"""Helpers for driving the admin from tests: the seed catalogue, form data, eager tasks."""

from __future__ import annotations

import datetime as dt
import re
import time
from contextlib import contextmanager

from django import forms

from catalogue.models import Paper
from ingest.records import PaperRecord
from ingest.sources import hf_page
from ingest.upsert import upsert_papers
from tests.conftest import SEED

SEED_LISTED_ON = dt.date(2025, 12, 24)
# Independent of catalogue.search: what the phrase "linear attention" should find.
LINEAR_ATTENTION = re.compile(r"\blinear[\s-]+attention", re.IGNORECASE)


def seed_records() -> list[PaperRecord]:
    parsed = hf_page.parse(SEED.read_bytes(), listed_on=SEED_LISTED_ON)
    return [record for record in parsed if isinstance(record, PaperRecord)]


def seed_catalogue() -> list[PaperRecord]:
    records = seed_records()
    upsert_papers(records)
    return records


def linear_attention_ids() -> set[int]:
    return {
        paper.pk
        for paper in Paper.objects.all()
        if LINEAR_ATTENTION.search(f"{paper.title} {paper.abstract}")
    }


@contextmanager
def eager_tasks():
    """Tasks sent with .delay() run in this process, in the test's transaction."""
    from catalogue.celery import app

    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    try:
        yield
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = previous


def form_data(response) -> dict:
    """The POST data an admin change form would send as rendered (to edit, then post)."""
    data: dict = {}
    _add_form(data, response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        _add_form(data, formset.management_form)
        for form in formset.forms:
            _add_form(data, form)
    return data


def _add_form(data: dict, form) -> None:
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field.widget, forms.CheckboxInput):
            if value:
                data[form.add_prefix(name)] = "on"
            continue
        data[form.add_prefix(name)] = "" if value is None else value


def action_data(action: str, papers, **extra) -> dict:
    """The POST of a change-list action on these objects."""
    return {"action": action, "_selected_action": [p.pk for p in papers], **extra}


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result
