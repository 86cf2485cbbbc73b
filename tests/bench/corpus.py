"""A realistic synthetic arXiv corpus: millions of papers in the metadata snapshot format.

Benchmarks of search need text whose term statistics are those of real abstracts: a common
word must match as many papers as it does on arXiv, a rare one few. So papers are built from a
*real pool*, the records of every listing sample we keep (HF Daily JSON, arXiv Atom, OAI-PMH,
RSS, the snapshot head), read with the project's own parsers:

- each generated abstract is a *crossover* of two real abstracts of the same group (same arXiv
  archive, or for HF papers the same area: vision, language, robotics, audio, other ML):
  sentence i comes from the base abstract, or with probability ``CROSSOVER`` from the
  partner's sentence at the same relative position. A term in one sentence of one abstract
  keeps its chance of appearing (1 - p from the base, p from the partner), so document
  frequencies stay those of the real pool while the papers are distinct. Terms repeated
  through a topical abstract ("video") gain a little (~1.3x), well within the check;
- titles are real, and "Name: description" titles swap their halves between the pair;
- author names come from the group's real names with Zipf-like weights (some authors are
  prolific), author counts from the real distribution (1-30);
- dates grow exponentially (``GROWTH`` a year, April 2007 to ``END``), ids are new-style
  ``YYMM.NNNNN`` numbered in date order; the share of machine-learning (HF) papers grows with
  time, averaging exactly its share of the real pool;
- ~15 % of papers link their code (a GitHub URL in the abstract or the comments); upvotes are
  Zipf-like for papers "listed on Hugging Face" (more of them recently) and ``null`` for the
  others; code papers have GitHub stars. Both are extra keys the real snapshot lacks.

``check_frequencies`` compares document frequencies of the real pool's 500 most frequent terms
with a sample of the generated lines, read back as JSON (every line up to ``CHECK_SAMPLE``
papers, evenly spaced ones beyond). A term is a lowercased run of ASCII letters, 3+ letters
long, not a PostgreSQL English stop word (see ``terms``).
"""

from __future__ import annotations

import bisect
import calendar
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import math
import random
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from ingest import sources
from ingest.records import PaperRecord

BASE_DIR = Path(__file__).resolve().parents[2]  # the repository: tests/bench/corpus.py
# The shared samples (thousands of HF records) when present, else the repository's copy.
REAL_DIRS = (BASE_DIR.parent / "shared/data/formats", BASE_DIR / "tests/data/formats")

START = dt.date(2007, 4, 1)  # the first new-style id, 0704.0001
END = dt.date(2026, 10, 31)
GROWTH = 0.10  # papers a year grow ~10 % (arXiv: ~59k in 2008, ~285k in 2024)
CROSSOVER = 0.35
CODE_SHARE = 0.15
MAX_AUTHORS = 30
TOP_TERMS = 500
TOLERANCE = 2.0
CHECK_SAMPLE = 10_000
# Below this many sampled papers a term near rank 500 (~1 % of papers) is seen a handful of
# times: a miss can be chance, so the check informs but does not fail.
CONCLUSIVE_SAMPLE = 5_000
# Groups smaller than this borrow partners from one pooled "other" group.
MIN_GROUP = 30

# PostgreSQL's (Snowball's) English stop words: terms are what the search index would keep.
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can did do does doing don down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with you your yours yourself yourselves""".split()  # noqa: SIM905 - a word list reads best as text
)
_WORD = re.compile(r"[a-z]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[$\\])")
_URL = re.compile(r"https?://\S+")


# --- terms and document frequencies -----------------------------------------------------------


def terms(text: str) -> set[str]:
    """A document's terms: lowercased runs of ASCII letters, 3+ letters, minus stop words."""
    return {w for w in set(_WORD.findall(text.lower())) if len(w) > 2} - STOP_WORDS


def bigrams(text: str) -> set[str]:
    """Adjacent pairs of terms ("linear attention"), for choosing phrase queries."""
    words = _WORD.findall(text.lower())
    return {
        f"{a} {b}"
        for a, b in zip(words, words[1:], strict=False)
        if len(a) > 2 and len(b) > 2 and a not in STOP_WORDS and b not in STOP_WORDS
    }


