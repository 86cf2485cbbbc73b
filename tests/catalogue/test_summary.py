"""Counts and facets of huge result sets: estimated from a sample, cached; bounded ranking."""

import datetime as dt
import time

import pytest
from django.db import ProgrammingError, connection, transaction
from django.db.models import CharField, IntegerField
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncMonth
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from catalogue import search, summary
from catalogue.models import Paper, PaperTopic, Topic

pytestmark = pytest.mark.django_db

START = dt.date(2024, 1, 1)


@pytest.fixture
def corpus():
    """120 papers, one a day; every third mentions attention; half are in a topic."""
    topic = Topic.objects.create(name="Attention", slug="attention", query="attention")
    papers = [
        Paper(
            arxiv_id=f"2401.{i:05d}",
            title=f"Paper {i}" + (" on attention" if i % 3 == 0 else ""),
            abstract="We study models." + (" Attention helps." if i % 3 == 0 else ""),
            published_on=START + dt.timedelta(days=i),
        )
        for i in range(120)
    ]
    Paper.objects.bulk_create(papers)
    PaperTopic.objects.bulk_create(
        PaperTopic(paper=p, topic=topic) for p in Paper.objects.all() if "attention" in p.title
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalogue_paper")  # reltuples: what the sample is sized by
    return papers


@pytest.fixture
def sample_every(monkeypatch):
    """Set the sample to 1 in ``n`` papers (the default, 50, would miss most of 120)."""
    return lambda n: monkeypatch.setattr(summary, "sample_every", n)


@pytest.fixture
def sample_everything(settings, sample_every):
    """A sample as large as the table: the estimate must then equal the exact figures."""

    def sample(min_hits=1):
        settings.SUMMARY_EXACT_BELOW = 1
        settings.SUMMARY_MIN_SAMPLE_HITS = min_hits
        sample_every(1)

    return sample


def test_small_catalogues_get_exact_figures(corpus):
    result = summary.summarise(Paper.objects.search("attention"))
    assert result.exact
    assert result.count == 40
    assert result.topics == [{"slug": "attention", "name": "Attention", "n": 40}]
    assert sum(result.per_month.values()) == 40
    assert result.per_month[dt.date(2024, 1, 1)] == 11  # days 0, 3, …, 30


def test_large_catalogues_get_figures_scaled_from_a_sample(corpus, sample_everything):
    sample_everything()
    result = summary.summarise(Paper.objects.search("attention"))
    assert not result.exact
    assert result.count == 40  # a 100 % sample scales by 1
    assert result.per_month[dt.date(2024, 1, 1)] == 11
    assert result.topics[0]["n"] == 40


def test_sampled_topic_facets_equal_the_exact_ones_for_a_full_sample(corpus, sample_everything):
    models_topic = Topic.objects.create(name="Models", slug="models", query="models")
    pinned = Topic.objects.create(name="Pinned", slug="pinned", query="nothing")
    for i, paper in enumerate(Paper.objects.order_by("id")):
        if i % 2:
            PaperTopic.objects.create(paper=paper, topic=models_topic)
        if i % 5 == 0:
            reason = PaperTopic.Reason.PINNED if i % 10 else PaperTopic.Reason.EXCLUDED
            PaperTopic.objects.create(paper=paper, topic=pinned, reason=reason)
    matches = Paper.objects.search("models")
    exact = summary.summarise(matches)
    sample_everything()
    sampled = summary.summarise(matches)
    assert not sampled.exact and exact.exact
    assert sampled.topics == exact.topics
    assert [t["slug"] for t in exact.topics] == ["models", "attention", "pinned"]


def _reads_links(queries) -> bool:
    return any("catalogue_papertopic" in q["sql"] for q in queries.captured_queries)


def test_the_sample_topic_links_are_read_once_for_every_query(corpus, settings, sample_everything):
    """Kept in the process, whatever the summaries' cache says, until the catalogue changes
    or SAMPLE_CACHE_SECONDS pass."""
    sample_everything()
    settings.SAMPLE_CACHE_SECONDS = 60
    summary.summarise(Paper.objects.search("attention"))
    with CaptureQueriesContext(connection) as queries:
        other = summary.summarise(Paper.objects.search("models"))
    assert other.topics == [{"slug": "attention", "name": "Attention", "n": 40}]
    assert not _reads_links(queries)
    Paper.objects.filter(pk=Paper.objects.search("attention").first().pk).update(
        updated_at=timezone.now()
    )
    with CaptureQueriesContext(connection) as queries:
        summary.summarise(Paper.objects.search("models"))
    assert _reads_links(queries)  # a new version of the catalogue


def test_the_sample_topic_links_are_read_again_after_their_time(
    corpus, settings, sample_everything, monkeypatch
):
    """A curator's change to a topic's papers does not change the catalogue's version."""
    sample_everything()
    settings.SAMPLE_CACHE_SECONDS = 60
    summary.summarise(Paper.objects.search("attention"))
    later = time.monotonic() + 61
    monkeypatch.setattr(summary.time, "monotonic", lambda: later)
    with CaptureQueriesContext(connection) as queries:
        summary.summarise(Paper.objects.search("models"))
    assert _reads_links(queries)
    settings.SAMPLE_CACHE_SECONDS = 0
    with CaptureQueriesContext(connection) as queries:
        summary.summarise(Paper.objects.search("models"))
    assert _reads_links(queries)


def test_a_sample_with_too_few_matches_falls_back_to_counting(corpus, sample_everything):
    sample_everything(min_hits=41)
    with CaptureQueriesContext(connection) as queries:
        result = summary.summarise(Paper.objects.search("attention"))
    assert result.exact and result.count == 40
    assert result.topics == [{"slug": "attention", "name": "Attention", "n": 40}]
    assert result.per_month[dt.date(2024, 1, 1)] == 11
    # The matches are read twice in one statement: the sample's, then (the sample finding
    # too few) all of them for every figure (the facets count the topic links of their ids
    # instead of testing the query again).
    assert len([q for q in queries.captured_queries if "@@" in q["sql"]]) == 1


def test_a_sample_with_enough_matches_skips_the_pass_over_every_match(corpus, settings):
    """The pass over every match is in the sample's statement, gated by the sample's hits:
    PostgreSQL runs it only when the sample finds too few."""
    matches = Paper.objects.search("attention").order_by()
    sampled = len([p for p in matches if p.pk % 2 == 0])
    settings.SUMMARY_MIN_SAMPLE_HITS = sampled
    months, every = summary._sampled_ids_by_month(matches, 2)
    assert every is None and sum(len(month.ids) for month in months.values()) == sampled
    assert all(pk % 2 == 0 for month in months.values() for pk in month.ids)
    settings.SUMMARY_MIN_SAMPLE_HITS = sampled + 1
    months, every = summary._sampled_ids_by_month(matches, 2)
    assert sum(len(month.ids) for month in every.values()) == 40


def test_a_partial_sample_scales_up(corpus, settings, sample_every):
    settings.SUMMARY_EXACT_BELOW = 1
    settings.SUMMARY_MIN_SAMPLE_HITS = 1
    sample_every(2)
    sampled_ids = [p.pk for p in Paper.objects.search("attention") if p.pk % 2 == 0]
    result = summary.summarise(Paper.objects.search("attention"))
    assert not result.exact
    assert result.count == 2 * len(sampled_ids)  # the sampled matches, scaled by 2
    assert len(sampled_ids) == 20  # every other one of 40 (ids are consecutive)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.4, 0), (7, 7), (42, 42), (123, 120), (755_123, 760_000), (1_049_999, 1_000_000)],
)
def test_estimates_keep_two_significant_digits(value, shown):
    assert summary._about(value) == shown


