"""Search by meaning and by words and meaning (catalogue.hybrid): every filter honoured, why
each result matched, the mode and like parameters.

Papers get crafted vectors at a chosen cosine to the real embedding of the query, so the
geometry is known: decoys nearer than the papers a filter keeps, more of them than an HNSW
scan returns without iterative scanning.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalogue import embedder, hybrid, search, semantic
from catalogue.hybrid import MEANING, WORDS
from catalogue.models import Paper, PaperEmbedding, PaperTopic, Topic, in_sample

pytestmark = pytest.mark.django_db

GOLDEN = json.loads(
    (Path(__file__).parent.parent / "data" / "embeddings" / "minilm_golden.json").read_text()
)
_real_get_embedder = embedder.get_query_embedder

QUERY = "protein folding with graph networks"
DECOYS = 150  # more than the index's ef_search (100): a plain HNSW scan would return only them


@pytest.fixture(autouse=True)
def _fresh_index():
    """An empty HNSW graph per test (rolled-back tests leave their vectors in the graph)."""
    with connection.cursor() as cursor:
        cursor.execute("REINDEX INDEX embedding_hnsw")


@pytest.fixture(scope="module")
def query_vector() -> np.ndarray:
    return np.array(hybrid.query_vector(QUERY), dtype=np.float32)


def at_cosine(target: np.ndarray, cosine: float, rng) -> list[float]:
    """A unit vector at ``cosine`` to ``target``, otherwise in a random direction."""
    noise = rng.standard_normal(target.shape[0]).astype(np.float32)
    noise -= noise.dot(target) * target
    noise /= np.linalg.norm(noise)
    return (cosine * target + math.sqrt(1 - cosine**2) * noise).tolist()


def make_paper(key, title, vector=None, **fields) -> Paper:
    paper = Paper.objects.create(arxiv_id=key, title=title, abstract="", **fields)
    if vector is not None:
        PaperEmbedding.objects.create(paper=paper, vector=vector, model="test", text_hash="x")
    return paper


@pytest.fixture
def decoys_and_targets(query_vector):
    """DECOYS near the query (cosine 0.9) from 2020 without upvotes, hidden every third; five
    targets less near (cosine 0.5) from 2025 with upvotes, in a topic."""
    rng = np.random.default_rng(11)
    topic = Topic.objects.create(name="Proteins", slug="proteins", query="protein")
    for i in range(DECOYS):
        make_paper(
            f"2001.{i:05d}",
            f"Decoy {i}",
            at_cosine(query_vector, 0.9, rng),
            published_on=dt.date(2020, 1, 1),
            hidden=i % 3 == 0,
        )
    targets = []
    for i in range(5):
        paper = make_paper(
            f"2501.{i:05d}",
            f"Target {i}",
            at_cosine(query_vector, 0.5 - i / 100, rng),
            published_on=dt.date(2025, 6, 1),
            upvotes=7,
        )
        PaperTopic.objects.create(paper=paper, topic=topic)
        targets.append(paper)
    return targets


def api(client, **params) -> dict:
    response = client.get(reverse("api-papers"), {"page_size": 100, **params})
    assert response.status_code == 200, response.content
    return response.json()


def titles(answer: dict) -> list[str]:
    return [paper["title"] for paper in answer["results"]]


TARGETS = [f"Target {i}" for i in range(5)]


@pytest.mark.parametrize(
    "narrowing",
    [
        {"since": "2025-01-01"},
        {"until": "2025-12-31", "since": "2021-01-01"},
        {"min_upvotes": "1"},
        {"topic": "proteins"},
    ],
    ids=["since", "since-until", "min_upvotes", "topic"],
)
@pytest.mark.parametrize("mode", ["semantic", "hybrid"])
def test_search_by_meaning_honours_every_filter(client, decoys_and_targets, narrowing, mode):
    answer = api(client, q=QUERY, mode=mode, **narrowing)
    assert titles(answer) == TARGETS  # nearest first, none of the nearer decoys
    assert answer["count"] == 5
    assert all(paper["matched"] == [MEANING] for paper in answer["results"])


@pytest.mark.parametrize("exact", [False, True], ids=["hnsw", "measured-each"])
def test_papers_equally_near_come_newest_id_first_whatever_the_plan(query_vector, exact):
    """The same abstract listed twice (or any tie in distance): one order, as ``fuse``'s,
    whichever way the nearest papers were found."""
    rng = np.random.default_rng(5)
    same = at_cosine(query_vector, 0.8, rng)
    twins = [make_paper(f"2502.{i:05d}", f"Twin {i}", same) for i in range(4)]
    make_paper("2502.00009", "Nearer", at_cosine(query_vector, 0.9, rng))
    found = hybrid.neighbours(Paper.objects.all(), query_vector.tolist(), 10, exact=exact)
    assert [pk for pk, _ in found[1:]] == sorted((p.pk for p in twins), reverse=True)


def test_hidden_papers_are_never_found_by_meaning(client, decoys_and_targets):
    answer = api(client, q=QUERY, mode="semantic")
    found = set(titles(answer))
    hidden = {p.title for p in Paper.objects.filter(hidden=True)}
    assert hidden and not found & hidden
    assert len(found) == 100  # SEMANTIC_NEIGHBOURS of the visible papers


def test_keyword_mode_finds_only_the_words(client, decoys_and_targets):
    assert api(client, q=QUERY, mode="keyword")["count"] == 0
    assert titles(api(client, q="target", mode="keyword")) == [
        f"Target {i}"
        for i in reversed(range(5))  # equal relevance: newest id first
    ]


def test_hybrid_keeps_word_matches_first_and_says_why_each_matched(client, query_vector):
    rng = np.random.default_rng(3)
    both = "Protein folding with graph networks"
    words = "Graph networks for protein folding, a survey"
    make_paper("2502.00001", both, at_cosine(query_vector, 0.6, rng))
    make_paper("2502.00002", words, at_cosine(query_vector, 0.1, rng))
    make_paper("2502.00003", "Amino acid chains fold", at_cosine(query_vector, 0.8, rng))
    make_paper("2502.00004", "Unrelated words entirely", at_cosine(query_vector, 0.2, rng))
    answer = api(client, q=QUERY)  # hybrid is the default with q
    assert titles(answer)[0] == both  # the words, the phrase and close in meaning
    matched = {paper["title"]: paper["matched"] for paper in answer["results"]}
    assert matched == {both: [WORDS, MEANING], words: [WORDS], "Amino acid chains fold": [MEANING]}
    assert answer["count"] == 3  # not near enough in meaning: not a match


def test_hybrid_without_embeddings_is_keyword_search(client):
    make_paper("2503.00001", "Protein folding with graph networks")
    make_paper("2503.00002", "Something else")
    answer = api(client, q=QUERY)
    assert titles(answer) == ["Protein folding with graph networks"]
    assert answer["results"][0]["matched"] == [WORDS]


def test_more_like_this_lists_the_nearest_papers_but_not_the_paper_itself(client, query_vector):
    rng = np.random.default_rng(5)
    me = make_paper("2504.00001", "Me", query_vector.tolist(), published_on=dt.date(2025, 1, 1))
    make_paper("2504.00002", "Close", at_cosine(query_vector, 0.9, rng))
    make_paper("2504.00003", "Far", at_cosine(query_vector, 0.2, rng))
    make_paper("2504.00004", "Hidden", at_cosine(query_vector, 0.95, rng), hidden=True)
    answer = api(client, like=me.arxiv_id)
    assert titles(answer) == ["Close", "Far"]
    response = client.get(reverse("paper-list"), {"like": me.arxiv_id})
    assert response.status_code == 200
    assert [p.title for p in response.context["page"]] == ["Close", "Far"]


def test_unknown_mode_or_paper_is_a_form_error(client):
    assert client.get(reverse("paper-list"), {"q": "x", "mode": "psychic"}).status_code == 400
    response = client.get(reverse("api-papers"), {"like": "9999.99999"})
    assert response.status_code == 400
    assert "like" in response.json()["errors"]


def test_canonical_url_omits_the_default_mode(client):
    make_paper("2505.00001", "Graph networks")
    hybrid_page = client.get(reverse("paper-list"), {"q": "graph", "mode": "hybrid"})
    assert hybrid_page.context["canonical_query"] == "q=graph"
    keyword_page = client.get(reverse("paper-list"), {"q": "graph", "mode": "keyword"})
    assert keyword_page.context["canonical_query"] == "q=graph&mode=keyword"


def test_feed_of_a_search_by_meaning_lists_its_papers(client, decoys_and_targets):
    response = client.get(reverse("feed"), {"q": QUERY, "mode": "semantic", "since": "2025-01-01"})
    assert response.status_code == 200
    body = response.content.decode()
    assert all(title in body for title in TARGETS) and "Decoy" not in body


def test_fuse_keeps_keyword_order_and_appends_meaning_only_papers():
    keyword = [(1, 0.9), (2, 0.3)]
    meaning = [(3, 0.7), (1, 0.4)]
    ranking = hybrid.fuse(keyword, meaning, {1: 0.4, 2: 0.1}, weight=0.5)
    assert ranking.ids == [1, 2, 3]  # 1.0 + 0.2, 0.33 + 0.05, 0.35 × 0.5 ...
    assert ranking.reasons == {1: (WORDS, MEANING), 2: (WORDS,), 3: (MEANING,)}


@pytest.mark.parametrize("exact_below", [1, 100_000])
def test_search_by_meaning_before_any_embedding_is_an_empty_page(client, settings, exact_below):
    """Sampled (large catalogue) or exact summaries: no neighbours is 0 papers, not a 500."""
    settings.SUMMARY_EXACT_BELOW = exact_below
    make_paper("2506.00001", "Not embedded yet")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_paper")  # reltuples: what decides to sample
    for params in ({"q": QUERY, "mode": "semantic"}, {"like": "2506.00001"}):
        response = client.get(reverse("paper-list"), params)
        assert response.status_code == 200
        assert response.context["summary"].count == 0
        assert api(client, **params)["count"] == 0


def test_more_like_this_finds_its_paper_once(client, query_vector):
    me = make_paper("2507.00001", "Me", query_vector.tolist())
    make_paper("2507.00002", "Close", at_cosine(query_vector, 0.9, np.random.default_rng(2)))
    with CaptureQueriesContext(connection) as queries:
        assert titles(api(client, like=me.arxiv_id)) == ["Close"]
    by_arxiv_id = [q for q in queries if '"catalogue_paper"."arxiv_id" =' in q["sql"]]
    assert len(by_arxiv_id) == 1


def test_the_neighbours_reach_the_planner_as_one_array_it_does_not_unfold():
    """Hybrid matches are the words OR the neighbours' ids. As a constant list of up to 100
    ids in that OR, PostgreSQL's planner unfolds the list id by id while it proves which
    partial indexes (the summary sample's) apply: 4-5 ms of planning per search for 100
    neighbours. Read from an InitPlan, the array is no constant: the same papers, the ids
    still found through an index."""
    papers = [make_paper(f"2508.{i:05d}", f"Paper {i}") for i in range(120)]
    worded = make_paper("2508.99999", "Protein folding")
    neighbour_ids = [paper.pk for paper in papers[:100]]
    words = search.condition(search.parse("protein"))
    matches = hybrid.matches_of(Paper.objects.all(), words, neighbour_ids)
    assert set(matches.values_list("pk", flat=True)) == {*neighbour_ids, worded.pk}
    sql, params = matches.filter(in_sample()).values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # (a tiny table: use the indexes)
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "InitPlan" in plan and "'{" not in plan, plan


def test_cards_mark_the_words_where_a_paper_has_them_and_skip_headlines_where_not(
    client, query_vector
):
    """A paper found by meaning alone has no word to mark: its words are not looked for
    (``search.highlight``); its card shows the abstract's first words."""
    rng = np.random.default_rng(7)
    filler = " ".join(f"filler{i}" for i in range(80))
    worded = make_paper("2509.00001", "Protein folding", at_cosine(query_vector, 0.6, rng))
    Paper.objects.filter(pk=worded.pk).update(abstract=f"{filler} graph networks.")
    meant = make_paper("2509.00002", "Amino acid chains", at_cosine(query_vector, 0.8, rng))
    Paper.objects.filter(pk=meant.pk).update(abstract=filler)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("paper-list"), {"q": QUERY})
    cards = {paper.title: paper for paper in response.context["page"].object_list}
    assert "<mark>" in cards["Protein folding"].excerpt_html
    assert "<mark>" in cards["Protein folding"].title_html
    assert not cards["Amino acid chains"].excerpt_html  # the template's truncated abstract
    html = response.content.decode()
    assert "filler58 filler59 …" in html  # (60 words; an excerpt stops at ~45)
    headlines = [q["sql"] for q in queries if "regexp_matches" in q["sql"]]
    assert len(headlines) == 1  # still one statement for the page's cards