@dataclasses.dataclass
class Frequencies:
    """Document frequencies of terms over ``documents`` documents."""

    counts: Counter = dataclasses.field(default_factory=Counter)
    documents: int = 0

    def add(self, text: str) -> None:
        self.counts.update(terms(text))
        self.documents += 1

    def share(self, term: str) -> float:
        return self.counts[term] / self.documents if self.documents else 0.0

    def top(self, count: int) -> list[str]:
        # Ties broken by the term itself: the same sample always gives the same list.
        return [t for t, _ in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:count]]


@dataclasses.dataclass
class FrequencyCheck:
    """Generated vs real document frequencies of the real pool's top terms."""

    terms: list[tuple[str, float, float]]  # (term, real share, generated share)
    tolerance: float
    sampled: int  # generated papers the shares were counted on

    @staticmethod
    def ratio(real: float, generated: float) -> float:
        return generated / real if real else math.inf

    @property
    def failures(self) -> list[tuple[str, float, float]]:
        low, high = 1 / self.tolerance, self.tolerance
        return [t for t in self.terms if not low <= self.ratio(t[1], t[2]) <= high]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def conclusive(self) -> bool:
        return self.sampled >= CONCLUSIVE_SAMPLE

    def worst(self, count: int = 5) -> list[tuple[str, float, float]]:
        """The terms furthest from their real frequency, either way (log of the ratio)."""
        return sorted(self.terms, key=lambda t: -abs(math.log(self.ratio(t[1], t[2]) or 1e-9)))[
            :count
        ]

    def summary(self) -> str:
        within = len(self.terms) - len(self.failures)
        worst = ", ".join(
            f"{term} {self.ratio(real, gen):.2f}x ({real:.2%} real, {gen:.2%} generated)"
            for term, real, gen in self.worst()
        )
        return (
            f"document frequencies: {within} of the real sample's top {len(self.terms)} terms "
            f"within {self.tolerance:g}x; worst: {worst}"
        )


def check_frequencies(
    real: Frequencies, generated: Frequencies, top: int = TOP_TERMS, tolerance: float = TOLERANCE
) -> FrequencyCheck:
    compared = [(t, real.share(t), generated.share(t)) for t in real.top(top)]
    return FrequencyCheck(compared, tolerance, generated.documents)


# --- the real pool ----------------------------------------------------------------------------


def default_real_dir() -> Path:
    return next((d for d in REAL_DIRS if d.is_dir()), REAL_DIRS[-1])


def read_real_records(directory: Path) -> list[PaperRecord]:
    """Every paper of every listing file under ``directory``, once (first seen wins)."""
    papers: dict[str, PaperRecord] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        for record in _records_of(path):
            if record.abstract and not record.withdrawn:
                papers.setdefault(record.arxiv_id or record.title.lower(), record)
    return list(papers.values())


def _records_of(path: Path) -> Iterator[PaperRecord]:
    data = path.read_bytes()
    try:
        parser = sources.get_parser(sources.detect_format(data[:65536]))
        results = list(parser.parse(data))
    except Exception:  # noqa: BLE001 - notes, fixtures of API errors: not listings, skip them
        return
    yield from (r for r in results if isinstance(r, PaperRecord))


# Bump when generated lines or their stats change: cached corpora are keyed by it.
FORMAT_VERSION = 3


def fingerprint(directory: Path) -> str:
    """Short hash of the pool's file names and sizes and of ``FORMAT_VERSION``: corpora built
    from it can be cached."""
    digest = hashlib.sha256(f"v{FORMAT_VERSION}\n".encode())
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(directory)}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:10]