def test_the_list_page_says_about_for_estimates(client, corpus, sample_everything):
    sample_everything()
    html = client.get(reverse("paper-list"), {"q": "attention"}).content.decode()
    assert "about</span> <strong>40</strong> papers" in html
    assert "≈40" in html  # the topic and year facets


def test_the_api_flags_estimated_counts(client, corpus, sample_everything):
    sample_everything()
    body = client.get(reverse("api-papers"), {"q": "attention"}).json()
    assert body["count"] == 40 and body["count_is_estimate"] is True


def test_summaries_are_cached_until_a_paper_changes(client, corpus, settings):
    settings.SUMMARY_CACHE_SECONDS = 60
    url = reverse("paper-list")
    params = {"q": "attention", "since": "2024-01-02"}  # a query no other test caches
    first = client.get(url, params)
    with CaptureQueriesContext(connection) as queries:
        second = client.get(url, params)
    assert second.context["summary"].count == first.context["summary"].count == 39
    assert not [q for q in queries.captured_queries if "DATE_TRUNC" in q["sql"]]
    # Hiding a paper (as the admin's action does) changes updated_at: the count follows.
    paper = Paper.objects.get(arxiv_id="2401.00003")
    paper.hidden = True
    paper.save()
    assert client.get(url, params).context["summary"].count == 38