# --- what a query's embedding and its neighbours cost a second time ---------------------


@pytest.fixture
def no_model(monkeypatch):
    """From here on the process cannot embed: what it finds came from a cache."""

    def missing():
        raise embedder.ModelFilesMissing("no model in this test")

    hybrid._query_vector.cache_clear()
    monkeypatch.setattr(embedder, "get_query_embedder", missing)
    yield
    hybrid._query_vector.cache_clear()


def test_a_query_vector_is_the_models_memoised_and_ignores_spacing():
    hybrid._query_vector.cache_clear()
    first = hybrid.query_vector("diffusion distillation")
    golden = next(c for c in GOLDEN["cases"] if c["name"] == "query")
    assert golden["text"] == "diffusion distillation"
    # The query model is the paper model quantized (embedder.get_query_embedder): close to
    # sentence-transformers' vector, not equal to it.
    assert np.dot(first, golden["vector"]) > 0.98 and abs(np.linalg.norm(first) - 1) < 1e-5
    again = hybrid.query_vector("  diffusion   distillation ")
    assert again == first and hybrid._query_vector.cache_info().hits == 1
    again.append(0.0)  # the caller's copy: the memo is not changed
    assert len(hybrid.query_vector("diffusion distillation")) == 384


def test_another_process_reads_a_query_vector_from_redis(settings, no_model):
    """(Another process: this one's memo cleared, and no model to compute it with.)"""
    settings.QUERY_VECTOR_CACHE_SECONDS = 60
    cache.delete_many([_vector_key("graph networks, shared")])
    with _model_back():
        computed = hybrid.query_vector("graph networks, shared")
    hybrid._query_vector.cache_clear()
    assert hybrid.query_vector("graph networks, shared") == computed


