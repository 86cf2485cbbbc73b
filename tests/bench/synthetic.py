"""Synthetic arXiv metadata snapshots for benchmarks and fault tests.

Real sample lines (the bundled 200-line snapshot head) are repeated with fresh ids, so the
text, authors and LaTeX have real statistics while every record is a distinct paper.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

SAMPLE = (
    Path(__file__).resolve().parents[1]
    / "data/formats/kaggle_arxiv_snapshot/arxiv-metadata-oai-snapshot_head200.jsonl"
)


def sample_records(sample: Path = SAMPLE) -> list[dict]:
    return [json.loads(line) for line in sample.read_text().splitlines() if line.strip()]


def synthetic_id(number: int) -> str:
    """Distinct new-style ids that no real paper has: 3001.00000, 3001.00001, …"""
    return f"{3001 + number // 100_000}.{number % 100_000:05d}"


def snapshot_lines(count: int, *, start: int = 0, sample: Path = SAMPLE) -> Iterator[str]:
    records = sample_records(sample)
    for number in range(start, start + count):
        record = dict(records[number % len(records)])
        record["id"] = synthetic_id(number)
        yield json.dumps(record, ensure_ascii=False)


def write_snapshot(path: Path, count: int, *, start: int = 0) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        for line in snapshot_lines(count, start=start):
            out.write(line + "\n")
    return path