def test_relevance_ranks_only_the_newest_candidates(client, corpus, settings):
    settings.SEARCH_RANK_CANDIDATES = 5
    # The oldest match is by far the most relevant: it is not among the 5 newest.
    Paper.objects.filter(arxiv_id="2401.00000").update(
        title="Attention attention attention", abstract="Attention, attention."
    )
    response = client.get(reverse("paper-list"), {"q": "attention"})
    page = response.context["page"]
    newest = [f"2401.{i:05d}" for i in (117, 114, 111, 108, 105)]
    assert sorted(p.arxiv_id for p in page.object_list) == sorted(newest)
    assert page.paginator.count == 5
    html = response.content.decode()
    assert "Ranked by relevance among the 5 newest matches" in html
    # Within the candidates, rank decides: make the oldest candidate the most relevant.
    Paper.objects.filter(arxiv_id="2401.00105").update(title="Attention attention attention")
    page = client.get(reverse("paper-list"), {"q": "attention"}).context["page"]
    assert page.object_list[0].arxiv_id == "2401.00105"
    # Sorting by date reaches every match.
    newest_sort = client.get(reverse("paper-list"), {"q": "attention", "sort": "newest"})
    assert newest_sort.context["page"].paginator.count == 40


def test_other_orders_page_through_the_first_results_only(client, corpus, settings):
    settings.LIST_MAX_RESULTS = 30
    response = client.get(reverse("paper-list"), {"page": 2})
    page = response.context["page"]
    assert page.paginator.num_pages == 2 and len(page.object_list) == 5
    assert response.context["summary"].count == 120
    assert "Pages show the first 30 papers" in response.content.decode()
    # A page past the reachable ones is a 400 saying so (tests/catalogue/test_deep_pages.py).
    assert client.get(reverse("paper-list"), {"page": 9}).status_code == 400


def test_a_relevance_ranking_is_cached_until_a_paper_changes(client, corpus, settings):
    settings.SUMMARY_CACHE_SECONDS = 60
    params = {"q": "attention", "until": "2024-04-01"}  # a query no other test caches
    first = client.get(reverse("paper-list"), params).context["page"]
    with CaptureQueriesContext(connection) as queries:
        second = client.get(reverse("paper-list"), params).context["page"]
    assert [p.pk for p in second.object_list] == [p.pk for p in first.object_list]
    assert not [q for q in queries.captured_queries if "ts_rank" in q["sql"]]
    # A paper's new title ranks it first at once: the change starts a new cache key.
    paper = Paper.objects.get(arxiv_id="2401.00042")
    paper.title = "Attention attention attention"
    paper.save()
    third = client.get(reverse("paper-list"), params).context["page"]
    assert third.object_list[0].arxiv_id == "2401.00042"


def test_zero_cache_seconds_ignores_what_is_cached(client, corpus, settings):
    settings.SUMMARY_CACHE_SECONDS = 60
    params = {"q": "attention", "until": "2024-03-01"}  # a query no other test caches
    assert client.get(reverse("paper-list"), params).context["summary"].count == 21
    # An update that leaves updated_at alone keeps the cache key: only turning caching off
    # (as the benchmark does to time a new query's SQL) shows it.
    Paper.objects.filter(arxiv_id="2401.00003").update(hidden=True)
    settings.SUMMARY_CACHE_SECONDS = 0
    assert client.get(reverse("paper-list"), params).context["summary"].count == 20


@pytest.fixture
def sample_pass_plans():
    """The plans PostgreSQL chooses for the sample passes run meanwhile (EXPLAINed in place,
    with the statement's own settings)."""
    plans = []

    def explain(execute, sql, params, many, context):
        if "MOD(" in sql and '"catalogue_paper"."published_on"' in sql:
            cursor = context["connection"].connection.cursor()  # raw: not wrapped again
            sets, select, resets = _parts(sql)
            cursor.execute("SET LOCAL enable_seqscan = off")  # 120 papers: a scan is cheaper
            for statement in sets:
                cursor.execute(statement)
            cursor.execute(f"EXPLAIN {select}", params)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
            for statement in ["RESET enable_seqscan", *resets]:
                cursor.execute(statement)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(explain):
        yield plans


@pytest.mark.parametrize(
    ("matches", "text"),
    [
        (lambda: Paper.objects.visible().search("attention"), True),
        (lambda: Paper.objects.visible().matching('author:"Ada"'), True),
        (lambda: Paper.objects.visible().with_min_upvotes(0), False),
    ],
)
def test_the_sample_pass_reads_the_sample_indexes(
    corpus, settings, matches, text, sample_pass_plans
):
    """What keeps a new query fast at a million papers: its sampled matches come from an
    index of the 2 % sample (``paper_sample_*``), not from probing the whole table. The
    condition must be written as the indexes' own, or PostgreSQL cannot prove they apply.
    A search is never a plain index scan testing each sampled paper's vector (which at
    scale PostgreSQL prefers to the GIN index, and which is 5x slower)."""
    settings.SUMMARY_EXACT_BELOW = 1
    summary.summarise(matches())
    [plan] = sample_pass_plans
    assert "paper_sample_" in plan
    if text:  # a bitmap scan ("Bitmap Index Scan on"), never "Index Scan using"
        assert "Index Scan using" not in plan