def _json(text: str) -> str:
    """``text`` as the inside of a JSON string: lines are assembled from pre-escaped parts."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """One real paper, cut into the parts the generator recombines (JSON-escaped)."""

    title: str
    head: str  # "Name" of a "Name: description" title, else ""
    tail: str
    sentences: tuple[str, ...]
    group: str
    recent: bool  # a Hugging Face paper: machine learning, 2023 onwards
    categories: str
    comments: str  # a JSON value: "..." or null
    words: tuple[str, ...]  # title words for repository names


# eq=False: identity hashing, to drop repeated names fast.
@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Author:
    name: str  # JSON-escaped "First Last"
    parsed: str  # JSON ["Last", "First", ""] of authors_parsed
    last: str
    slug: str  # for GitHub owners


@dataclasses.dataclass
class Pool:
    sources: list[Source]
    groups: dict[str, list[Source]]
    names: dict[str, tuple[list[Author], list[float]]]  # group -> (authors, cum. weights)
    author_counts: list[int]
    code_links: list[str]  # real sentences that held a repository link, "{url}" in its place
    page_links: list[str]  # ... that held another link (project pages, demos)
    frequencies: Frequencies  # of the real titles and abstracts, as they are
    directory: Path
    # Shares of real abstracts with a repository-link (other link) sentence: generated
    # abstracts get one as often, so words like "code" and "available" keep their frequency.
    code_in_abstract: float = 0.0
    page_in_abstract: float = 0.0


def build_pool(records: list[PaperRecord], directory: Path) -> Pool:
    real = Frequencies()
    links: dict[bool, list[str]] = {True: [], False: []}
    sizes = Counter(_group_of(record) for record in records)
    groups: dict[str, list[Source]] = {}
    names: dict[str, Counter] = {}
    for record in records:
        real.add(f"{record.title} {record.abstract}")
        group = _group_of(record)
        # Small groups pool into one "other" group, so that every paper has partners.
        group = group if sizes[group] >= MIN_GROUP else "other"
        groups.setdefault(group, []).append(_source(record, group, links))
        names.setdefault(group, Counter()).update(_split_name(a) for a in record.authors)
    return Pool(
        sources=[s for members in groups.values() for s in members],
        groups=groups,
        names={group: _zipf_names(counter) for group, counter in names.items()},
        author_counts=[min(max(len(r.authors), 1), MAX_AUTHORS) for r in records],
        code_links=links[True] or ["Code is available at {url}."],
        page_links=links[False] or ["Project page: {url}."],
        frequencies=real,
        directory=directory,
        code_in_abstract=len(links[True]) / max(len(records), 1),
        page_in_abstract=len(links[False]) / max(len(records), 1),
    )


def _group_of(record: PaperRecord) -> str:
    """Papers recombine within a group: an arXiv archive, or for Hugging Face papers (machine
    learning) the area their title suggests; recombining a video paper with a language paper
    would spread "video" over more papers than it has."""
    if record.source == "hf_daily":
        return f"hf {_ml_categories(record).split()[0]}"
    return record.primary_category.split(".")[0] or "other"


def _source(record: PaperRecord, group: str, links: dict[bool, list[str]]) -> Source:
    sentences = []
    for sentence in _SENTENCE_END.split(" ".join(record.abstract.split())):
        if "://" in sentence:
            # Links are re-made per paper: keep the real phrasing, with a slot for the URL.
            template = _URL.sub("{url}", sentence.replace("{", "(").replace("}", ")"))
            links["github.com" in sentence].append(_json(template))
        elif sentence:
            sentences.append(_json(sentence))
    head, colon, tail = record.title.partition(": ")
    comments = record.arxiv_comment
    if "://" in comments or "withdrawn" in comments.lower():
        comments = ""
    return Source(
        title=_json(record.title),
        head=_json(head) if colon else "",
        tail=_json(tail if colon else record.title),
        sentences=tuple(sentences) or (_json(record.title),),
        group=group,
        recent=record.source == "hf_daily",
        categories=_json(" ".join(record.categories) or _ml_categories(record)),
        comments=f'"{_json(comments)}"' if comments else "",
        words=tuple(w for w in _WORD.findall(record.title.lower()) if len(w) > 3)[:3] or ("code",),
    )


_ML_CATEGORIES = (
    ("cs.CV cs.AI", ("image", "video", "visual", "vision", "pixel", "segmentation", "3d")),
    ("cs.CL cs.AI", ("language", "llm", "text", "translation", "token", "reasoning")),
    ("cs.RO cs.AI", ("robot", "embodied", "manipulation", "navigation")),
    ("cs.SD eess.AS", ("audio", "speech", "music", "sound")),
)


def _ml_categories(record: PaperRecord) -> str:
    """HF records carry no categories: guess the usual ones from the title."""
    words = terms(record.title)
    for categories, cues in _ML_CATEGORIES:
        if words.intersection(cues):
            return categories
    return "cs.LG cs.AI"


def _split_name(name: str) -> tuple[str, str]:
    """(first names, last name) as the snapshot's ``authors_parsed`` wants them."""
    first, _, last = name.rpartition(" ")
    return first, last


def _zipf_names(counter: Counter) -> tuple[list[Author], list[float]]:
    """A group's real names, most frequent first, with cumulative weights 1/(rank + 1000).

    The offset keeps the most prolific name near 0.03 % of author slots, as on arXiv, instead
    of the several percent a pure 1/rank law would give.
    """
    ranked = [n for n, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])) if n[1]]
    authors = [_author(first, last) for first, last in ranked]
    return authors, _cumulative(1 / (rank + 1000) for rank in range(len(ranked)))


