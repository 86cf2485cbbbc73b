"""What ``make run`` loads into a new catalogue: every bundled real listing, and two topics.

The listings are the samples in ``tests/data`` (real captures of every format ingest reads);
which files they are, and the day each was listed, is decided here, away from the command that
ingests them (``runstack``), so it can be tested without services. Some samples are
deliberately odd (an empty holiday feed, an error response): their runs end rejected or
failed, which is what the runs admin is there to show, and the demo goes on.

A ledger in the data directory remembers which samples (by size and modification time) were
loaded into which database, so the next ``make run`` ingests only new or changed samples
instead of re-reading ~190 files that would create nothing (delete it to re-ingest them all).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from django.db.models import Q

from catalogue.models import Topic

SEED = Path("tests/data/seed/hf-papers-search-listing.txt")
SEED_LISTED_ON = dt.date(2025, 12, 24)  # the day the seed page was captured
FORMATS = Path("tests/data/formats")
# Directories of samples (relative to FORMATS) in the order they are ingested: the richest
# source of each paper first, so the catalogue's first sighting of most papers is HF Daily.
SAMPLE_DIRS = [
    "hf_daily_papers/daily",
    "hf_daily_papers/other_endpoints",
    "arxiv_api/xml",
    "arxiv_api",
    "arxiv_oai_pmh",
    "arxiv_rss",
    "kaggle_arxiv_snapshot",
]
SAMPLE_SUFFIXES = {".json", ".xml", ".jsonl", ".txt"}

# The two subjects the catalogue was started for, as keyword-rule topics (name, slug, query).
TOPICS = [
    ("Decoupling", "decoupling", "decoupling"),
    ("Linear attention", "linear-attention", '"linear attention"'),
]


def listings(base_dir: Path) -> list[tuple[Path, dt.date | None]]:
    """Every bundled sample under ``base_dir`` (the project), with the day it was listed when
    the file says so (the seed's capture day; a daily file's name), else None."""
    found = [(base_dir / SEED, SEED_LISTED_ON)]
    for directory in SAMPLE_DIRS:
        folder = base_dir / FORMATS / directory
        files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
        found += [(p, _day_of(p)) for p in files if p.suffix in SAMPLE_SUFFIXES]
    return found


def _day_of(path: Path) -> dt.date | None:
    """The ``?date=`` a daily file was fetched for (``daily/2025-03-03.json``)."""
    if path.parent.name != "daily":
        return None
    try:
        return dt.date.fromisoformat(path.stem)
    except ValueError:
        return None


def ensure_topics() -> list[Topic]:
    """The demo topics, created if missing (a topic renamed or re-queried by staff is kept as
    they left it); returns the ones created now, which need tagging over the whole catalogue."""
    created = []
    for name, slug, query in TOPICS:
        if not Topic.objects.filter(Q(slug=slug) | Q(name=name)).exists():
            created.append(Topic.objects.create(name=name, slug=slug, query=query))
    return created


def not_yet_loaded(
    listings: list[tuple[Path, dt.date | None]], ledger: Path, database: str
) -> list[tuple[Path, dt.date | None]]:
    """The listings the ledger does not record as loaded, as they are now, into ``database``."""
    loaded = _read(ledger).get(database, {})
    return [(path, day) for path, day in listings if loaded.get(str(path)) != _signature(path)]


def remember_loaded(paths: list[Path], ledger: Path, database: str) -> None:
    entries = _read(ledger)
    entries.setdefault(database, {}).update({str(path): _signature(path) for path in paths})
    ledger.parent.mkdir(parents=True, exist_ok=True)
    partial = ledger.with_suffix(".tmp")
    partial.write_text(json.dumps(entries, indent=1, sort_keys=True))
    os.replace(partial, ledger)  # never a half-written ledger


def _signature(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _read(ledger: Path) -> dict:
    try:
        entries = json.loads(ledger.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}
