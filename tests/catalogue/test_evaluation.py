"""The search benchmark's judgements and metrics (tests.bench.evaluation): pure, no database."""

import json
import math
import random

import pytest

from tests.bench import evaluation
from tests.bench.evaluation import DailyPaper, Query

# --- metrics ----------------------------------------------------------------------------------


def test_perfect_ranking_scores_one():
    relevant = {"a", "b", "c"}
    ranking = ["a", "b", "c", "x", "y"]
    assert evaluation.ndcg(ranking, relevant) == pytest.approx(1.0)
    assert evaluation.recall(ranking, relevant) == 1.0
    assert evaluation.reciprocal_rank(ranking, relevant) == 1.0


def test_ranking_without_relevant_papers_scores_zero():
    ranking = ["x", "y", "z"]
    assert evaluation.ndcg(ranking, {"a"}) == 0.0
    assert evaluation.recall(ranking, {"a"}) == 0.0
    assert evaluation.reciprocal_rank(ranking, {"a"}) == 0.0
    assert evaluation.ndcg([], {"a"}) == 0.0


def test_ndcg_matches_a_hand_computed_value():
    # Hits at ranks 2 and 4 of 3 relevant papers:
    # DCG = 1/log2(3) + 1/log2(5) = 1.0616; ideal = 1 + 1/log2(3) + 1/log2(4) = 2.1309.
    ranking = ["x", "a", "y", "b"]
    relevant = {"a", "b", "c"}
    assert evaluation.ndcg(ranking, relevant) == pytest.approx(0.49819, abs=1e-5)
    assert evaluation.recall(ranking, relevant) == pytest.approx(2 / 3)
    assert evaluation.reciprocal_rank(ranking, relevant) == 0.5


def test_ideal_dcg_counts_at_most_ten_relevant_papers():
    relevant = {f"r{i}" for i in range(30)}
    assert evaluation.ndcg(sorted(relevant)[:10], relevant) == pytest.approx(1.0)
    assert evaluation.recall(sorted(relevant)[:10], relevant) == pytest.approx(1 / 3)


def test_hits_below_the_cut_off_do_not_count():
    relevant = {"a"}
    ranking = [f"x{i}" for i in range(10)] + ["a"]
    assert evaluation.ndcg(ranking, relevant) == 0.0
    assert evaluation.recall(ranking, relevant) == 1.0
    assert evaluation.recall(ranking, relevant, k=10) == 0.0
    assert evaluation.reciprocal_rank(ranking, relevant) == pytest.approx(1 / 11)


def test_a_repeated_paper_counts_once():
    assert evaluation.ndcg(["a", "a", "b"], {"a", "b"}) == pytest.approx(1.0)


def test_score_averages_the_queries_it_has_rankings_for():
    queries = [
        Query("lexical", "keyword", "one", frozenset({"a"})),
        Query("lexical", "keyword", "two", frozenset({"b"})),
        Query("lexical", "keyword", "three", frozenset({"c"})),
    ]
    figures = evaluation.score(queries, {"one": ["a"], "two": ["x", "b"]})
    assert figures.queries == 2
    assert figures.ndcg == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert figures.recall == 1.0
    assert figures.mrr == pytest.approx(0.75)
    assert evaluation.score(queries, {}) is None


# --- reading and the sets ---------------------------------------------------------------------


def item(arxiv_id, title, keywords=(), summary="An abstract. Its second sentence."):
    paper = {"id": arxiv_id, "title": title, "summary": summary, "ai_keywords": list(keywords)}
    return {"paper": paper, "title": " ".join(title.split()), "publishedAt": "2025-03-14T00:00Z"}


def test_read_daily_dedupes_by_arxiv_id_and_normalises_keywords(tmp_path):
    (tmp_path / "2025-03-14.json").write_text(
        json.dumps([item("2503.00001", "A\n  Title", ["Sparse  Autoencoders", "KV cache"])])
    )
    (tmp_path / "2025-03-15.json").write_text(
        json.dumps(
            [
                item("2503.00001", "A Title again", ["sparse autoencoders", "RLHF"]),
                item("2503.00002", "Other", []),
            ]
        )
    )
    papers = evaluation.read_daily(tmp_path.glob("*.json"))
    assert [p.arxiv_id for p in papers] == ["2503.00001", "2503.00002"]
    first = papers[0]
    assert first.title == "A Title"  # the first sighting, hard wrap removed
    assert first.keywords == {"sparse autoencoders", "kv cache", "rlhf"}


def paper(arxiv_id, keywords=(), title="Efficient Large Models for Image Generation"):
    return DailyPaper(arxiv_id, title, "First sentence here. Second one.", frozenset(keywords))


def test_keyword_queries_keep_keywords_within_the_bounds_with_their_papers():
    papers = [paper(f"p{i}", ["common"] + (["rare"] if i < 5 else [])) for i in range(20)]
    papers.append(paper("lonely", ["once"]))
    queries = evaluation.keyword_queries(papers, 5, 14)
    assert [(q.text, q.relevant) for q in queries] == [
        ("rare", frozenset(f"p{i}" for i in range(5)))
    ]
    assert [q.text for q in evaluation.keyword_queries(papers, 15, 40)] == ["common"]


def test_keyword_queries_come_in_a_fixed_order():
    papers = [paper(f"p{i}", [f"k{j}" for j in range(30)]) for i in range(6)]
    first = evaluation.keyword_queries(papers, 5, 14)
    assert first == evaluation.keyword_queries(list(reversed(papers)), 5, 14)
    assert [q.text for q in first] != sorted(q.text for q in first)  # not alphabetical


def test_drop_one_word_removes_a_content_word_only():
    title = "Scaling Laws for Neural Language Models"
    for seed in range(20):
        dropped = evaluation.drop_one_word(title, random.Random(seed))
        words = dropped.split()
        assert len(words) == 5 and "for" in words
    assert evaluation.drop_one_word("On Attention", random.Random(0)) is None


def test_swap_synonyms_uses_the_fixed_list_and_plurals():
    swapped = evaluation.swap_synonyms("Efficient Large Models for Image Generation")
    assert swapped == "fast big networks for picture synthesis"
    assert evaluation.swap_synonyms("Scaling Laws") is None


def test_first_sentence_of_the_abstract():
    abstract = "We study e.g. things in 3.5 ways. Then more."
    assert evaluation.first_sentence("Large models fail. We fix them.") == "Large models fail."
    assert evaluation.first_sentence(abstract) == "We study e.g. things in 3.5 ways."
    assert len(evaluation.first_sentence("word " * 200).split()) == evaluation.ABSTRACT_WORDS


def test_known_item_queries_are_deterministic_and_point_at_their_paper():
    papers = [paper(f"p{i:03}", title=f"Efficient Models number {i}") for i in range(300)]
    queries = evaluation.known_item_queries(papers, sample=40)
    assert queries == evaluation.known_item_queries(papers, sample=40)
    assert evaluation.count_by(queries, "kind") == {"drop": 40, "synonyms": 40, "abstract": 40}
    assert len({next(iter(q.relevant)) for q in queries}) == 40
    for q in queries:
        (target,) = q.relevant
        assert q.key == f"{q.kind}:{target}"
    assert queries != evaluation.known_item_queries(papers, sample=40, seed=1)