def _author(first: str, last: str) -> Author:
    return Author(
        name=_json(f"{first} {last}".strip()),
        parsed=json.dumps([last, first, ""], ensure_ascii=False),
        last=last,
        slug="".join(_WORD.findall(last.lower()))[:20] or "lab",
    )


def _cumulative(weights: Iterable[float]) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def load_pool(directory: Path | None = None) -> Pool:
    directory = directory or default_real_dir()
    # pylatexenc warns about every unbalanced brace of real abstracts; the parsers cope.
    latex_log = logging.getLogger("pylatexenc")
    level, latex_log.level = latex_log.level, logging.ERROR
    try:
        return build_pool(read_real_records(directory), directory)
    finally:
        latex_log.setLevel(level)


# --- the calendar -----------------------------------------------------------------------------


def monthly_counts(papers: int, start: dt.date = START, end: dt.date = END) -> list[tuple]:
    """[(year, month, papers)] from ``start`` to ``end``, growing by ``GROWTH`` a year.

    Largest-remainder rounding: the counts add up to ``papers`` exactly.
    """
    months = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        months.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    weights = [math.exp(GROWTH * i / 12) for i in range(len(months))]
    exact = [papers * w / sum(weights) for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(months)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: papers - sum(counts)]:
        counts[i] += 1
    return [(y, m, n) for (y, m), n in zip(months, counts, strict=True)]


def arxiv_id(year: int, month: int, number: int, papers_in_month: int) -> str:
    """New-style ids: four digits before 2015 (as arXiv), five after or when a month needs it."""
    if number > 99_999:
        raise ValueError("more than 99,999 papers in one month: use fewer papers")
    digits = 4 if year < 2015 and papers_in_month <= 9_999 else 5
    return f"{year % 100:02d}{month:02d}.{number:0{digits}d}"


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", *calendar.month_abbr[1:])


def rfc2822(day: dt.date, seconds: int) -> str:
    """``Mon, 2 Apr 2007 19:18:42 GMT``, as the snapshot writes version dates."""
    minutes, second = divmod(seconds, 60)
    return f"{_day_text(day)} {_CLOCK[minutes]}:{second:02d} GMT"


@functools.cache
def _day_text(day: dt.date) -> str:
    # ~7,000 distinct days, a million calls: formatting each once is worth a cache.
    return f"{_WEEKDAYS[day.weekday()]}, {day.day} {_MONTHS[day.month]} {day.year}"


_CLOCK = [f"{m // 60:02d}:{m % 60:02d}" for m in range(24 * 60)]


# --- generation ---------------------------------------------------------------------------

_LICENSE = "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"


