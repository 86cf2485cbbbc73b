"""Search results' headlines (catalogue.headlines): which words PostgreSQL is asked about,
how they are marked and which part of an abstract a card shows. Pure: no database.
(That PostgreSQL's answers mark what ``ts_headline`` marks: test_round_trips.py.)"""

import re

import pytest

from catalogue.headlines import (
    ELLIPSIS,
    EXCERPT_CHARS,
    candidate_pattern,
    excerpt,
    fragments,
    marked_title,
)


def _pg_pattern_as_python(pattern: str) -> re.Pattern:
    """The candidate pattern in Python's syntax: PostgreSQL's word start, end and class."""
    python = pattern.replace(r"\m", r"\b").replace(r"\M", r"\b")
    return re.compile(python.replace("[[:alnum:]]", "[^\\W_]"), re.IGNORECASE)


@pytest.mark.parametrize(
    ("lexemes", "text", "candidates"),
    [
        # A stem begins its words but for its last two characters: "hope" from "hoping".
        (["hope"], "We were hoping for hopeful hops", ["hoping", "hopeful", "hops"]),
        (["possibl"], "possibility, possibly; impossible", ["possibility", "possibly"]),
        # A number with its sign is looked for whole, where a word ends.
        (["gpt", "-4"], "GPT-4 and GPT-4o", ["GPT", "-4", "GPT"]),
        # A compound is found in its parts.
        (["state-of-the-art", "state", "art"], "state-of-the-art", ["state", "art"]),
        # A dot is text, not "any character".
        (["example.com"], "examplexcom and example.com", ["example.com"]),
    ],
)
def test_candidates_are_the_words_beginning_like_a_lexeme(lexemes, text, candidates):
    found = [m.group(1) for m in _pg_pattern_as_python(candidate_pattern(lexemes)).finditer(text)]
    assert found == candidates


def test_no_lexeme_no_pattern():
    assert candidate_pattern([]) is None


def test_a_title_is_marked_whole_words_any_case_and_nothing_else():
    title = "Decoupling decoupled: Decoupler undecoupled decoupled_x"
    marked = str(marked_title(title, ["decoupled", "decoupling"]))
    assert marked == (
        "<mark>Decoupling</mark> <mark>decoupled</mark>: Decoupler undecoupled decoupled_x"
    )
    assert marked_title(title, ["attention"]) is None


def test_a_compound_is_marked_in_its_parts_and_a_longer_word_whole():
    marked = str(
        marked_title("State-of-the-art models, one model", ["state", "art", "model", "models"])
    )
    assert marked == (
        "<mark>State</mark>-of-the-<mark>art</mark> <mark>models</mark>, one <mark>model</mark>"
    )


def test_a_short_abstract_is_shown_whole():
    assert str(excerpt("We study decoupling.", ["decoupling"])) == (
        "We study <mark>decoupling</mark>."
    )
    assert excerpt("We study attention.", ["decoupling"]) is None  # the card's first words


def _words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


def test_an_excerpt_starts_a_few_words_before_the_first_match_and_says_what_it_leaves_out():
    abstract = f"{_words(100)} decoupling {_words(100, 100)}"
    shown = str(excerpt(abstract, ["decoupling"]))
    assert shown.startswith(f"{ELLIPSIS} w9") and shown.endswith(f" {ELLIPSIS}")
    assert "w99 <mark>decoupling</mark> w100" in shown
    text = shown.replace("<mark>", "").replace("</mark>", "")
    assert EXCERPT_CHARS - 20 <= len(text) <= EXCERPT_CHARS + 20  # whole words
    assert re.fullmatch(rf"{ELLIPSIS} (w\d+ |decoupling )+w\d+ {ELLIPSIS}", text)


def test_matches_far_apart_get_a_fragment_each():
    abstract = f"decoupling {_words(200)} decoupled {_words(200, 200)}"
    shown = str(excerpt(abstract, ["decoupling", "decoupled"]))
    first, second = shown.split(f" {ELLIPSIS} ")[:2]
    assert first.startswith("<mark>decoupling</mark> w0")  # at the text's start: no ellipsis
    assert "w199 <mark>decoupled</mark> w200" in second
    assert shown.endswith(f" {ELLIPSIS}")


def test_an_excerpt_at_the_end_of_the_text_shows_its_last_words():
    abstract = f"{_words(200)} decoupling w200."
    shown = str(excerpt(abstract, ["decoupling"]))
    assert shown.endswith("<mark>decoupling</mark> w200.")
    assert shown.startswith(f"{ELLIPSIS} w")


@pytest.mark.parametrize(
    ("hits", "windows"),
    [
        ([10, 100, 200], [(0, 300)]),  # all in one window
        ([50, 900], [(20, 170), (850, 1000)]),  # apart: one each, the last moved back
        ([0, 140, 500, 900], [(0, 150), (470, 620)]),  # the second at the first left out
    ],
)
def test_fragments(hits, windows):
    assert fragments(hits, 1000) == windows
