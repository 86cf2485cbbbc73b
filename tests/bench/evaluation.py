"""Relevance judgements and metrics for the search benchmark (``eval_search``).

Pure functions: no database, no Django. The judgements come from Hugging Face daily-papers
JSON files (``tests/data/formats/hf_daily_papers/daily``), whose papers carry LLM-written
``ai_keywords``:

- the **lexical** set: a keyword that tags 5 to 14 papers is a query, and the papers it tags are
  its relevant papers (binary gain). Keywords tagging 15 to 40 papers are a **held-out** set,
  reported but never tuned against: tune on one set, check on another, or the figure flatters.
  Keywords are not part of the search text (title and abstract), so the judgements are not the
  index's own words.
- the **known-item** set: a fixed sample of papers, each looked for three ways, the one paper
  being the only relevant one: its title without one content word, its title with words
  swapped for near-synonyms (a small fixed list below), and the first sentence of its abstract.
  These ask whether a search finds a paper by its meaning rather than its exact words.

Metrics: nDCG@10 (binary gain, ideal DCG over min(#relevant, 10) hits), recall@50 and the
reciprocal rank of the first relevant paper (MRR when averaged).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

LEXICAL = "lexical"
HELD_OUT = "held-out"
KNOWN = "known"

DEV_PAPERS = (5, 14)  # a development keyword tags this many papers (inclusive)
HELD_OUT_PAPERS = (15, 40)
KNOWN_SAMPLE = 150
SEED = 20261203

NDCG_DEPTH = 10
RECALL_DEPTH = 50
ABSTRACT_WORDS = 50  # first sentences longer than this are cut: no paragraph-long queries


@dataclass(frozen=True)
class DailyPaper:
    arxiv_id: str
    title: str
    abstract: str
    keywords: frozenset[str]  # normalised (see normalise_keyword)


@dataclass(frozen=True)
class Query:
    set: str  # LEXICAL, HELD_OUT or KNOWN
    kind: str  # "keyword", or the known-item rewording: "drop", "synonyms", "abstract"
    text: str
    relevant: frozenset[str]  # arXiv ids

    @property
    def key(self) -> str:
        """Unique within a run: a keyword, or a known-item kind and its paper."""
        if self.set == KNOWN:
            return f"{self.kind}:{next(iter(self.relevant))}"
        return self.text


# --- reading the daily files ----------------------------------------------------------------


def _clean(text: str) -> str:
    """One line: arXiv's hard wraps and runs of whitespace become single spaces."""
    return " ".join(text.split())


def normalise_keyword(keyword: str) -> str:
    return _clean(keyword).lower()


def read_daily(paths: Iterable[Path]) -> list[DailyPaper]:
    """Papers of the given daily JSON files, once each by arXiv id (first title and abstract
    seen; keywords of every sighting), in arXiv id order."""
    titles: dict[str, tuple[str, str]] = {}
    keywords: dict[str, set[str]] = {}
    for path in sorted(paths):
        for item in json.loads(Path(path).read_bytes()):
            paper = item.get("paper") or {}
            arxiv_id, title = paper.get("id"), paper.get("title") or item.get("title")
            if not arxiv_id or not title:
                continue
            abstract = paper.get("summary") or item.get("summary") or ""
            titles.setdefault(arxiv_id, (_clean(title), _clean(abstract)))
            found = paper.get("ai_keywords") or item.get("ai_keywords") or []
            keywords.setdefault(arxiv_id, set()).update(
                normalise_keyword(k) for k in found if isinstance(k, str) and k.strip()
            )
    return [
        DailyPaper(arxiv_id, *titles[arxiv_id], frozenset(keywords[arxiv_id]))
        for arxiv_id in sorted(titles)
    ]


# --- the lexical set --------------------------------------------------------------------------