@pytest.mark.parametrize(("matches", "bitmaps"), [(None, "on"), (5, "on"), (40, "off")])
def test_a_ranking_of_many_matches_walks_the_date_index(corpus, settings, matches, bitmaps):
    """Common words and phrases: the newest candidates come from walking the date index,
    never from testing every match and sorting (PostgreSQL may prefer that, thinking tests
    free: 0.6 s for a common phrase at 100,000 papers). Few matches keep the GIN index."""
    settings.SEARCH_RANK_CANDIDATES = 5  # 120 papers: 40 matches are "many" (40² x 10 > 5 x 120)
    seen = []

    def record_setting(execute, sql, params, many, context):
        if "ts_rank" in sql:  # the setting as the statement's own SETs leave it
            cursor = context["connection"].connection.cursor()
            sets, _, resets = _parts(sql)
            for statement in sets:
                cursor.execute(statement)
            seen.append(cursor.execute("SHOW enable_bitmapscan").fetchone()[0])
            for statement in resets:
                cursor.execute(statement)
        return execute(sql, params, many, context)

    ranked = Paper.objects.search("attention").by_relevance(settings.SEARCH_RANK_CANDIDATES)
    with connection.execute_wrapper(record_setting):
        ranking = summary.cached_ranking(ranked, matches, lambda rows: rows)
    assert seen == [bitmaps]
    assert len(ranking) == 5
    with connection.cursor() as cursor:  # and the setting does not outlive the statement
        cursor.execute("SHOW enable_bitmapscan")
        assert cursor.fetchone()[0] == "on"


def _parts(sql: str) -> tuple[list[str], str, list[str]]:
    """A statement of ``summary.rows_without``: (its SETs, its SELECT, its RESETs)."""
    statements = sql.split("; ")
    sets = [s for s in statements if s.startswith("SET LOCAL ")]
    resets = [s for s in statements if s.startswith("RESET ")]
    [select] = [s for s in statements if s not in sets and s not in resets]
    return sets, select, resets


def _current(setting: str):
    """Papers' ids with the value ``setting`` has while the statement reading them runs."""
    value = RawSQL("current_setting(%s)", [setting], output_field=CharField())
    return Paper.objects.annotate(value=value).values_list("pk", "value")


