"""A payload cut anywhere keeps every complete record before the cut, in every format.

Each recorded real payload is cut at many byte offsets (evenly spread, and just before and
after every record's end); what the parser yields from the cut payload must be the full
payload's results, in order, up to the cut, and a cut inside the document must be reported
as a ``ParseError`` with its position, never another exception.
"""

from __future__ import annotations

import json
import re

import pytest

from ingest.sources import FORMATS
from tests.ingest.parser_checks import SAMPLES, load, problem_with, read_all

EVEN_CUTS = 80


def cut_offsets(data: bytes, record_ends: list[int]) -> list[int]:
    """Evenly spread offsets, plus the bytes around every record's end."""
    offsets = {len(data) * i // EVEN_CUTS for i in range(EVEN_CUTS)}
    for end in record_ends:
        offsets.update(o for o in (end - 1, end, end + 1) if 0 <= o < len(data))
    return sorted(offsets)


# Where each complete record of a payload ends (the byte after it), per kind of framing.


def xml_ends(tag: bytes):
    def ends(data: bytes) -> list[int]:
        return [m.end() for m in re.finditer(rb"</(?:\w+:)?" + tag + rb">", data)]

    return ends


def json_array_ends(data: bytes) -> list[int]:
    text = data.decode()
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    if isinstance(json.loads(text), dict):
        return [len(data.rstrip())]  # a bare object is one record, complete at its end
    ends = []
    while True:
        position = len(text) - len(text[position:].lstrip(" \t\r\n,"))
        if text[position] == "]":
            return ends
        _, position = decoder.raw_decode(text, position)
        ends.append(len(text[:position].encode()))


def line_ends(data: bytes) -> list[int]:
    return [m.end() - 1 for m in re.finditer(rb"[^\n]\n", data)]


def card_ends(data: bytes) -> list[int]:
    """A Hugging Face card is complete once its date line has ended."""
    meta = rb"\n\s*(?:\xe2\x80\xa2 )?\d+ authors?\n\s*\xc2\xb7\n[^\n]+(?:\n|$)"
    return [m.end() for m in re.finditer(meta, data)]


RECORD_ENDS = {
    "hf_daily": json_array_ends,
    "hf_page": card_ends,
    "arxiv_atom": xml_ends(b"entry"),
    "arxiv_rss": xml_ends(b"item"),
    "arxiv_oai": xml_ends(b"record"),
    "arxiv_snapshot": line_ends,
}
# Formats with an end marker: a cut before it is always reported. Line-based formats cannot
# tell a cut at a line's end from the real end (the snapshot reports a cut inside a line).
FRAMED = {"hf_daily", "arxiv_atom", "arxiv_rss", "arxiv_oai"}

CASES = [(fmt, path) for fmt, paths in SAMPLES.items() for path in paths]


def test_every_format_has_samples_and_a_record_framing():
    assert set(SAMPLES) == set(FORMATS) == set(RECORD_ENDS)


@pytest.mark.parametrize(("fmt", "path"), CASES, ids=[f"{f}-{p.name[:30]}" for f, p in CASES])
def test_a_cut_payload_keeps_every_complete_record_before_the_cut(fmt, path):
    data = load(path)
    full, error = read_all(fmt, data)
    assert error is None and full
    ends = RECORD_ENDS[fmt](data)
    # The seed listing has one card without meta lines, which no marker ends.
    assert len(ends) == len(full) - (fmt == "hf_page"), "the framing must find every record"
    for cut in cut_offsets(data, ends):
        check_cut(fmt, data, full, ends, cut)


def check_cut(fmt: str, data: bytes, full: list, ends: list[int], cut: int) -> None:
    results, error = read_all(fmt, data[:cut])
    complete = sum(1 for end in ends if end <= cut)
    where = f"{fmt} cut at byte {cut} of {len(data)}"
    assert not [p for r in results if (p := problem_with(fmt, r))], where
    if fmt == "hf_page" and results and complete < len(full):
        # A text listing has no end marker: the card the cut falls in reads as a shorter
        # card (or is rejected). Every card before it is intact.
        assert results[:-1] == full[: len(results) - 1], where
        assert len(results) >= complete, where
        return
    assert results == full[: len(results)], where
    assert len(results) >= complete, where
    if fmt in FRAMED and data[cut:].strip():
        assert error is not None, f"{where}: the cut was not reported"
        assert len(results) == complete, where
        assert error.position, where
