"""The query language: stemmed words, exact phrases, OR, exclusions, title: and author:."""

import re

import pytest
from django.db import connection

from catalogue import search
from catalogue.models import Paper

pytestmark = pytest.mark.django_db


@pytest.fixture
def papers():
    def make(key, title, abstract="", authors=()):
        return Paper.objects.create(
            arxiv_id=key, title=title, abstract=abstract, authors=list(authors)
        )

    return {
        "objectivity": make("2501.00001", "On the objectivity of reviews", "Reviews matter."),
        "objects": make("2501.00002", "Counting objects in images", "We count objects."),
        "phrase": make(
            "2501.00003", "Fast models", "We study linear attention at scale.", ["Ada Lovelace"]
        ),
        "apart": make(
            "2501.00004", "Attention everywhere", "A linear probe of the attention heads."
        ),
        "stemmed": make("2501.00005", "Linearly attentive nets", "Nets that are attentive."),
        "decoupled": make(
            "2501.00006", "A decoupled design", "It decouples parts.", ["Alan Turing"]
        ),
        "title_only": make("2501.00007", "Decoupling in title", "Nothing about it here."),
    }


def found(query: str) -> set[str]:
    return set(Paper.objects.search(query).values_list("arxiv_id", flat=True))


def keys(papers, *names) -> set[str]:
    return {papers[n].arxiv_id for n in names}


def test_a_word_matches_all_its_inflections(papers):
    assert found("decoupling") == keys(papers, "decoupled", "title_only")


def test_phrase_query_does_not_match_split_words(papers):
    assert found('"linear attention"') == keys(papers, "phrase")


def test_phrase_query_does_not_match_stemmed_variants(papers):
    # arXiv's own search gets this wrong: quoted "objectivity" must not find "objects".
    assert found('"objectivity"') == keys(papers, "objectivity")
    assert found('"linearly attentive"') == keys(papers, "stemmed")


@pytest.mark.parametrize(
    ("text", "query", "matches"),
    [
        ("A state-of-the-art model.", '"state of the art"', True),
        ("A state of the art model.", '"state of the art"', True),
        ("The state of art is poor.", '"state of the art"', False),
        ("Linear, attention and more.", '"linear attention"', True),
        ("LINEAR ATTENTION everywhere.", '"linear attention"', True),
        ("Linear attentions differ.", '"linear attention"', False),
        ("Bilinear attention here.", '"linear attention"', False),
        ("Über alles in der Welt.", '"über alles"', True),
        ("We beat GPT-4 models.", '"gpt-4 models"', True),
        ("We beat GPT-4 modelling.", '"gpt-4 models"', False),
    ],
)
def test_phrases_are_the_exact_words_in_order(text, query, matches):
    Paper.objects.create(arxiv_id="2502.00001", title="A paper", abstract=text)
    assert bool(found(query)) is matches


def test_a_phrase_does_not_run_from_the_title_into_the_abstract():
    Paper.objects.create(arxiv_id="2502.00001", title="Fast linear", abstract="Attention matters.")
    assert found('"linear attention"') == set()
    assert found("linear attention") == {"2502.00001"}


def test_unquoted_words_are_all_required_anywhere(papers):
    assert found("linear attention") == keys(papers, "phrase", "apart", "stemmed")


def test_or_and_exclusion(papers):
    # Unquoted words are stemmed: objectivity -> object, so "objects" matches too.
    assert found("objectivity OR decoupled") == keys(
        papers, "objectivity", "objects", "decoupled", "title_only"
    )
    assert found("decoupling -title") == keys(papers, "decoupled")
    assert found('attention -"linear attention"') == keys(papers, "apart", "stemmed")


def test_title_prefix_only_matches_titles(papers):
    assert found("title:decoupling") == keys(papers, "decoupled", "title_only")
    assert found("title:attention") == keys(papers, "apart", "stemmed")  # attentive: stemmed
    assert found('title:"attention"') == keys(papers, "apart")


def test_author_prefix_matches_names(papers):
    assert found("author:lovelace") == keys(papers, "phrase")
    assert found('author:"alan turing" decoupled') == keys(papers, "decoupled")


def test_title_matches_rank_above_abstract_matches(papers):
    ranked = list(
        Paper.objects.search("decoupling").order_by("-rank").values_list("arxiv_id", flat=True)
    )
    assert ranked[0] in keys(papers, "decoupled", "title_only")


@pytest.mark.parametrize(
    "query", ["", "   ", "the and of", '"', '""', "-", "OR OR", 'title:""', "\x00", "-the"]
)
def test_queries_that_say_nothing_filter_nothing(papers, query):
    assert found(query) == {p.arxiv_id for p in papers.values()}


def test_tokenize_groups_or_terms_and_keeps_fields():
    groups = search.tokenize('a OR "b c" -d title:e author:"F G"')
    assert [[t.text for t in g] for g in groups] == [["a", "b c"], ["d"], ["e"], ["F G"]]
    assert groups[1][0].negated and groups[2][0].field == "title"
    assert groups[3][0].phrase and groups[3][0].field == "author"


def _raw_relevance(words: str, phrase: str) -> dict[str, float]:
    """Each paper's relevance as the words' cover density plus the phrase's, both computed
    for every paper (what ``search.relevance`` must equal)."""
    weights = "{" + ",".join(map(str, search.RANK_WEIGHTS)) + "}"
    cover = f"ts_rank_cd(%s::float4[], search_vector, %s::tsquery, {search.RANK_NORMALIZATION})"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT arxiv_id, {cover} + %s * {cover} FROM catalogue_paper",
            [weights, words, search.PHRASE_WEIGHT, weights, phrase],
        )
        return {key: score for key, score in cursor.fetchall()}


def test_the_phrase_bonus_is_computed_only_where_the_phrase_is_and_changes_no_score(papers):
    parsed = search.parse("linear attention")
    ranked = Paper.objects.annotate(rank=search.relevance(parsed))
    sql, params = ranked.values("rank").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (VERBOSE) {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # The phrase's cover density pass sits behind the test of the phrase's positions.
    assert re.search(r"CASE WHEN \(\S*search_vector @@ '''linear'' <-> ''attent'''", plan)
    expected = _raw_relevance(parsed.rank_query, parsed.phrase_query)
    scores = dict(ranked.values_list("arxiv_id", "rank"))
    assert scores == pytest.approx(expected, abs=1e-6)
    assert scores[papers["phrase"].arxiv_id] > scores[papers["apart"].arxiv_id] > 0