def _show(setting: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {setting}")
        return cursor.fetchone()[0]


def test_a_planner_setting_holds_for_its_statement_only_in_a_transaction(corpus):
    rows = summary.rows_without(_current("enable_bitmapscan"), "enable_bitmapscan")
    assert len(rows) == 120 and {value for _, value in rows} == {"off"}
    assert _show("enable_bitmapscan") == "on"  # the transaction goes on without it


@pytest.mark.django_db(transaction=True)
def test_a_planner_setting_holds_for_its_statement_only_without_a_transaction():
    Paper.objects.create(arxiv_id="2401.00001", title="A paper")
    assert connection.get_autocommit() and not connection.in_atomic_block
    with CaptureQueriesContext(connection) as queries:
        rows = summary.rows_without(_current("enable_seqscan"), "enable_seqscan")
    assert [value for _, value in rows] == ["off"]
    assert len(queries.captured_queries) == 1  # one round trip: no BEGIN, SAVEPOINT, RESET
    assert _show("enable_seqscan") == "on"


def test_rows_without_planner_settings_are_the_querysets_own_rows(corpus):
    rows = Paper.objects.annotate(month=TruncMonth("published_on")).values_list("pk", "month")
    assert summary.rows_without(rows.order_by("pk")) == list(rows.order_by("pk"))
    assert isinstance(summary.rows_without(rows)[0][1], dt.date)  # converted as the ORM does


def test_a_statement_failing_under_a_planner_setting_raises_its_own_error():
    failing = Paper.objects.annotate(
        x=RawSQL("(SELECT 1 FROM no_such_table)", [], output_field=IntegerField())
    ).values_list("x")
    with pytest.raises(ProgrammingError, match="no_such_table"), transaction.atomic():
        summary.rows_without(failing, "enable_bitmapscan")
    assert _show("enable_bitmapscan") == "on"  # the setting went with the rollback


@pytest.mark.parametrize("text", ["attention", "attention models", '"attention helps"'])
@pytest.mark.parametrize("candidates", [5, 30, 1000])
def test_ranking_candidates_as_they_are_found_gives_the_two_pass_ranking(corpus, text, candidates):
    parsed = search.parse(text)
    ranked = Paper.objects.search(text)

    def ranking(rank_in_scan: bool):
        rows = ranked.by_relevance(candidates, parsed.title_query, rank_in_scan=rank_in_scan)
        return list(rows.values_list("pk", "rank"))

    in_scan, two_pass = ranking(True), ranking(False)
    assert [pk for pk, _ in in_scan] == [pk for pk, _ in two_pass]
    assert [rank for _, rank in in_scan] == pytest.approx([rank for _, rank in two_pass])
    assert len(in_scan) == min(candidates, 40) > 0


@pytest.mark.parametrize(
    ("matches", "walk", "in_scan"),
    [
        (None, None, False),  # unknown: the pass may meet every match
        (5, None, True),  # every match a candidate
        (15, 1000, True),  # three times the candidates: each ranked as the pass finds it
        (16, 1000, False),  # more, and a long walk: the newest 5 found, then ranked by id
        (400, 1000, True),  # a walk shorter than reading every match: ranked as walked
    ],
)
def test_candidates_are_ranked_as_found_up_to_a_few_times_their_number(
    settings, matches, walk, in_scan
):
    settings.SEARCH_RANK_CANDIDATES = 5
    reach = summary.Reach(walk=walk) if walk else None
    assert summary.ranks_in_scan(matches, reach) is in_scan


@pytest.mark.parametrize("matches", [None, 5, 6, 7, 8, 40])
def test_the_date_index_is_walked_where_the_matches_are_dense_enough(corpus, settings, matches):
    """With 5 candidates among 120 papers: up to 5 matches are all candidates; 6 or 7 come
    from the GIN index, all of them (6² x 10 <= 5 x 120); from 8 on the date index is walked
    until 5 match."""
    settings.SEARCH_RANK_CANDIDATES = 5
    assert summary.walks_date_index(matches) is (matches is not None and matches >= 8)


def test_topic_facets_of_ids_written_as_sql_are_the_orms(corpus):
    """``summary.facets_of`` against ``_topics`` of the same ids: counts, the shown reasons
    only, most papers first, then by name, at most FACET_TOPICS."""
    many = Topic.objects.create(name="Models", slug="models", query="models")
    tie = Topic.objects.create(name="Aardvarks", slug="aardvarks", query="aardvarks")
    hidden = Topic.objects.create(name="Hidden", slug="hidden", query="hidden")
    papers = list(Paper.objects.order_by("pk"))
    reason = PaperTopic.Reason
    PaperTopic.objects.bulk_create(
        [PaperTopic(paper=p, topic=many, reason=reason.PINNED) for p in papers[:90]]
        + [PaperTopic(paper=p, topic=tie) for p in papers[:40:3]]
        + [PaperTopic(paper=p, topic=hidden, reason=reason.EXCLUDED) for p in papers[:100]]
    )
    extra = [Topic(name=f"Topic {n:02d}", slug=f"topic-{n:02d}", query="x") for n in range(14)]
    Topic.objects.bulk_create(extra)
    PaperTopic.objects.bulk_create(
        PaperTopic(paper=p, topic=t)
        for t in Topic.objects.filter(slug__startswith="topic-")
        for p in papers[:2]
    )
    for ids in ([p.pk for p in papers[:60]], [p.pk for p in papers[::7]], [papers[0].pk], []):
        links = PaperTopic.objects.filter(summary.of_ids(ids or [0], "paper_id"))
        assert summary.facets_of(ids) == summary._topics(links), ids
    first = summary.facets_of([p.pk for p in papers])
    assert len(first) == summary.FACET_TOPICS and first[0]["slug"] == "models"
    assert "hidden" not in {t["slug"] for t in first}


def test_topic_facets_hand_the_ids_to_the_planner_as_an_array_it_does_not_unfold(corpus):
    """A constant array of a few thousand ids is estimated element by element while the
    facets' statement is planned (as long as executing it); from an InitPlan it is not, and
    the links are still found through an index."""
    ids = list(Paper.objects.values_list("pk", flat=True))
    with CaptureQueriesContext(connection) as queries:
        summary.facets_of(ids)
    (statement,) = [q["sql"] for q in queries if "catalogue_papertopic" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # (a tiny table: use the indexes)
        cursor.execute("EXPLAIN " + statement)
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "paper_id = ANY ((InitPlan" in plan and "::bigint[]" not in plan, plan
    assert "Index" in plan, plan