def keyword_queries(
    papers: Sequence[DailyPaper], low: int, high: int, set_name: str = LEXICAL
) -> list[Query]:
    """A query per keyword that tags ``low`` to ``high`` papers (inclusive), its relevant papers
    those it tags; in a fixed pseudo-random order (see ``ordered``)."""
    tagged: dict[str, set[str]] = {}
    for paper in papers:
        for keyword in paper.keywords:
            tagged.setdefault(keyword, set()).add(paper.arxiv_id)
    queries = [
        Query(set_name, "keyword", keyword, frozenset(ids))
        for keyword, ids in tagged.items()
        if low <= len(ids) <= high
    ]
    return ordered(queries)


def ordered(queries: Iterable[Query]) -> list[Query]:
    """Queries in the order of a hash of their key: stable across runs, and any prefix (``--limit
    N``) is a fair sample rather than the alphabet's first letters."""
    return sorted(queries, key=lambda q: hashlib.sha1(q.key.encode()).hexdigest())


# --- the known-item set -----------------------------------------------------------------------

STOP_WORDS = frozenset([
    "a", "an", "the", "of", "for", "and", "or", "in", "on", "with", "to", "via", "by", "from",
    "at", "as", "is", "are", "be", "been", "into", "through", "toward", "towards", "using", "use",
    "its", "it", "their", "we", "our", "your", "you", "can", "do", "does", "not", "no", "how",
    "what", "when", "why", "which", "who", "beyond", "across", "over", "under", "between",
    "without", "within", "all", "any", "more", "than", "this", "that", "these", "those", "need",
    "only", "one", "two", "new", "vs",
])  # fmt: skip

# Near-synonyms a reader might type instead of a title's word (a word, or a few words). Plurals
# follow the singular ("models" -> "networks"). One pass: a replacement is never re-replaced.
SYNONYMS = {
    "model": "network",
    "large": "big",
    "efficient": "fast",
    "method": "approach",
    "learning": "training",
    "generation": "synthesis",
    "image": "picture",
    "video": "clip",
    "reasoning": "inference",
    "benchmark": "evaluation suite",
    "agent": "assistant",
    "dataset": "corpus",
    "understanding": "comprehension",
    "multimodal": "cross-modal",
    "visual": "pictorial",
    "diffusion": "denoising",
    "transformer": "attention architecture",
    "optimization": "tuning",
    "evaluation": "assessment",
    "framework": "system",
    "improving": "enhancing",
    "enhancing": "boosting",
    "generative": "synthetic",
    "retrieval": "search",
    "robot": "autonomous machine",
    "policy": "controller",
    "reward": "feedback signal",
    "alignment": "calibration",
    "speech": "voice",
    "audio": "sound",
    "scene": "environment",
    "memory": "storage",
    "knowledge": "information",
    "generalization": "transfer",
    "segmentation": "partitioning",
    "detection": "recognition",
    "unified": "joint",
    "novel": "new",
    "survey": "review",
    "comprehensive": "thorough",
    "token": "unit",
    "long": "extended",
    "small": "compact",
    "human": "people",
    "code": "program",
    "planning": "scheduling",
    "editing": "modification",
}

_WORD = re.compile(r"[A-Za-z]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")


def _content_word(token: str) -> bool:
    letters = "".join(_WORD.findall(token)).lower()
    return bool(letters) and letters not in STOP_WORDS


def drop_one_word(title: str, rng: random.Random) -> str | None:
    """The title without one of its content words (chosen by ``rng``); None for titles of
    fewer than two content words."""
    tokens = title.split()
    candidates = [i for i, token in enumerate(tokens) if _content_word(token)]
    if len(candidates) < 2:
        return None
    dropped = rng.choice(candidates)
    return " ".join(token for i, token in enumerate(tokens) if i != dropped)


def _synonym(word: str) -> str | None:
    lower = word.lower()
    if lower in SYNONYMS:
        return SYNONYMS[lower]
    if lower.endswith("s") and lower[:-1] in SYNONYMS:
        return SYNONYMS[lower[:-1]] + "s"
    return None


