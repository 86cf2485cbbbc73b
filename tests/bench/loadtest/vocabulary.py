"""What the load test asks about, read from the benchmark corpus itself (its JSON lines).

A sample of the corpus's lines gives words by document frequency (common, middling, rare),
adjacent word pairs, author surnames, the papers' public ids and the months papers were
published in: queries drawn from these find papers, as readers' queries do.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.bench.corpus import STOP_WORDS

# Stop words (search ignores them) and pieces of the URLs found in abstracts.
_SKIP = STOP_WORDS | {"http", "https", "github", "com", "www", "org", "html"}
_WORD = re.compile(r"[a-z]{3,}")


@dataclass
class Vocabulary:
    common: list[str]  # in >= 5 % of sampled papers
    middling: list[str]  # in 0.2-5 %
    rare: list[str]  # in exactly one sampled paper
    phrases: list[str]  # adjacent pairs seen in >= 3 sampled papers
    surnames: list[str]  # seen in >= 2 sampled papers
    paper_ids: list[str]  # arXiv ids of the sampled papers
    first_day: dt.date  # of the sampled papers' first versions
    last_day: dt.date
    sampled: int
    papers: int  # lines in the corpus


def read_vocabulary(corpus: Path, sample: int = 20_000) -> Vocabulary:
    """Every k-th line of ``corpus`` (about ``sample`` lines), tallied."""
    total = _count_lines(corpus)
    stride = max(total // sample, 1)
    words, pairs, surnames = Counter(), Counter(), Counter()
    ids, days = [], set()
    with corpus.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if number % stride:
                continue
            paper = json.loads(line)
            tokens = _WORD.findall(f"{paper['title']} {paper['abstract']}".lower())
            words.update(set(tokens) - _SKIP)
            pairs.update(_pairs(tokens))
            surnames.update({last for last, *_ in paper["authors_parsed"] if last.isalpha()})
            ids.append(paper["id"])
            days.add(_day(paper["versions"][0]["created"]))
    sampled = len(ids)
    return Vocabulary(
        common=sorted(w for w, n in words.items() if n >= 0.05 * sampled),
        middling=sorted(w for w, n in words.items() if 0.002 * sampled <= n < 0.05 * sampled),
        rare=sorted(w for w, n in words.items() if n == 1 and 6 <= len(w) <= 14),
        phrases=sorted(p for p, n in pairs.items() if n >= 3),
        surnames=sorted(s for s, n in surnames.items() if n >= 2),
        paper_ids=ids,
        first_day=min(days),
        last_day=max(days),
        sampled=sampled,
        papers=total,
    )


def _count_lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


def _pairs(tokens: list[str]) -> set[str]:
    """Adjacent words, neither of them a skipped one."""
    adjacent = zip(tokens, tokens[1:], strict=False)
    return {f"{a} {b}" for a, b in adjacent if a not in _SKIP and b not in _SKIP}


def _day(created: str) -> dt.date:
    """The date of a version's ``created``: "Sun, 1 Apr 2007 23:35:12 GMT"."""
    return dt.datetime.strptime(created[5:16].strip(), "%d %b %Y").date()
