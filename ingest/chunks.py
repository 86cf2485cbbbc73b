"""Splitting one large listing into chunks that workers on different hosts ingest at once.

Pure functions, no Django and no network: the runner (``ingest.runner``) plans a run's chunks
with them and each chunk run reads its share with them.

- A JSON-Lines snapshot (a file every worker host can read at the same path, or a URL whose
  server answers byte ranges) splits into byte ranges. Ranges need no index of line offsets:
  a chunk owns the lines that *start* inside its range, the usual rule for splitting text
  files (Hadoop's input splits). Every line belongs to exactly one chunk, whatever the
  boundaries cut, so the chunks' counts add up to the file's.
- An OAI-PMH harvest splits into date windows (``from``/``until``): the protocol selects by
  datestamp, so consecutive windows that share no day partition the records.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from typing import BinaryIO

# Formats whose payload is one record per line, so that byte ranges can split it.
LINE_FORMATS = frozenset({"arxiv_snapshot"})
# The most chunks one run is split into: each is a task, a row and a lease.
MAX_CHUNKS = 10_000


def byte_ranges(size: int, count: int) -> list[tuple[int, int]]:
    """``count`` contiguous ``[start, end)`` ranges covering ``size`` bytes, near equal.

    Fewer when the payload is smaller than ``count`` bytes; none for an empty payload.
    """
    count = max(1, min(count, size, MAX_CHUNKS))
    bounds = [size * part // count for part in range(count + 1)]
    return [(start, end) for start, end in zip(bounds, bounds[1:], strict=False) if end > start]


def lines_in_range(stream: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """The lines of ``stream`` that start at an offset in ``[start, end)``, with their newlines.

    The line running across ``start`` belongs to the chunk before (it started there); the
    line running across ``end`` belongs to this one, read to its end past ``end``.
    """
    if start > 0:
        # The byte before the range says whether a line starts exactly at ``start``: reading
        # from it to the next newline skips the rest of the previous chunk's last line.
        stream.seek(start - 1)
        position = start - 1 + len(stream.readline())
    else:
        stream.seek(0)
        position = 0
    while position < end:
        line = stream.readline()
        if not line:
            return
        yield line
        position += len(line)


class LineRangeReader(io.RawIOBase):
    """A binary stream of just the lines ``lines_in_range`` yields: what a parser reads."""

    def __init__(self, stream: BinaryIO, start: int, end: int):
        super().__init__()
        self._lines = lines_in_range(stream, start, end)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            line = next(self._lines, None)
            if line is None:
                return 0
            self._pending = line
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def line_range_stream(stream: BinaryIO, start: int, end: int) -> BinaryIO:
    """``LineRangeReader`` buffered, so that iterating it yields lines as a file does."""
    return io.BufferedReader(LineRangeReader(stream, start, end), buffer_size=1 << 20)


def date_windows(first: dt.date, last: dt.date, count: int) -> list[tuple[dt.date, dt.date]]:
    """``count`` consecutive inclusive ``(from, until)`` windows from ``first`` to ``last``,
    sharing no day (OAI-PMH's ``from`` and ``until`` are both inclusive)."""
    if first > last:
        raise ValueError(f"from ({first}) is after until ({last})")
    days = (last - first).days + 1
    count = max(1, min(count, days, MAX_CHUNKS))
    starts = [first + dt.timedelta(days=days * part // count) for part in range(count)]
    ends = [start - dt.timedelta(days=1) for start in starts[1:]] + [last]
    return list(zip(starts, ends, strict=True))
