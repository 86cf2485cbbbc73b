"""What a parser may yield is storable: records checked against the columns, rejections escaped."""

from __future__ import annotations

import dataclasses
import json

import pytest
from django.db import models

from catalogue.models import Paper
from ingest.models import IngestRun
from ingest.records import (
    _TEXT_FIELDS,
    INT_RANGES,
    MAX_LENGTHS,
    PaperRecord,
    Rejected,
    unstorable_reason,
)
from ingest.runner import create_run, execute_run
from tests.bench.synthetic import snapshot_lines


def test_the_limits_checked_are_the_paper_columns_limits():
    for name, length in MAX_LENGTHS.items():
        field = Paper._meta.get_field(name)
        field = getattr(field, "base_field", field)  # categories: an array of CharField
        assert field.max_length == length, name
    for name, (low, high) in INT_RANGES.items():
        field = Paper._meta.get_field(name)
        small = isinstance(field, models.PositiveSmallIntegerField)
        assert (low, high) == (0, 32767 if small else 2**31 - 1), name


def record(**fields) -> PaperRecord:
    return PaperRecord(**{"source": "test", "source_key": "k", "title": "A title", **fields})


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"title": "A\x00title"}, "contains a NUL character in title"),
        ({"abstract": "lone \udc80 byte"}, "contains a lone surrogate"),
        ({"authors": ("Ada", "B\x00b")}, "contains a NUL character in authors"),
        ({"categories": ("cs.LG", "x" * 41)}, "categories is longer than 40 characters"),
        ({"version": 40000}, "version 40000 is out of range (0 to 32767)"),
        ({"comments": -1}, "comments -1 is out of range"),
        ({"title": "   "}, "missing title"),
        ({"source_key": ""}, "missing source key"),
    ],
)
def test_a_record_postgresql_cannot_store_names_the_field(fields, reason):
    assert reason in unstorable_reason(record(**fields))


def test_a_storable_record_has_no_reason():
    assert unstorable_reason(record(abstract="Ünïcode ζ and emoji 🚀", upvotes=2**31 - 1)) is None


def test_a_rejection_escapes_what_postgresql_text_cannot_hold():
    raw = "raw \x00 and \ud800 and \udcff"
    rejected = Rejected("bad \x00 reason", raw, "line\x00 " + "9" * 200)
    assert rejected.reason == "bad \\x00 reason"
    assert rejected.raw == "raw \\x00 and \\ud800 and \\udcff"
    assert rejected.position.startswith("line\\x00 ") and len(rejected.position) == 100


@pytest.mark.django_db
def test_a_listing_with_nul_and_surrogate_records_lands_every_other_record(tmp_path):
    """The failure of issue 13: one \\u0000 title made the whole file's upsert raise."""
    lines = list(snapshot_lines(6))
    evil = json.loads(lines[1])
    evil["title"] = "Evil\u0000title"
    lines[1] = json.dumps(evil)
    lines[3] = lines[3].replace('"title": "', '"title": "\\ud800', 1)  # a JSON escape
    lines.insert(5, '{"id": "2401.99999", "title": "raw \x00 NUL", broken')
    path = tmp_path / "snapshot.jsonl"
    path.write_text("\n".join(lines) + "\n")

    run = execute_run(create_run(str(path)))

    assert (run.status, run.created, run.rejected) == (IngestRun.Status.PARTIAL, 4, 3)
    reasons = dict(run.rejections.values_list("position", "reason"))
    assert reasons["line 2"] == "contains a NUL character in title"
    assert "lone surrogate" in reasons["line 4"]
    assert "JSON" in reasons["line 6"]
    assert "raw \\x00 NUL" in run.rejections.get(position="line 6").raw
    assert Paper.objects.count() == 4


def test_every_text_field_is_checked_for_nul_characters():
    text_fields = [
        f.name for f in dataclasses.fields(PaperRecord) if f.type in ("str", "tuple[str, ...]")
    ] + ["arxiv_id"]
    assert sorted(text_fields) == sorted(_TEXT_FIELDS)
    for name in text_fields:
        value = ("ok", "b\x00d") if name in ("authors", "categories", "keywords") else "b\x00d"
        bad = record(**{name: value, "title": "A\x00" if name == "title" else "A title"})
        assert unstorable_reason(bad) == f"contains a NUL character in {name}", name