def test_query_vectors_are_not_shared_when_turned_off(settings, no_model):
    settings.QUERY_VECTOR_CACHE_SECONDS = 0
    with _model_back():
        hybrid.query_vector("graph networks, unshared")
    hybrid._query_vector.cache_clear()
    assert cache.get(_vector_key("graph networks, unshared")) is None
    assert hybrid.query_vector("graph networks, unshared") is None  # no model, no cache


def test_without_the_model_a_search_finds_the_words(client, settings, no_model):
    settings.QUERY_VECTOR_CACHE_SECONDS = 0  # (nor from another process)
    make_paper("2509.00001", "Protein folding with graph networks", [1.0] + [0.0] * 383)
    answer = api(client, q=QUERY)
    assert titles(answer) == ["Protein folding with graph networks"]
    assert answer["results"][0]["matched"] == [WORDS]


def test_a_searchs_next_page_and_other_order_reuse_its_neighbours(
    client, settings, decoys_and_targets, monkeypatch
):
    """Neither the query's embedding nor the HNSW scan runs again for the same search's
    other pages or orders (the neighbours are cached like summaries)."""
    settings.SUMMARY_CACHE_SECONDS = 60
    first = api(client, q=QUERY, mode="semantic", page_size=50)
    hybrid._query_vector.cache_clear()
    monkeypatch.setattr(embedder, "get_query_embedder", _no_embedder)
    for params in ({"page": 2}, {"sort": "newest"}):
        with CaptureQueriesContext(connection) as queries:
            again = api(client, q=QUERY, mode="semantic", page_size=50, **params)
        assert not [q for q in queries.captured_queries if "<=>" in q["sql"]], params
        assert again["count"] == first["count"] == 100
    page_two = api(client, q=QUERY, mode="semantic", page_size=50, page=2)
    assert not {p["id"] for p in page_two["results"]} & {p["id"] for p in first["results"]}


