"""``python -m tests.bench compare_pages --base REV --corpus FILE``: a paired A/B of uncached
pages between a revision and this checkout.

On a shared machine two benchmark runs minutes apart differ by more than most changes: the
same code's page classes moved 15-35 % between runs of an hour (docs/benchmarks.md, tenth
pass). Here every URL of the mix is requested from both sides in turn, each a new query with
every cache off, the side going first alternating, so a busy moment weighs on both; each
URL's ratio new / base is what the table's median is taken of. The base revision is checked
out into a temporary git worktree; each side is a process of its own
(``loadtest/paired_worker.py``) on the same database.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from catalogue.dburl import url_from_settings
from tests.bench.benchmark import percentile
from tests.bench.commands.profile_pages import mix_urls

WORKER = Path(__file__).resolve().parent.parent / "loadtest" / "paired_worker.py"


@dataclass(frozen=True)
class Pair:
    kind: str
    url: str
    base: dict  # the worker's answer: status, ms, sql_ms, queries
    new: dict

    @property
    def ratio(self) -> float:
        return self.new["ms"] / self.base["ms"]


class Command(BaseCommand):
    help = __doc__.split("\n\n")[0]

    def add_arguments(self, parser):
        parser.add_argument("--base", default="HEAD", help="the revision compared with")
        parser.add_argument("--corpus", type=Path, required=True, help="the bench corpus")
        parser.add_argument("--seed", type=int, default=0, help="URL seed")
        parser.add_argument("--per-class", type=int, default=30, help="URLs per page class")
        parser.add_argument("--classes", nargs="+", help="only these page classes")

    def handle(self, *args, **options):
        urls = mix_urls(
            options["corpus"], options["seed"], options["per_class"], options["classes"]
        )
        root = Path(settings.BASE_DIR)
        with (
            worktree(root, options["base"]) as base_dir,
            Side(base_dir) as base,
            Side(root) as new,
        ):
            pairs = _compare(base, new, urls)
        self.stdout.write(table(pairs, options["base"]) + "\n")


def _compare(base: Side, new: Side, urls: dict[str, list[str]]) -> list[Pair]:
    """The first URL of each class untimed on both sides, then the rest, the classes taking
    turns (as ``profile_pages``), the side going first alternating from one turn to the next.

    Each side requests each URL once untimed before both are timed: the sides share one
    PostgreSQL, and whichever read a word's index entries first paid for bringing them into
    its buffers (one side against itself: URL ratios 0.54-1.54); and a side that had just
    requested the URL went 5-10 % faster than the other (a class always timed in the same
    order showed 0.91 or 1.10 against itself)."""
    for class_urls in urls.values():
        base.get(class_urls[0])
        new.get(class_urls[0])
    pairs = []
    for turn in range(1, max(len(u) for u in urls.values())):
        order = {"base": base, "new": new} if turn % 2 else {"new": new, "base": base}
        for kind, class_urls in urls.items():
            if turn < len(class_urls):
                url = class_urls[turn]
                for side in order.values():
                    side.get(url)  # untimed
                answers = {name: side.get(url) for name, side in order.items()}
                pairs.append(Pair(kind, url, answers["base"], answers["new"]))
    return pairs


class Side:
    """A worker process measuring the code of ``checkout``."""

    def __init__(self, checkout: Path):
        self.checkout = checkout

    def __enter__(self) -> Side:
        env = {
            **os.environ,
            "PYTHONPATH": str(self.checkout),
            # The model's files are this checkout's (a worktree has none of its own).
            "EMBEDDING_MODEL_DIR": str(settings.EMBEDDING_MODEL_DIR),
            "DATABASE_URL": url_from_settings(connection.settings_dict),  # a test's too
            "REDIS_URL": settings.REDIS_URL,
            "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        }
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER)],
            cwd=self.checkout,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return self

    def get(self, url: str) -> dict:
        self.process.stdin.write(json.dumps({"url": url}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise CommandError(f"the worker of {self.checkout} stopped (at {url})")
        return json.loads(line)

    def __exit__(self, *exc) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


@contextmanager
def worktree(root: Path, revision: str):
    """``revision`` checked out in a temporary git worktree (with this checkout's collected
    static files: pages need their manifest), removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="compare-pages-"))
    checkout = parent / "base"
    subprocess.run(
        ["git", "-C", str(root), "worktree", "add", "--detach", str(checkout), revision],
        check=True,
        capture_output=True,
    )
    try:
        if (root / "staticfiles").is_dir():
            shutil.copytree(root / "staticfiles", checkout / "staticfiles")
        yield checkout
    finally:
        subprocess.run(
            ["git", "-C", str(root), "worktree", "remove", "--force", str(checkout)],
            capture_output=True,
        )
        shutil.rmtree(parent, ignore_errors=True)


HEADER = (
    "| page class | URLs | base p50 ms | new p50 ms | base SQL ms | new SQL ms "
    "| new / base, median of URLs | quartiles | base p95 ms | new p95 ms | not 200 |"
)


def table(pairs: list[Pair], base: str) -> str:
    """Per page class and overall: each side's medians, the median (and quartiles) of the
    per-URL ratios, and each side's p95 (nearest rank: a change to a class's slowest URLs,
    which its median does not show)."""
    by_kind: dict[str, list[Pair]] = defaultdict(list)
    for pair in pairs:
        by_kind[pair.kind].append(pair)
    lines = [HEADER, "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for kind, group in [*sorted(by_kind.items()), ("**all**", pairs)]:
        lines.append(_row(kind, group))
    legend = (
        f"base: {base}; new: this checkout. Each URL requested twice from each side, in turn, "
        "the first untimed, each as a new query with every cache off; ratios below 1 are the "
        "new code faster."
    )
    return "\n".join(lines) + "\n\n" + legend


def _row(kind: str, group: list[Pair]) -> str:
    def median(side: str, key: str) -> float:
        return statistics.median(getattr(p, side)[key] for p in group)

    def p95(side: str) -> float:
        return percentile([getattr(p, side)["ms"] for p in group], 95)

    ratios = sorted(p.ratio for p in group)
    low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    failed = sum(p.base["status"] != 200 or p.new["status"] != 200 for p in group)
    return (
        f"| {kind} | {len(group)} | {median('base', 'ms'):.1f} | {median('new', 'ms'):.1f} "
        f"| {median('base', 'sql_ms'):.1f} | {median('new', 'sql_ms'):.1f} "
        f"| {statistics.median(ratios):.2f} | {low:.2f}-{high:.2f} "
        f"| {p95('base'):.1f} | {p95('new'):.1f} | {failed} |"
    )
