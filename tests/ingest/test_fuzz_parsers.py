"""Fuzzing every parser: mutated real payloads and random bytes give records or rejections.

Whatever the bytes, a parser yields only complete records (storable, see ``problem_with``),
deletions and rejections, and may stop with a ``ParseError`` naming where; it never raises
anything else and never yields a half record. The mutations are those of a damaged download
or a hostile listing: byte flips, insertions (random bytes, NULs, ``\\u0000`` and lone
surrogate escapes, invalid UTF-8), deletions, truncations and duplicated spans.

``FUZZ_EXAMPLES`` sets the examples per test (default 100; ``FUZZ_EXAMPLES=5000`` for a long run).
"""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.records import PaperRecord
from ingest.sources import FORMATS, UnknownFormat, detect_format
from tests.ingest.parser_checks import SAMPLES, load, problem_with, read_all

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Bytes a hostile or broken listing may hold where a parser does not expect them.
HOSTILE = [
    b"\x00", b"\\u0000", b"\\ud800", b"\\udfff\\ud800", b"&#0;", b"&#xD800;", b"\xff", b"\xc3",
    b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\r", b"\n", b"\t", b'"', b"<", b">", b"]]>", b"{", b"}",
    b"[", b"]", b",", b"javascript:alert(1)", b"9" * 5000, b"-1", b"\xe2\x80\xa2 7 authors\n",
    b"[" * 50_000, b"<a>" * 1_000,
]  # fmt: skip

_PAYLOADS = {fmt: [load(path) for path in paths] for fmt, paths in SAMPLES.items()}


@st.composite
def mutation(draw, size: int):
    """One edit ``(kind, start, end, insert)`` of a payload of ``size`` bytes."""
    kind = draw(st.sampled_from(["flip", "insert", "hostile", "delete", "truncate", "duplicate"]))
    start = draw(st.integers(0, size))
    end = draw(st.integers(start, min(size, start + draw(st.sampled_from([1, 16, 4096])))))
    insert = b""
    if kind == "insert":
        insert = draw(st.binary(min_size=1, max_size=64))
    elif kind == "hostile":
        insert = draw(st.sampled_from(HOSTILE))
    elif kind == "flip":
        insert = bytes([draw(st.integers(0, 255))])
    return kind, start, end, insert


def mutate(data: bytes, edits) -> bytes:
    for kind, start, end, insert in edits:
        start, end = min(start, len(data)), min(end, len(data))
        if kind == "flip":
            data = data[:start] + insert + data[start + 1 :]
        elif kind in ("insert", "hostile"):
            data = data[:start] + insert + data[start:]
        elif kind == "delete":
            data = data[:start] + data[end:]
        elif kind == "truncate":
            data = data[:start]
        elif kind == "duplicate":
            data = data[:end] + data[start:end] + data[end:]
    return data


@st.composite
def mutated_payload(draw, fmt: str) -> bytes:
    data = draw(st.sampled_from(_PAYLOADS[fmt]))
    edits = draw(st.lists(mutation(len(data)), min_size=1, max_size=6))
    return mutate(data, edits)


def assert_only_complete_results(fmt: str, data: bytes) -> None:
    results, _ = read_all(fmt, data)  # any exception but ParseError fails the test
    problems = [(r, p) for r in results if (p := problem_with(fmt, r))]
    assert not problems, problems[:3]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_mutated_real_payloads_yield_only_complete_records_or_rejections(fmt):
    @FUZZ
    @given(data=mutated_payload(fmt))
    def check(data):
        assert_only_complete_results(fmt, data)

    check()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_random_bytes_yield_only_complete_records_or_rejections(fmt):
    @FUZZ
    @given(data=st.binary(max_size=4096))
    def check(data):
        assert_only_complete_results(fmt, data)

    check()


@FUZZ
@given(data=st.binary(max_size=4096))
def test_format_detection_of_random_bytes_names_a_format_or_says_it_cannot(data):
    with contextlib.suppress(UnknownFormat):
        assert detect_format(data) in FORMATS


# A deep nest inside a record that is complete but rejected (its excerpt is serialised), after
# each format's first record.
N = 50_000
NESTED_RECORD = {
    "hf_daily": (b"\n  },\n", b"[" * N + b"]" * N + b",\n"),
    "hf_page": (b"Nov 25, 2024 1\n\n",
                b"T" + b"[" * N + b"\nabstract\n\xe2\x80\xa2 2 authors\n\xc2\xb7\nNov 2 1\n\n"),
    "arxiv_atom": (b"</entry>", b"<entry><title>T</title>"
                   + b"<a>" * N + b"</a>" * N + b"</entry>"),
    "arxiv_rss": (b"</item>", b"<item><title>T</title>"
                  + b"<a>" * N + b"</a>" * N + b"</item>"),
    "arxiv_oai": (b"</record>", b"<record>" + b"<a>" * N + b"</a>" * N + b"</record>"),
    "arxiv_snapshot": (b"\n", b'{"id": "2401.00001", "title": "T", "versions": '
                       + b"[" * N + b"]" * N + b"}\n"),
}  # fmt: skip


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_hostile_nesting_is_a_rejection_or_a_parse_error_not_a_recursion_error(fmt):
    """Python's JSON decoder and ElementTree's searches and serializer recurse: a deep nest
    must stop them with a reason (the records before it kept), not a RecursionError."""
    data = _PAYLOADS[fmt][0]
    after, nested = NESTED_RECORD[fmt]
    cut = data.index(after) + len(after)
    results, _ = read_all(fmt, data[:cut] + nested + data[cut:])
    assert not [p for r in results if (p := problem_with(fmt, r))]
    assert isinstance(results[0], PaperRecord)