def test_new_embeddings_are_a_new_catalogue_version(client, settings, query_vector):
    """A backfill writes embeddings, not papers: cached neighbours must not outlive it."""
    settings.SUMMARY_CACHE_SECONDS = 60
    near = make_paper("2510.00001", "Amino acid chains fold")
    assert api(client, q=QUERY, mode="semantic")["count"] == 0
    PaperEmbedding.objects.create(
        paper=near, vector=query_vector.tolist(), model="test", text_hash="x"
    )
    assert titles(api(client, q=QUERY, mode="semantic")) == ["Amino acid chains fold"]


def _vector_key(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"query-vector:{embedder.QUERY_MODEL_ID}:{digest}"


def _no_embedder():
    raise AssertionError("the query was embedded again")


@contextlib.contextmanager
def _model_back():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(embedder, "get_query_embedder", _real_get_embedder)
        yield


# --- a filter that keeps few papers: each one measured, not the index scanned ----------


@pytest.mark.parametrize(
    ("papers", "catalogue", "measured"),
    [
        (10_000, 1_000_000, True),  # a few months of a million papers
        (30_000, 1_000_000, True),  # measured: 24 ms scanned, 17 ms measured each
        (115_000, 1_000_000, False),  # measured: 9 ms scanned, 59 ms measured each
        (300_000, 1_000_000, False),
        (2_000, 100_000, True),
        (13_000, 100_000, True),  # measured: 12-17 ms scanned, 9 ms measured each
        (25_000, 100_000, False),  # measured: 9-11 ms scanned, 16 ms measured each
        (0, 100_000, True),
    ],
)
def test_measuring_each_paper_pays_where_a_filter_keeps_few(papers, catalogue, measured):
    assert hybrid.exact_scan_pays(papers, catalogue, 100) is measured


@pytest.mark.parametrize("mode", ["semantic", "hybrid"])
@pytest.mark.parametrize(
    ("narrowing", "measured"),
    [({"since": "2025-01-01"}, True), ({"min_upvotes": "1"}, False)],
    ids=["a-date-range", "no-date-range"],
)
def test_a_large_catalogues_few_months_are_measured_each(
    client, settings, decoys_and_targets, mode, narrowing, measured
):
    """The same nearest papers either way; with a date range that keeps few of a large
    catalogue's papers, found without the HNSW index (ordered by an expression of the
    distance, which the index cannot answer), the embeddings read by their own dates and
    their papers looked up after (``hybrid.nearest_measured``)."""
    settings.SUMMARY_EXACT_BELOW = 1
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_paper")  # reltuples: what says "large"
    with CaptureQueriesContext(connection) as queries:
        answer = api(client, q=QUERY, mode=mode, **narrowing)
    assert titles(answer) == TARGETS
    (nearest,) = [q["sql"] for q in queries.captured_queries if "<=>" in q["sql"]][:1]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + nearest)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    if measured:
        assert ' + 0.0 AS distance FROM "catalogue_paperembedding" WHERE' in nearest, nearest
        assert 'catalogue_paper"' not in nearest  # no paper joined while measuring
        assert "embedding_hnsw" not in plan, plan
    else:
        assert nearest.endswith(" ORDER BY 2 ASC LIMIT 100"), nearest[-200:]  # the index's


