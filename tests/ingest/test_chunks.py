"""Splitting a listing into chunks (ingest.chunks): every record in exactly one chunk."""

import datetime as dt
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.chunks import MAX_CHUNKS, byte_ranges, date_windows, line_range_stream, lines_in_range

# Lines of any length, empty ones included; the last may lack its newline (a truncated file).
lines_strategy = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"x")), max_size=30)


def file_of(lines: list[bytes], final_newline: bool) -> bytes:
    text = b"\n".join(lines)
    return text + b"\n" if final_newline and lines else text


@given(lines=lines_strategy, final_newline=st.booleans(), count=st.integers(1, 50))
def test_the_chunks_lines_are_the_files_lines_each_once_in_order(lines, final_newline, count):
    data = file_of(lines, final_newline)
    stream = io.BytesIO(data)
    ranges = byte_ranges(len(data), count)
    read = [line for start, end in ranges for line in lines_in_range(stream, start, end)]
    assert b"".join(read) == data
    assert read == io.BytesIO(data).readlines()


@given(lines=lines_strategy, count=st.integers(1, 20))
def test_a_chunks_stream_iterates_as_a_file_of_its_lines(lines, count):
    data = file_of(lines, True)
    ranges = byte_ranges(len(data), count)
    read = [list(line_range_stream(io.BytesIO(data), start, end)) for start, end in ranges]
    assert [line for chunk in read for line in chunk] == io.BytesIO(data).readlines()


def test_byte_ranges_are_contiguous_near_equal_and_bounded():
    assert byte_ranges(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert byte_ranges(2, 5) == [(0, 1), (1, 2)]  # no empty chunk
    assert byte_ranges(0, 4) == []
    assert len(byte_ranges(10**9, 10**6)) == MAX_CHUNKS


def test_a_line_starting_exactly_at_a_boundary_belongs_to_the_chunk_it_starts():
    data = io.BytesIO(b"aaa\nbbb\nccc\n")
    assert list(lines_in_range(data, 0, 4)) == [b"aaa\n"]
    assert list(lines_in_range(data, 4, 8)) == [b"bbb\n"]
    # A boundary inside "bbb": the line started in the first chunk, which reads it whole.
    assert list(lines_in_range(data, 0, 5)) == [b"aaa\n", b"bbb\n"]
    assert list(lines_in_range(data, 5, 12)) == [b"ccc\n"]


@given(
    first=st.dates(dt.date(1990, 1, 1), dt.date(2030, 1, 1)),
    days=st.integers(0, 4000),
    count=st.integers(1, 400),
)
def test_date_windows_cover_every_day_once(first, days, count):
    last = first + dt.timedelta(days=days)
    windows = date_windows(first, last, count)
    assert windows[0][0] == first and windows[-1][1] == last
    assert len(windows) == min(count, days + 1)
    for (_, until), (following, _) in zip(windows, windows[1:], strict=False):
        assert following == until + dt.timedelta(days=1)
    assert all(start <= end for start, end in windows)


def test_date_windows_refuse_a_reversed_span():
    with pytest.raises(ValueError, match="after"):
        date_windows(dt.date(2025, 2, 1), dt.date(2025, 1, 1), 2)
