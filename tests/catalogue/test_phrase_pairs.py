"""Phrases found through the index of adjacent word pairs (catalogue.phrases): the pairs are
kept true by the papers' triggers and the background pairing, and a phrase search finds the
same papers whether a paper is paired, pending, or changed since it was paired."""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from catalogue import phrases, search
from catalogue.models import Paper, PhrasePairs, PhrasePending

pytestmark = pytest.mark.django_db


def make(key: str, title: str, abstract: str = "") -> Paper:
    return Paper.objects.create(arxiv_id=key, title=title, abstract=abstract, authors=[])


def found(query: str) -> set[str]:
    return set(Paper.objects.search(query).values_list("arxiv_id", flat=True))


def uses_pairs(query: str) -> bool:
    return "catalogue_phrasepairs" in str(Paper.objects.search(query).query)


@pytest.fixture(autouse=True)
def _fresh_pair_state():
    """Each test reads the pending count and the statistics afresh."""
    phrases.forget_state()
    search.parse.cache_clear()
    yield
    phrases.forget_state()


# --- the pairs a phrase needs ---------------------------------------------------------------


def test_a_chain_of_adjacent_lexemes_needs_each_pair():
    assert phrases.required_pairs("'linear' <-> 'attent'") == (
        phrases.pair_hash("linear", "attent"),
    )
    chain = phrases.required_pairs("'gpt' <-> '-4' <-> 'model'")
    assert sorted(chain) == sorted(
        [phrases.pair_hash("gpt", "-4"), phrases.pair_hash("-4", "model")]
    )


def test_words_apart_are_not_a_pair_and_weights_do_not_matter():
    # "state of the art models": stop words leave a gap (<3>), which no pair records.
    assert phrases.required_pairs("'state' <3> 'art' <-> 'model'") == (
        phrases.pair_hash("art", "model"),
    )
    assert phrases.required_pairs("'linear':A <-> 'attent':A") == (
        phrases.pair_hash("linear", "attent"),
    )
    assert phrases.required_pairs("'state' <3> 'art'") == ()


@pytest.mark.parametrize(
    "tsquery",
    [
        "'attent'",  # one word: no pair
        "'linear':* <-> 'attent'",  # a prefix
        "'linear' & 'attent'",  # not a phrase
        "( 'linear' <-> 'attent' ) | 'x'",
        "'o''neil' <-> 'model'",  # an escaped quote: its text form is not the lexeme
        "'a\\\\b' <-> 'model'",  # an escaped backslash
        "",
    ],
)
def test_anything_but_a_plain_chain_needs_no_pairs(tsquery):
    assert phrases.required_pairs(tsquery) == ()


def test_python_hashes_pairs_as_postgresql_does():
    paper = make("2501.10001", "Linear attention", "GPT-4 models scale.")
    phrases.pair_all()
    stored = set(PhrasePairs.objects.get(paper_id=paper.pk).pairs)
    with connection.cursor() as cursor:
        cursor.execute("SELECT search_vector::text FROM catalogue_paper WHERE id = %s", [paper.pk])
        (vector,) = cursor.fetchone()
    assert "'attent':2A" in vector and "'-4':4B" in vector  # the positions the pairs come from
    expected = {
        phrases.pair_hash(*pair)
        for pair in [("linear", "attent"), ("attent", "gpt"), ("gpt", "-4"), ("-4", "model")]
    }
    assert expected <= stored
    assert phrases.pair_hash("linear", "model") not in stored
    # The title's last word and the abstract's first are adjacent in the vector, as
    # PostgreSQL's own phrase test sees them.
    assert phrases.pair_hash("attent", "gpt") in stored


# --- the triggers and the pairing ---------------------------------------------------------------


def pending() -> set[int]:
    return set(PhrasePending.objects.values_list("paper_id", flat=True))


def test_new_papers_wait_to_be_paired_whatever_inserts_them():
    one = make("2501.10002", "Linear attention")
    with connection.cursor() as cursor:  # a plain INSERT … SELECT, as ingest writes papers
        cursor.execute(
            "INSERT INTO catalogue_paper (arxiv_id, title, abstract, authors, upvotes, code_url,"
            " hidden, curated_fields, created_at, updated_at, arxiv_comment, categories,"
            " comments, doi, journal_ref, keywords, primary_category, project_url, withdrawn,"
            " featured, trending_score)"
            " SELECT key, 'Sparse attention', '', '{}', 0, '', false, '{}', now(), now(), '',"
            " '{}', 0, '', '', '{}', '', '', false, false, 0"
            " FROM unnest(ARRAY['2501.10003', '2501.10004']) AS key RETURNING id"
        )
        inserted = {row[0] for row in cursor.fetchall()}
    assert pending() == {one.pk} | inserted

    assert phrases.pair_pending(batch=2) == 2  # a batch at a time
    assert phrases.pair_pending(batch=2) == 1
    assert phrases.pair_pending(batch=2) == 0
    assert pending() == set()
    assert set(PhrasePairs.objects.values_list("paper_id", flat=True)) == {one.pk} | inserted


def _pending_list_limit() -> str:
    with connection.cursor() as cursor:  # (in the test's transaction: its SET LOCALs hold)
        cursor.execute("SHOW gin_pending_list_limit")
        return cursor.fetchone()[0]