def _dated_papers(query_vector, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        make_paper(
            f"2102.{i:05d}",
            f"Dated {i}",
            at_cosine(query_vector, rng.uniform(0.1, 0.95), rng),
            published_on=dt.date(2019, 1, 1) + dt.timedelta(days=int(rng.integers(0, 1800))),
            hidden=i % 11 == 0,
        )


@pytest.mark.parametrize(
    "published",
    [
        (dt.date(2019, 5, 17), dt.date(2022, 2, 3)),
        (dt.date(2021, 3, 1), None),
        (None, dt.date(2020, 6, 30)),
        (dt.date(2030, 1, 1), dt.date(2030, 12, 31)),  # no paper at all
    ],
    ids=["both-ends", "since", "until", "empty"],
)
def test_the_nearest_measured_by_the_embeddings_dates_are_the_nearest(query_vector, published):
    """Measured by the embeddings' own dates, then looked up among the papers: the same
    papers in the same order as every paper of the range joined and measured."""
    _dated_papers(query_vector, 240, seed=7)
    first, last = published
    papers = Paper.objects.visible()
    if first:
        papers = papers.filter(published_on__gte=first)
    if last:
        papers = papers.filter(published_on__lte=last)
    vector = query_vector.tolist()
    joined = papers.order_by().nearest_to(vector, 20, exact=True, published=published)
    expected = list(joined.values_list("pk", "distance"))
    with CaptureQueriesContext(connection) as queries:
        measured = hybrid.nearest_measured(papers, vector, 20, published)
    assert [pk for pk, _ in measured] == [pk for pk, _ in expected]
    # Their papers looked up by one array of ids (planned in ~0.1 ms, an IN list in ~0.8).
    (lookup,) = [q["sql"] for q in queries.captured_queries if "<=>" not in q["sql"]]
    assert '"catalogue_paper"."id" = ANY((SELECT ' in lookup, lookup
    assert [d for _, d in measured] == pytest.approx([d for _, d in expected], abs=1e-3)


def test_where_other_filters_drop_the_nearest_every_paper_is_joined(query_vector):
    """A filter beside the dates that keeps few of the nearest embeddings (a topic's few
    papers): the nearest of those it keeps, not fewer than asked for."""
    _dated_papers(query_vector, 240, seed=9)
    topic = Topic.objects.create(name="Far", slug="far", query="far")
    far = Paper.objects.filter(title__startswith="Dated").order_by("pk")[::4]
    PaperTopic.objects.bulk_create(PaperTopic(paper=paper, topic=topic) for paper in far)
    published = (dt.date(2019, 1, 1), dt.date(2023, 12, 31))
    papers = Paper.objects.visible().filter(published_on__range=published, topic_links=topic)
    vector = query_vector.tolist()
    joined = papers.order_by().nearest_to(vector, 30, exact=True, published=published)
    expected = [pk for pk, _ in joined.values_list("pk", "distance")]
    assert len(expected) == 30
    with CaptureQueriesContext(connection) as queries:
        measured = hybrid.nearest_measured(papers, vector, 30, published)
    assert [pk for pk, _ in measured] == expected
    assert sum("<=>" in q["sql"] for q in queries.captured_queries) == 2  # measured, then joined


def _index_scan(statement: str) -> str:
    """The HNSW index scan's node of ``statement``'s plan, its filter included (the index
    forced: a test catalogue is small enough to sort whole)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("EXPLAIN " + statement)
        plan = [row[0] for row in cursor.fetchall()]
        cursor.execute("RESET enable_seqscan; RESET enable_sort")
    (start,) = [i for i, line in enumerate(plan) if "Index Scan using embedding_hnsw" in line]
    node = [plan[start]]
    node += itertools.takewhile(lambda line: "->" not in line, plan[start + 1 :])
    return "\n".join(node)


@pytest.mark.parametrize(
    ("narrowing", "dated"),
    [
        ({"since": "2025-01-01"}, True),
        ({"since": "2021-01-01", "until": "2025-12-31"}, True),
        ({"min_upvotes": "1"}, False),
    ],
    ids=["since", "since-until", "no-date-range"],
)
@pytest.mark.parametrize("mode", ["semantic", "hybrid"])
def test_a_date_ranged_scan_tests_the_date_on_the_entries_it_is_handed(
    client, decoys_and_targets, narrowing, dated, mode
):
    """The HNSW scan of a date range drops the entries of other dates on the embedding's copy
    of the date (``PaperEmbedding.published_on``), before looking up their papers: the
    decoys, nearer and out of range, are never joined. Other filters stay the papers'."""
    with CaptureQueriesContext(connection) as queries:
        answer = api(client, q=QUERY, mode=mode, **narrowing)
    assert titles(answer) == TARGETS
    statements = [q["sql"] for q in queries.captured_queries]
    (nearest,) = [sql for sql in statements if "<=>" in sql and " ORDER BY " in sql]
    scan = _index_scan(nearest)
    assert ("published_on >= '2025-01-01'" in scan or "published_on >= '2021-01-01'" in scan) is (
        dated
    ), scan
    assert ("published_on <= '2025-12-31'" in scan) is ("until" in narrowing), scan


def test_similarities_written_as_sql_are_the_orms(query_vector):
    """``hybrid.similarities`` against the ORM's CosineDistance of the same papers; a paper
    without an embedding is left out."""
    from pgvector.django import CosineDistance

    rng = np.random.default_rng(7)
    near = make_paper("near", "Near", at_cosine(query_vector, 0.8, rng))
    far = make_paper("far", "Far", at_cosine(query_vector, 0.1, rng))
    bare = make_paper("bare", "No embedding yet")
    ours = hybrid.similarities([near.pk, far.pk, bare.pk], query_vector.tolist())
    rows = PaperEmbedding.objects.filter(paper_id__in=[near.pk, far.pk, bare.pk]).annotate(
        distance=CosineDistance("vector", query_vector.tolist())
    )
    orms = {pk: 1.0 - distance for pk, distance in rows.values_list("paper_id", "distance")}
    assert ours == orms and set(ours) == {near.pk, far.pk}
    assert ours[near.pk] == pytest.approx(0.8, abs=0.01)
    assert hybrid.similarities([], query_vector.tolist()) == {}


# --- a date range's nearest papers, year by year ------------------------------------------


def _spread(per_year: dict[int, int]):
    """``papers_between`` of a catalogue whose years hold ``per_year`` papers, spread evenly
    over their days."""

    def papers_between(first: dt.date, last: dt.date) -> int:
        total = 0.0
        for year, papers in per_year.items():
            start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
            low, high = max(first, start), min(last, end)
            if low <= high:
                total += papers * ((high - low).days + 1) / ((end - start).days + 1)
        return round(total)

    return papers_between


MILLION = {year: 20_000 + 4_000 * (year - 2007) for year in range(2007, 2027)}


def test_a_few_years_of_a_large_catalogue_are_searched_year_by_year():
    between = _spread(MILLION)
    catalogue = between(dt.date(2007, 1, 1), dt.date(2026, 12, 31))
    parts = hybrid.by_year(dt.date(2011, 8, 21), dt.date(2013, 1, 9), between, catalogue, 100)
    assert parts == [
        hybrid.YearPart(dt.date(2011, 8, 21), dt.date(2011, 12, 31), exact=False),
        hybrid.YearPart(dt.date(2012, 1, 1), dt.date(2012, 12, 31), exact=False),
        # Nine days of a year: its papers measured, not its index scanned for them.
        hybrid.YearPart(dt.date(2013, 1, 1), dt.date(2013, 1, 9), exact=True),
    ]


@pytest.mark.parametrize(
    ("first", "last"),
    [
        (dt.date(2008, 1, 1), dt.date(2026, 12, 31)),  # most of the catalogue: one scan
        (dt.date(2020, 3, 1), dt.date(2020, 3, 20)),  # a few days: measured each at once
        (dt.date(1985, 1, 1), dt.date(1992, 12, 31)),  # a year without an index of its own
    ],
)
def test_other_ranges_are_searched_whole(first, last):
    between = _spread(MILLION | {1985: 10, 1986: 10})
    catalogue = between(dt.date(1985, 1, 1), dt.date(2026, 12, 31))
    assert hybrid.by_year(first, last, between, catalogue, 100) is None


def test_every_indexed_year_has_its_index():
    """The migration's years (0026) are the code's (``semantic.INDEXED_YEARS``), each index
    holding its year's embeddings only."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s"
            " AND indexname LIKE 'embedding\\_hnsw\\_%%'",
            ["catalogue_paperembedding"],
        )
        indexes = dict(cursor.fetchall())
    assert set(indexes) == {f"embedding_hnsw_{year}" for year in semantic.INDEXED_YEARS}
    assert "'2024-01-01'::date" in indexes["embedding_hnsw_2023"]
    assert "'2025-01-01'::date" in indexes["embedding_hnsw_2024"]
    assert all("USING hnsw (vector halfvec_cosine_ops)" in d for d in indexes.values())


def test_the_nearest_papers_year_by_year_are_the_nearest(query_vector):
    """Each year's index scanned (or its papers measured), the nearest of all: the same
    papers as every paper of the range measured, in the same order; the scanned years read
    through their own indexes."""
    rng = np.random.default_rng(5)
    for i in range(240):
        make_paper(
            f"2101.{i:05d}",
            f"Paper {i}",
            at_cosine(query_vector, rng.uniform(0.1, 0.95), rng),
            published_on=dt.date(2019, 1, 1) + dt.timedelta(days=int(rng.integers(0, 1800))),
        )
    with connection.cursor() as cursor:
        cursor.execute("REINDEX TABLE catalogue_paperembedding")  # no rolled-back entries
    first, last = dt.date(2019, 5, 17), dt.date(2022, 2, 3)
    papers = Paper.objects.visible().filter(published_on__range=(first, last))
    parts = [
        hybrid.YearPart(first, dt.date(2019, 12, 31), exact=True),
        hybrid.YearPart(dt.date(2020, 1, 1), dt.date(2020, 12, 31), exact=False),
        hybrid.YearPart(dt.date(2021, 1, 1), dt.date(2021, 12, 31), exact=False),
        hybrid.YearPart(dt.date(2022, 1, 1), last, exact=False),
    ]
    vector = query_vector.tolist()
    measured = hybrid.neighbours(papers, vector, 20, exact=True, published=(first, last))
    with CaptureQueriesContext(connection) as queries:
        by_year = hybrid.neighbours(papers, vector, 20, published=(first, last), years=parts)
    assert [pk for pk, _ in by_year] == [pk for pk, _ in measured]
    assert [s for _, s in by_year] == pytest.approx([s for _, s in measured], abs=1e-3)
    (statement,) = [q["sql"] for q in queries.captured_queries if "<=>" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("EXPLAIN " + statement)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    for year in (2020, 2021, 2022):
        assert f"embedding_hnsw_{year} " in plan, plan
    assert "embedding_hnsw_2019" not in plan


@pytest.mark.parametrize("mode", ["semantic", "hybrid"])
def test_a_large_catalogues_few_years_are_searched_year_by_year(
    client, settings, decoys_and_targets, monkeypatch, mode
):
    """A page of a date range with both ends, in a large catalogue, whose years cost less one
    by one (``hybrid.by_year``, its estimate made to say so): the same papers, found through
    the years' own indexes; a range open at an end is searched whole."""
    settings.SUMMARY_EXACT_BELOW = 1
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_paper")  # reltuples: what says "large"
        cursor.execute("REINDEX TABLE catalogue_paperembedding")
    asked = []

    def by_year(first, last, papers_between, catalogue, limit):
        asked.append((first, last))
        return [
            hybrid.YearPart(first, dt.date(2024, 12, 31), exact=True),
            hybrid.YearPart(dt.date(2025, 1, 1), last, exact=False),
        ]

    monkeypatch.setattr(hybrid, "by_year", by_year)
    for narrowing, by_years in [
        ({"since": "2021-01-01", "until": "2025-12-31"}, True),
        ({"since": "2021-01-01"}, False),
    ]:
        with CaptureQueriesContext(connection) as queries:
            answer = api(client, q=QUERY, mode=mode, **narrowing)
        assert titles(answer) == TARGETS
        nearest = [q["sql"] for q in queries.captured_queries if "<=>" in q["sql"]][0]
        assert ("UNION ALL" in nearest) is by_years, nearest[:300]
    assert asked == [(dt.date(2021, 1, 1), dt.date(2025, 12, 31))]