def swap_synonyms(title: str) -> str | None:
    """The title with every word of ``SYNONYMS`` swapped; None when it has none."""
    swapped = 0

    def swap(match: re.Match) -> str:
        nonlocal swapped
        replacement = _synonym(match.group())
        if replacement is None:
            return match.group()
        swapped += 1
        return replacement

    result = _WORD.sub(swap, title)
    return result if swapped else None


def first_sentence(abstract: str) -> str | None:
    """The abstract's first sentence, at most ``ABSTRACT_WORDS`` words; None if empty."""
    text = _clean(abstract)
    if not text:
        return None
    sentence = _SENTENCE_END.split(text, maxsplit=1)[0]
    return " ".join(sentence.split()[:ABSTRACT_WORDS])


def known_item_queries(
    papers: Sequence[DailyPaper], sample: int = KNOWN_SAMPLE, seed: int = SEED
) -> list[Query]:
    """Three rewordings of each of ``sample`` papers drawn with ``seed`` (a kind is skipped
    where it does not apply), grouped by kind, in a fixed pseudo-random order."""
    chosen = random.Random(seed).sample(list(papers), min(sample, len(papers)))
    queries = []
    for paper in chosen:
        relevant = frozenset([paper.arxiv_id])
        rng = random.Random(f"{seed}:{paper.arxiv_id}")
        rewordings = {
            "drop": drop_one_word(paper.title, rng),
            "synonyms": swap_synonyms(paper.title),
            "abstract": first_sentence(paper.abstract),
        }
        queries += [Query(KNOWN, kind, text, relevant) for kind, text in rewordings.items() if text]
    return ordered(queries)


def build_sets(papers: Sequence[DailyPaper]) -> dict[str, list[Query]]:
    return {
        LEXICAL: keyword_queries(papers, *DEV_PAPERS, LEXICAL),
        HELD_OUT: keyword_queries(papers, *HELD_OUT_PAPERS, HELD_OUT),
        KNOWN: known_item_queries(papers),
    }


# --- metrics ----------------------------------------------------------------------------------


def _unique(ranking: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ranking))


def ndcg(ranking: Sequence[str], relevant: AbstractSet[str], k: int = NDCG_DEPTH) -> float:
    """Binary-gain nDCG@k; the ideal ranking puts min(#relevant, k) relevant papers first."""
    if not relevant:
        return 0.0
    gained = sum(
        1 / math.log2(position + 2)
        for position, paper in enumerate(_unique(ranking)[:k])
        if paper in relevant
    )
    ideal = sum(1 / math.log2(position + 2) for position in range(min(len(relevant), k)))
    return gained / ideal


def recall(ranking: Sequence[str], relevant: AbstractSet[str], k: int = RECALL_DEPTH) -> float:
    if not relevant:
        return 0.0
    return len(set(ranking[:k]) & relevant) / len(relevant)


def reciprocal_rank(ranking: Sequence[str], relevant: AbstractSet[str]) -> float:
    for position, paper in enumerate(_unique(ranking)):
        if paper in relevant:
            return 1 / (position + 1)
    return 0.0


@dataclass(frozen=True)
class Figures:
    ndcg: float
    recall: float
    mrr: float
    queries: int


def query_figures(query: Query, ranking: Sequence[str]) -> dict[str, float]:
    return {
        "ndcg": ndcg(ranking, query.relevant),
        "recall": recall(ranking, query.relevant),
        "rr": reciprocal_rank(ranking, query.relevant),
    }


def score(queries: Sequence[Query], rankings: Mapping[str, Sequence[str]]) -> Figures | None:
    """Mean figures of ``queries`` whose ranking (by ``Query.key``) is known; None if none is."""
    per_query = [query_figures(q, rankings[q.key]) for q in queries if q.key in rankings]
    if not per_query:
        return None
    return Figures(
        ndcg=statistics.fmean(f["ndcg"] for f in per_query),
        recall=statistics.fmean(f["recall"] for f in per_query),
        mrr=statistics.fmean(f["rr"] for f in per_query),
        queries=len(per_query),
    )


def count_by(queries: Iterable[Query], attribute: str) -> Counter:
    return Counter(getattr(q, attribute) for q in queries)