@pytest.mark.parametrize("waiting, backlog", [(3, True), (2, False)])
def test_a_backlog_is_paired_with_a_larger_gin_pending_list(monkeypatch, waiting, backlog):
    """Beyond PENDING_LIMIT waiting papers (no search reads the pairs' index), the pairing
    lets the index's pending list grow to BACKLOG_PENDING_LIST; at or below it, the server's
    own limit holds, so searches reading the index never scan a larger list."""
    monkeypatch.setattr(phrases, "PENDING_LIMIT", 2)
    for number in range(waiting):
        make(f"2501.1010{number}", "Linear attention", "Fast and exact.")
    servers_own = _pending_list_limit()
    assert servers_own != phrases.BACKLOG_PENDING_LIST

    assert phrases.pair_pending(batch=1) == 1
    assert _pending_list_limit() == (phrases.BACKLOG_PENDING_LIST if backlog else servers_own)
    phrases.pair_all()
    assert pending() == set()  # every paper paired either way
    assert PhrasePairs.objects.count() == waiting


def test_a_change_of_text_makes_a_paper_pending_again_and_other_changes_do_not():
    paper = make("2501.10005", "Linear attention", "Fast.")
    phrases.pair_all()
    Paper.objects.filter(pk=paper.pk).update(upvotes=5, trending_score=1.5)
    assert pending() == set()

    Paper.objects.filter(pk=paper.pk).update(abstract="Sliding window attention.")
    assert pending() == {paper.pk}
    phrases.pair_all()
    pairs = set(PhrasePairs.objects.get(paper_id=paper.pk).pairs)
    assert phrases.pair_hash("window", "attent") in pairs


def test_deleting_a_paper_deletes_its_pairs():
    kept, gone = make("2501.10006", "Linear attention"), make("2501.10007", "Linear probes")
    phrases.pair_all()
    make("2501.10008", "Pending one")
    Paper.objects.filter(arxiv_id__in=["2501.10007", "2501.10008"]).delete()
    assert set(PhrasePairs.objects.values_list("paper_id", flat=True)) == {kept.pk}
    assert pending() == set()
    assert gone.pk not in pending()


# --- searching --------------------------------------------------------------------------------


@pytest.fixture
def papers():
    return {
        "phrase": make("2501.10011", "Fast models", "We study linear attention at scale."),
        "apart": make("2501.10012", "Attention everywhere", "A linear probe of the attention."),
        "title": make("2501.10013", "Linear attention transformers", "Nothing else."),
        "other": make("2501.10014", "Convolutions", "Spatial filters."),
    }


PHRASE_FINDS = {"2501.10011", "2501.10013"}


def test_a_phrase_is_found_from_the_pairs_once_papers_are_paired(papers):
    phrases.pair_all()
    assert uses_pairs('"linear attention"')
    assert found('"linear attention"') == PHRASE_FINDS
    assert found('title:"linear attention"') == {"2501.10013"}
    assert found('"attention linear"') == set()


def test_pending_papers_are_found_before_they_are_paired(papers):
    assert pending() == {paper.pk for paper in papers.values()}
    assert uses_pairs('"linear attention"')
    assert found('"linear attention"') == PHRASE_FINDS

    phrases.pair_all()
    late = make("2501.10015", "Linear attention, late", "Added after the pairing.")
    assert pending() == {late.pk}
    assert found('"linear attention"') == PHRASE_FINDS | {"2501.10015"}


def test_a_paper_whose_text_changed_is_found_by_its_new_text_before_it_is_paired_again(papers):
    phrases.pair_all()
    Paper.objects.filter(pk=papers["other"].pk).update(abstract="Now about linear attention.")
    # Its stored pairs are of the old text; it is pending again, so it is tested.
    assert found('"linear attention"') == PHRASE_FINDS | {"2501.10014"}
    Paper.objects.filter(pk=papers["phrase"].pk).update(abstract="About something else.")
    assert found('"linear attention"') == {"2501.10013", "2501.10014"}


def test_an_excluded_phrase_and_a_phrase_or_a_word_keep_their_meaning(papers):
    phrases.pair_all()
    assert found('attention -"linear attention"') == {"2501.10012"}
    assert found('"linear attention" OR convolutions') == PHRASE_FINDS | {"2501.10014"}


def test_the_pairs_are_not_used_while_many_papers_are_pending(papers, monkeypatch):
    monkeypatch.setattr(phrases, "PENDING_LIMIT", 3)
    assert not uses_pairs('"linear attention"')  # four pending
    assert found('"linear attention"') == PHRASE_FINDS
    phrases.pair_all()
    assert uses_pairs('"linear attention"')


def test_a_common_pair_is_found_the_old_way_a_rare_one_from_the_pairs(monkeypatch):
    for i in range(40):
        make(f"2501.2{i:04d}", f"Language models {i}", "Large language models.")
    make("2501.30000", "Linear attention", "Rare here.")
    phrases.pair_all()  # and ANALYZE: the statistics now know the common pairs
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_paper")
    phrases.forget_state()
    monkeypatch.setattr(phrases, "PAIRED_LIMIT", 10)
    assert not uses_pairs('"language models"')  # in 40 papers' pairs
    assert uses_pairs('"linear attention"')  # in one
    assert len(found('"language models"')) == 40
    assert found('"linear attention"') == {"2501.30000"}


def test_the_state_is_read_again_after_a_while(monkeypatch):
    first = phrases.pair_state()
    assert phrases.pair_state() is first
    monkeypatch.setattr(phrases, "STATE_SECONDS", 0)
    time.sleep(0.001)
    assert phrases.pair_state() is not first


def test_the_command_pairs_every_pending_paper(papers):
    out = StringIO()
    call_command("pair_phrases", "--no-progress", stdout=out)
    assert out.getvalue().strip() == "paired 4 papers"
    assert pending() == set()
    assert PhrasePairs.objects.count() == 4
    out = StringIO()
    call_command("pair_phrases", "--no-progress", stdout=out)  # again: nothing left
    assert out.getvalue().strip() == "paired 0 papers"