class Generator:
    """Streams generated papers as snapshot lines in date order; memory does not grow with N.

    Lines are assembled from pre-escaped JSON parts: ``json.dumps`` of each paper would cost
    more than everything else together.
    """

    def __init__(self, pool: Pool, seed: int = 0):
        self.pool = pool
        self.random = random.Random(seed).random
        recent = [s for s in pool.sources if s.recent]
        classic = [s for s in pool.sources if not s.recent]
        self.recent, self.classic = recent or classic, classic or recent

    def lines(self, count: int) -> Iterator[str]:
        months = monthly_counts(count)
        for (year, month, papers), share in zip(months, self._recent_shares(months), strict=True):
            days = calendar.monthrange(year, month)[1]
            progress = (dt.date(year, month, 1) - START).days / (END - START).days
            for number in range(1, papers + 1):
                day = dt.date(year, month, 1 + (number - 1) * days // papers)
                yield self.line(arxiv_id(year, month, number, papers), day, share, progress)

    def papers(self, count: int) -> Iterator[dict]:
        return (json.loads(line) for line in self.lines(count))

    def _recent_shares(self, months: list[tuple]) -> list[float]:
        """The HF share of each month: rising linearly with time, and averaging (weighted by
        papers) exactly the HF share of the real pool, which keeps document frequencies."""
        if self.recent is self.classic:
            return [1.0] * len(months)
        share = len(self.recent) / (len(self.recent) + len(self.classic))
        total = sum(n for _, _, n in months) or 1
        x = [i / max(len(months) - 1, 1) for i in range(len(months))]
        mean_x = sum(xi * n for xi, (_, _, n) in zip(x, months, strict=True)) / total
        slope = min((0.98 - share) / max(1 - mean_x, 1e-9), (share - 0.02) / max(mean_x, 1e-9))
        return [share + slope * (xi - mean_x) for xi in x]

    def _pick(self, items: list):
        return items[int(self.random() * len(items))]

    def line(self, paper_id: str, day: dt.date, recent_share: float, progress: float) -> str:
        rnd = self.random
        base = self._pick(self.recent if rnd() < recent_share else self.classic)
        partner = self._pick(self.pool.groups[base.group])
        authors = self._authors(base.group)
        abstract, comments, code = self._abstract(base, partner), base.comments, ""
        chance = rnd()
        if chance < CODE_SHARE:
            code = f"https://github.com/{authors[0].slug}{int(rnd() * 999)}/{'-'.join(base.words)}"
            if chance < min(CODE_SHARE, self.pool.code_in_abstract):
                abstract += " " + self._pick(self.pool.code_links).format(url=code)
            else:
                comments = _with_code(comments, code)
        elif chance < CODE_SHARE + self.pool.page_in_abstract:
            page = f"https://{authors[0].slug}.github.io/{'-'.join(base.words)}/"
            abstract += " " + self._pick(self.pool.page_links).format(url=page)
        versions, updated = self._versions(day)
        return (
            f'{{"id":"{paper_id}","submitter":"{authors[0].name}",'
            f'"authors":"{_authors_text(authors)}","title":"{self._title(base, partner)}",'
            f'"comments":{comments or self._page_count()},"journal-ref":null,"doi":null,'
            f'"report-no":null,"categories":"{base.categories}","license":"{_LICENSE}",'
            f'"abstract":"{abstract}","versions":[{versions}],"update_date":"{updated}",'
            f'"authors_parsed":[{",".join(a.parsed for a in authors)}],'
            f'"upvotes":{self._upvotes(progress)},'
            f'"github_stars":{self._stars() if code else "null"}}}'
        )

    def _abstract(self, base: Source, partner: Source) -> str:
        rnd, mine, theirs = self.random, base.sentences, partner.sentences
        if partner is base:
            return " ".join(mine)
        scale = len(theirs) / len(mine)
        # Sentence i from the partner's same relative position: intros stay intros.
        return " ".join(
            theirs[int(i * scale)] if rnd() < CROSSOVER else sentence
            for i, sentence in enumerate(mine)
        )

    def _title(self, base: Source, partner: Source) -> str:
        if base.head and partner.head and self.random() < CROSSOVER:
            return f"{base.head}: {partner.tail}"
        return base.title

    def _authors(self, group: str) -> list[Author]:
        names, cumulative = self.pool.names[group]
        total, rnd = cumulative[-1], self.random
        count = self._pick(self.pool.author_counts)
        picked = [names[bisect.bisect(cumulative, rnd() * total)] for _ in range(count)]
        return list(dict.fromkeys(picked))

    def _page_count(self) -> str:
        rnd = self.random
        if rnd() < 0.4:
            return "null"
        return f'"{4 + int(rnd() * 36)} pages, {1 + int(rnd() * 14)} figures"'

    def _versions(self, day: dt.date) -> tuple[str, str]:
        """The versions' JSON (v1 on ``day``; v2 for a third of papers, ...) and the last date."""
        rnd, created, versions = self.random, day, []
        while True:
            stamp = rfc2822(created, int(rnd() * 86_400))
            versions.append(f'{{"version":"v{len(versions) + 1}","created":"{stamp}"}}')
            following = created + dt.timedelta(days=3 + int(rnd() * 240))
            if len(versions) >= 5 or following > END or rnd() > 0.35:
                return ",".join(versions), created.isoformat()
            created = following

    def _upvotes(self, progress: float) -> str:
        """null for papers never listed on HF; Zipf-like (Pareto, alpha 1) for those listed.

        The listed share grows with time (HF Daily is recent): ~1 % in 2007, ~35 % in 2026.
        """
        rnd = self.random
        if rnd() > 0.01 + 0.34 * progress**3:
            return "null"
        return str(min(int(1 / (1 - rnd())) - 1, 5000))

    def _stars(self) -> int:
        return min(int(3 / (1 - self.random()) ** 1.1) - 3, 100_000)


def _with_code(comments: str, url: str) -> str:
    """Comments (a JSON value or "") with "Code: URL" appended."""
    return f'"{comments[1:-1]}. Code: {url}"' if comments else f'"Code: {url}"'


def _authors_text(authors: list[Author]) -> str:
    if len(authors) == 1:
        return authors[0].name
    return f"{', '.join(a.name for a in authors[:-1])} and {authors[-1].name}"


# --- writing a corpus -----------------------------------------------------------------------


@dataclasses.dataclass
class Summary:
    """What ``write_corpus`` wrote and measured; also saved beside the corpus as JSON."""

    papers: int
    seed: int
    real_dir: str
    real_papers: int
    seconds: float
    check: FrequencyCheck
    sample: Frequencies
    phrases: Counter
    surnames: Counter

    @property
    def rate(self) -> float:
        return self.papers / self.seconds if self.seconds else 0.0

    def stats(self) -> dict:
        """The figures the site benchmark chooses its queries from."""
        quarter = (self.sample.documents + 3) // 4 or 1  # phrases and surnames: 1 in 4
        return {
            "papers": self.papers,
            "seed": self.seed,
            "real_dir": self.real_dir,
            "real_papers": self.real_papers,
            "sample_papers": self.sample.documents,
            "papers_per_second": round(self.rate),
            "check_passed": self.check.passed,
            "check_summary": self.check.summary(),
            "top_terms": [[t, self.sample.share(t)] for t in self.sample.top(100)],
            "rare_terms": rare_terms(self.sample),
            "top_phrases": [[p, n / quarter] for p, n in self.phrases.most_common(30)],
            "linear_attention": self.phrases["linear attention"] / quarter,
            "top_surnames": [[s, n / quarter] for s, n in self.surnames.most_common(20)],
            "months": [[y, m, n] for y, m, n in monthly_counts(self.papers)],
        }


_ENGLISH_SUFFIX = re.compile(r"(?:tion|ment|ness|ity|ally|ive|ing)$")
STEM_PREFIX = 6  # letters that stemmed forms of one word share ("ablating", "ablation")


def rare_terms(sample: Frequencies, count: int = 20) -> list[str]:
    """Words seen in exactly one sampled paper, alphabetically. English suffixes keep out names
    and identifiers; a word whose first letters start a common word is left out, because
    search stems it ("ablating" finds "ablation", in 2 % of papers)."""
    by_prefix: Counter = Counter()
    for term, n in sample.counts.items():
        by_prefix[term[:STEM_PREFIX]] += n
    rare = (t for t, n in sample.counts.items() if n == 1 and 8 <= len(t) <= 14)
    kept = (t for t in rare if _ENGLISH_SUFFIX.search(t) and by_prefix[t[:STEM_PREFIX]] <= 2)
    return sorted(kept)[:count]


class _Sampler:
    """Term frequencies of every ``stride``-th line, read back as JSON; phrases and surnames
    of every fourth of those (they only choose the benchmark's queries)."""

    def __init__(self, stride: int):
        self.stride = stride
        self.terms, self.phrases, self.surnames = Frequencies(), Counter(), Counter()

    def add(self, line: str) -> None:
        paper = json.loads(line)
        text = f"{paper['title']} {paper['abstract']}"
        self.terms.add(text)
        if self.terms.documents % 4 == 1:
            self.phrases.update(bigrams(text))
            self.surnames.update({last for last, _, _ in paper["authors_parsed"]})


def write_corpus(
    path: Path, papers: int, *, seed: int = 0, pool: Pool | None = None, sample: int = CHECK_SAMPLE
) -> Summary:
    """Write ``papers`` lines to ``path`` (atomically) and check a sample of what was written."""
    pool = pool or load_pool()
    started = time.perf_counter()
    sampler = _Sampler(max(papers // sample, 1))
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8") as out:
        for number, line in enumerate(Generator(pool, seed).lines(papers)):
            out.write(line)
            out.write("\n")
            if number % sampler.stride == 0:
                sampler.add(line)
    partial.replace(path)
    summary = Summary(
        papers=papers,
        seed=seed,
        real_dir=str(pool.directory),
        real_papers=len(pool.sources),
        seconds=time.perf_counter() - started,
        check=check_frequencies(pool.frequencies, sampler.terms),
        sample=sampler.terms,
        phrases=sampler.phrases,
        surnames=sampler.surnames,
    )
    stats_path(path).write_text(json.dumps(summary.stats(), indent=1, ensure_ascii=False))
    return summary


def stats_path(corpus: Path) -> Path:
    return corpus.with_name(corpus.name + ".stats.json")
