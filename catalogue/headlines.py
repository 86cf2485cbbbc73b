"""Search results' headlines: a title with the query's words marked, and an excerpt of the
abstract around them, as safe HTML. Pure: no I/O.

Which words count is PostgreSQL's call, not ours: ``search.highlight`` asks it, in the
statement that reads the page's cards, which words of a paper's title and abstract hold a
query term under the search's own text configuration (stemming, stop words). It tests only
the words that begin like a term's lexeme (``candidate_pattern``): ~20 µs a paper, where
``ts_headline`` parsed and stemmed the whole abstract again, ~200-320 µs a paper, 8-10 ms
of a search page of 25 cards holding a term. Marking those words and choosing the excerpt
is then plain text work, done here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from markupsafe import Markup, escape

# The excerpt: about this many characters (~45 words, what ``ts_headline`` was given), in at
# most two fragments where the marked words lie apart.
EXCERPT_CHARS = 300
FRAGMENTS = 2
# Characters shown before a fragment's first marked word (~4 words), not to start on it.
LEAD_CHARS = 30
ELLIPSIS = "…"

_SPACE = re.compile(r"\s")
_SPACES = (" ", "\n", "\t", "\r")
# The characters PostgreSQL's regular expressions read as syntax (a backslash before a letter
# or digit would be an escape of its own).
_SPECIAL = re.compile(r"[\\^$.|?*+()\[\]{}]")


def candidate_pattern(lexemes: Iterable[str]) -> str | None:
    """A PostgreSQL regular expression (``regexp_matches``, flags ``gi``) of the words that may
    hold one of ``lexemes``; None without lexemes. A word found is only a candidate:
    PostgreSQL then decides by stemming it.

    - A word's lexeme: the words beginning with all but its last two characters. A stemmer
      only rewrites a word's end ("possibility" is "possibl", "hoping" "hope", "happy"
      "happi"): over the 24,000 distinct words of 20,000 abstracts, every stem but its last
      two characters begins its word.
    - A number with its sign ("GPT-4" is 'gpt' and '-4'), never stemmed: whole, where a word
      ends ("GPT-4o" holds no '-4').
    - A hyphenated compound ("state-of-the-art"): not looked for; its parts are lexemes of
      their own and are marked, as ``ts_headline`` marks them (a pattern of the whole would
      take its parts' text: PostgreSQL's matches are the longest)."""
    words = {_escaped(_stem_prefix(lexeme)) for lexeme in lexemes if _is_word(lexeme)}
    signed = {_escaped(lexeme) for lexeme in lexemes if lexeme and not _begins_a_word(lexeme)}
    alternatives = [rf"\m(?:{'|'.join(sorted(words))})[[:alnum:]]*"] if words else []
    alternatives += [rf"(?:{'|'.join(sorted(signed))})\M"] if signed else []
    return f"({'|'.join(alternatives)})" if alternatives else None


def _is_word(lexeme: str) -> bool:
    return _begins_a_word(lexeme) and "-" not in lexeme


def _stem_prefix(lexeme: str) -> str:
    return lexeme[: max(len(lexeme) - 2, 1)]


def _begins_a_word(lexeme: str) -> bool:
    return lexeme[:1].isalnum()


def _escaped(text: str) -> str:
    """``text`` literally in a PostgreSQL regular expression."""
    return _SPECIAL.sub(lambda m: "\\" + m.group(), text)


@lru_cache(maxsize=1024)
def _words_regex(words: tuple[str, ...]) -> re.Pattern:
    r"""``words`` (lower case) anywhere in a lower-cased text, whole words, word boundaries as
    PostgreSQL's ``\m`` and ``\M`` draw them (letters, digits, underscore). The shortest
    first: a compound holding terms ("state-of-the-art") is marked in its parts, as
    ``ts_headline`` marks it; a longer word ("models") still wins where the shorter one
    ("model") is not a whole word."""
    ordered = sorted(words, key=len)
    alternatives = "|".join(
        rf"\b{re.escape(word)}" if _begins_a_word(word) else re.escape(word) for word in ordered
    )
    return re.compile(rf"(?:{alternatives})\b")


def _spans(text: str, words: Sequence[str]) -> list[tuple[int, int]]:
    """Where ``words`` stand in ``text``, any case, in order, not overlapping."""
    if not text or not words:
        return []
    regex = _words_regex(tuple(sorted(words)))
    lowered = text.lower()
    if len(lowered) != len(text):  # a letter whose lower case is longer ("İ"): rare
        regex = re.compile(regex.pattern, re.IGNORECASE)
        lowered = text
    return [match.span() for match in regex.finditer(lowered)]


def _marked(text: str, spans: Sequence[tuple[int, int]], start: int = 0, end: int | None = None):
    """``text[start:end]`` escaped, with the ``spans`` inside it in <mark>."""
    end = len(text) if end is None else end
    parts, at = [], start
    for first, last in spans:
        if first < start or last > end:
            continue
        parts += [escape(text[at:first]), Markup("<mark>"), escape(text[first:last])]
        parts.append(Markup("</mark>"))
        at = last
    parts.append(escape(text[at:end]))
    return Markup("").join(parts)


def marked_title(title: str, words: Sequence[str]) -> Markup | None:
    """The whole title with each of ``words`` marked; None where none is in it."""
    spans = _spans(title, words)
    return _marked(title, spans) if spans else None


def excerpt(abstract: str, words: Sequence[str]) -> Markup | None:
    """About ``EXCERPT_CHARS`` characters of the abstract, whole words, around its marked
    words, in at most ``FRAGMENTS`` fragments, with an ellipsis where text is left out; None
    where none of ``words`` is in it (cards then show the abstract's first words)."""
    spans = _spans(abstract, words)
    if not spans:
        return None
    if len(abstract) <= EXCERPT_CHARS:
        return _marked(abstract, spans)
    windows = []
    for first, last in fragments([first for first, _ in spans], len(abstract)):
        first, last = _word_start(abstract, first), _word_end(abstract, last)
        if windows and first <= windows[-1][1]:
            windows[-1] = (windows[-1][0], last)
        else:
            windows.append((first, last))
    pieces = []
    for index, (first, last) in enumerate(windows):
        if index or first > 0:
            pieces.append(f" {ELLIPSIS} " if index else f"{ELLIPSIS} ")
        pieces.append(_marked(abstract, spans, first, last).strip())
    if windows[-1][1] < len(abstract.rstrip()):
        pieces.append(f" {ELLIPSIS}")
    return Markup("").join(pieces)


def fragments(hits: Sequence[int], length: int) -> list[tuple[int, int]]:
    """The excerpt's character ranges [first, last), in order, for marked words beginning at
    ``hits`` (sorted) of a text of ``length``: one window of ``EXCERPT_CHARS`` where it holds
    every hit; else ``FRAGMENTS`` windows sharing those characters, the first around the
    first hit, each next around the first hit the windows before it left out."""
    if hits[-1] - hits[0] < EXCERPT_CHARS - 2 * LEAD_CHARS:
        return [_window(hits[0], EXCERPT_CHARS, length)]
    size = EXCERPT_CHARS // FRAGMENTS
    windows: list[tuple[int, int]] = []
    for _ in range(FRAGMENTS):
        left_out = [hit for hit in hits if not windows or hit >= windows[-1][1]]
        if not left_out:
            break
        first, last = _window(left_out[0], size, length)
        if windows:
            first = max(first, windows[-1][1])  # nothing twice
            last = min(max(last, first + size), length)
        windows.append((first, last))
    return windows


def _window(hit: int, size: int, length: int) -> tuple[int, int]:
    """``size`` characters from a few words before ``hit``, moved back where the text ends."""
    first = max(0, min(hit - LEAD_CHARS, length - size))
    return first, min(first + size, length)


def _word_start(text: str, at: int) -> int:
    """The start of the word ``at`` falls in (``at`` itself at a word's start)."""
    if at <= 0:
        return 0
    return max(text.rfind(space, 0, at) for space in _SPACES) + 1


def _word_end(text: str, at: int) -> int:
    """The end of the word ``at`` falls in (the text's end, after its last word)."""
    found = _SPACE.search(text, at)
    return found.start() if found else len(text)
