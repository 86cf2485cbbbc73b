"""The catalogue's data: papers and the QuerySet methods that hold query logic."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import Func, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import MD5, Concat, Mod
from django.db.models.lookups import Exact
from django.urls.converters import SlugConverter
from pgvector.django import CosineDistance, HalfVectorField, HnswIndex

from catalogue import provenance, search
from catalogue.converters import PaperSlugConverter
from catalogue.paths import slug_path, slug_paths

# Title words count more than abstract words: weights A and B in one stored vector.
SEARCH_VECTOR = SearchVector("title", weight="A", config=search.CONFIG) + SearchVector(
    "abstract", weight="B", config=search.CONFIG
)
# Author names as written ("simple": lower-cased, not stemmed), for author: searches.
AUTHOR_VECTOR = SearchVector(
    Func("authors", function="catalogue_authors_text", output_field=models.TextField()),
    config=search.AUTHOR_CONFIG,
)


# Counts and facets of huge result sets are estimated from a fixed, systematic sample: every
# SAMPLE_EVERY-th paper by id (2 %: 20,000 papers of a million). Ids follow ingest order, not
# content, so the sample is as varied as the catalogue; partial indexes hold just the sample,
# so a query reads its sampled matches from an index 1/50 the size (see catalogue.summary).
# Changing it needs a migration of those indexes.
SAMPLE_EVERY = 50


# Similar papers by title words (``similar_to``): words in at most this share of titles,
# and in at most so many papers, anchor the candidates; at most so many papers sharing an
# anchor and another word, and so many sharing an anchor alone, are ranked (each costs a read
# of its row and a ts_rank). The title index reads every title holding an anchor, whatever
# the caps: 5 % of a million papers cost 70-130 ms, 5,000 papers 10-20.
SIMILAR_ANCHOR_SHARE = 0.05
SIMILAR_ANCHOR_PAPERS = 5_000
SIMILAR_CANDIDATES = (500, 100)


def similarity_anchors(words: list[tuple[str, float]], titles: int) -> list[str]:
    """The rarest of a title's words (``words``: (term, share of titles), rarest first) that
    together are in at most SIMILAR_ANCHOR_SHARE of ``titles`` titles and in at most
    SIMILAR_ANCHOR_PAPERS of them; the rarest one always (``titles``: 0 when not known).

    The share alone let anchors cover 45,000 titles of a million: the title index then
    tested each of them against the title's other words, 70-130 ms a paper page."""
    cap = SIMILAR_ANCHOR_SHARE
    if titles > 0:
        cap = min(cap, SIMILAR_ANCHOR_PAPERS / titles)
    anchors, share = [], 0.0
    for term, word_share in words:
        if anchors and share + word_share > cap:
            break
        anchors.append(term)
        share += word_share
    return anchors


def dated(field: str, published) -> dict:
    """Filter arguments holding ``field`` to ``published``, (first, last) day, either None
    (no bound), or None (no range)."""
    first, last = published or (None, None)
    bounds = {f"{field}__gte": first, f"{field}__lte": last}
    return {lookup: day for lookup, day in bounds.items() if day}


def in_sample(every: int = SAMPLE_EVERY, field: str = "id") -> Q:
    """Papers (or rows pointing at papers through ``field``) in the 1-in-``every`` sample.
    Written exactly as the partial indexes' condition, so PostgreSQL can use them."""
    return Q(Exact(Mod(field, every), 0))


class PaperQuerySet(models.QuerySet):
    def visible(self):
        return self.filter(hidden=False)

    def search(self, query: str, *, unindexed: bool = False):
        """Papers matching a reader's query, annotated with their ``rank``; ``unindexed``: its
        words tested on each paper the other filters leave (``search.condition``)."""
        return search.apply(self, query, unindexed=unindexed)

    def matching(self, query: str):
        """Papers matching a query, without ranking (for filters such as author)."""
        parsed = search.parse(query)
        return self if parsed.is_empty else self.filter(search.condition(parsed))

    def in_topic(self, topic, published=None):
        """Papers tagged with ``topic`` by its rule or pinned by staff (not excluded).

        ``published``: (first, last) day, either None, the papers are limited to by another
        filter (``published_between``): said of the link's copy of the date too, so that
        PostgreSQL can read the topic's papers of those days from the links' date index."""
        link = {"papertopic__topic": topic, "papertopic__reason__in": SHOWN_REASONS}
        link |= dated("papertopic__published_on", published)
        return self.filter(**link)  # one filter(): every condition is of the same link

    def published_between(self, since=None, until=None):
        qs = self
        if since:
            qs = qs.filter(published_on__gte=since)
        if until:
            qs = qs.filter(published_on__lte=until)
        return qs

    def with_min_upvotes(self, minimum: int | None):
        return self if minimum is None else self.filter(upvotes__gte=minimum)

    def with_slug(self, slug: str):
        """The paper whose public id is ``slug`` (``Paper.slug``: its arXiv id, else its
        catalogue number), with its embedding."""
        papers = self.select_related("embedding")
        if slug.isascii() and slug.isdigit():  # not "²": int() refuses what isdigit() allows
            return papers.filter(pk=int(slug), arxiv_id__isnull=True)
        return papers.filter(arxiv_id=slug.replace("\x00", ""))

    def in_order(self, ids: list[int]):
        """Papers ``ids`` in that order (a ranking as a queryset)."""
        position = Func(
            models.Value(ids, output_field=ArrayField(models.BigIntegerField())),
            models.F("id"),
            function="array_position",
        )
        return self.filter(pk__in=ids).order_by(position)

    def nearest_to(self, vector, limit: int, exact: bool = False, published=None):
        """The ``limit`` papers whose embeddings are nearest ``vector`` (cosine), nearest
        first, annotated with ``distance`` (0 same direction, 2 opposite). Through the HNSW
        index, which every connection scans iteratively (``catalogue.semantic``): other
        filters do not leave the result short. ``exact``: without the index, every paper of
        this QuerySet measured (cheaper where it holds few papers, see
        ``hybrid.exact_scan_pays``).

        ``published``: (first, last) day, either None, the papers are limited to by another
        filter (``published_between``): said of the embedding's copy of the date too, so that
        the scan drops the entries out of range on the row the index hands back instead of
        looking up each one's paper (at a million papers, a third of a date-ranged scan)."""
        distance = CosineDistance("embedding__vector", vector)
        # The index answers an ORDER BY of the distance itself, not of an expression of it.
        order = distance + models.Value(0.0) if exact else distance
        papers = self.filter(embedding__isnull=False, **dated("embedding__published_on", published))
        return papers.annotate(distance=distance).order_by(order)[:limit]

    def similar_by_meaning(self, paper, limit: int = 5) -> list[Paper]:
        """The ``limit`` papers of this QuerySet nearest ``paper`` by meaning, nearest first,
        each with ``distance`` and ``similarity`` (1 - distance); never ``paper`` itself.
        Empty when ``paper`` has no embedding yet (load it with ``select_related("embedding")``
        to save the query).

        Filters here (hidden papers, the paper itself) drop rows the HNSW index hands back;
        a plain scan would stop after its first ``ef_search`` rows even when every one of them
        was dropped. Connections scan iteratively (``catalogue.semantic``), in relaxed order:
        rows come nearly sorted, so they are sorted here.
        """
        try:
            vector = paper.embedding.vector
        except PaperEmbedding.DoesNotExist:
            return []
        neighbours = list(self.exclude(pk=paper.pk).nearest_to(vector, limit))
        for neighbour in neighbours:
            neighbour.similarity = max(0.0, 1 - neighbour.distance)
        return sorted(neighbours, key=lambda p: (p.distance, p.pk))

    def missing_or_stale_embeddings(self, model_id: str):
        """Papers with no embedding, or one from another model or of text since changed."""
        current = Q(embedding__model=model_id) & Q(embedding__text_hash=EMBEDDED_TEXT_MD5)
        return self.exclude(current & Q(embedding__isnull=False))

    def similar_to(self, paper, limit: int = 5):
        """Papers sharing the most title words with ``paper`` (ranked over title and abstract
        as ever: ``ts_rank`` of any of its title words), among candidates the title index
        (``search.TITLE_VECTOR``) gives cheaply.

        Ranking every paper that has one of the words costs seconds at scale (a title's
        commonest word is in a tenth of the catalogue). The candidates: papers whose titles
        share one of its rarer words (``similarity_anchors``) and at least one more of its
        words, and beside them papers sharing one of the rarer words alone, at most
        ``SIMILAR_CANDIDATES`` of each. Every candidate holds a rare word, so the index is
        read from the rare words' short lists; the common words are only looked up in it.
        (Measured on 80 of the demo's real papers against ranking every match: 0.79 of the
        top 5 the same at the demo's size, nearly as close in meaning by MiniLM, 0.551 against
        0.561; with the caps as small beside the catalogue as at 100,000 papers 0.39 (0.537),
        as at a million 0.12 (0.490), no better than the newest matches. At a million papers
        the anchors' cap in papers chose rarer anchors: 40 papers of the benchmark corpus had
        neighbours closer in meaning, 0.829 against 0.785 mean cosine, in 14 ms instead of 59
        (p50; caps of 1,000 and 20,000 papers: 0.821 and 0.807). It serves only until the
        paper's embedding exists.)
        """
        words = search.title_words(paper.title)
        if not words:
            return self.none()
        anchors = similarity_anchors(words, search.title_frequencies().titles)
        terms = [term for term, _ in words]
        with_more = [f"{a} & ({' | '.join(t for t in terms if t != a)})" for a in anchors]
        pools = [" | ".join(f"({q})" for q in with_more)] if len(terms) > 1 else []
        pools.append(" | ".join(anchors))
        return self._best_of_pools(paper, pools, " | ".join(terms), limit)

    def _best_of_pools(self, paper, pools: list[str], ranked: str, limit: int):
        """The ``limit`` papers ranked highest by ``ranked`` among the first papers whose titles
        match each tsquery of ``pools`` (as many as ``SIMILAR_CANDIDATES`` says, the last
        figure for the rest); one statement, each candidate read once, ranked as found."""
        similarity = search.rank(search.RawTsQuery(ranked))
        others = self.exclude(pk=paper.pk).alias(title_vector=search.TITLE_VECTOR)
        candidates = [
            others.filter(title_vector=search.RawTsQuery(pool))
            .annotate(r=similarity)
            .values("pk", "r")[: SIMILAR_CANDIDATES[min(i, len(SIMILAR_CANDIDATES) - 1)]]
            for i, pool in enumerate(pools)
        ]
        sql, params = candidates[0].union(*candidates[1:], all=True).query.sql_with_params()
        best = RawSQL(
            f"SELECT pk FROM ({sql}) c GROUP BY pk ORDER BY max(r) DESC, pk DESC LIMIT %s",
            (*params, limit),
        )
        return (
            self.filter(pk__in=best).annotate(similarity=similarity).order_by("-similarity", "-id")
        )

    def by_relevance(self, candidates: int, title_query: str = "", *, rank_in_scan=False):
        """Most relevant first among the ``candidates`` newest matches and, with
        ``title_query``, the ``candidates / 10`` newest matches with the query in their title
        (needs ``rank``): an older paper named after the query is not crowded out by the
        newest papers that merely mention it. (A tenth: titles of a common phrase are many
        too, and reading thousands of them doubles a ranking's cost.)

        Ranking reads every candidate's search vector (~13 µs each): ranking all matches of a
        common word costs seconds at a million papers. Newest candidates come cheap from the
        date index for common words and from the GIN index plus a top-N sort for rare ones,
        and they are what readers of a research catalogue are after. The candidates are
        matches already: the ranking does not test them against the query again (for a
        phrase, another ~50 ms of vector and pattern checks).

        ``rank_in_scan`` ranks each candidate in the pass that finds it, reading its vector
        once instead of again by id, where that pass meets only the candidates (every match
        is one, or the date index is walked until enough match). Measured at 100,000 papers,
        interleaved medians: 0.8x the time for words in a third of the papers or more, ~1.0x
        for words in 6-18 % (walking past the papers without them dominates); same order.
        Not where the GIN index gives more matches than candidates: PostgreSQL would rank
        every match before sorting them by date.
        """
        pools = self.relevance_pools(candidates, title_query, rank_in_scan=rank_in_scan)
        return self.rank_pools(pools, rank_in_scan=rank_in_scan)

    def rank_pools(self, pools, *, rank_in_scan=False):
        """``by_relevance`` of candidate pools already built (``relevance_pools``)."""
        pool, *titled = pools
        if titled:
            # One UNION, not an OR of two IN lists: PostgreSQL answers the OR by scanning
            # the whole table against both lists (75 ms at 100,000 papers, not 15). A paper
            # in both pools has the same rank in both: UNION keeps one row of it.
            pool = pool.union(*titled)
        if rank_in_scan:
            return pool.order_by("-rank", "-pk")
        rank = self.query.annotations["rank"]
        candidates = self.model.objects.filter(pk__in=pool).annotate(rank=rank)
        return candidates.order_by("-rank", "-id")

    def relevance_pools(
        self, candidates: int, title_query: str = "", *, rank_in_scan=False, titles_among=None
    ):
        """The candidate pools ``by_relevance`` ranks, as ``values`` querysets of ``pk`` (and,
        ``rank_in_scan``, ``rank``): the ``candidates`` newest matches, then with
        ``title_query`` the ``candidates / 10`` newest matches with the query in their title.
        (Apart, they can be read under different planner settings: ``summary``.)

        ``titles_among``: the papers (with ``rank``) whose titles the title pool looks in,
        where a title with the query implies a match (``search.titles_imply_match``): the
        matches' own condition beside the title's made PostgreSQL intersect the word's whole
        index entry with the title's (75 ms for a word in 386,000 papers of a million), and
        underestimate the title pool (its share times the word's)."""
        fields = ["pk", "rank"] if rank_in_scan else ["pk"]
        pools = [self.newest_first().values(*fields)[:candidates]]
        if title_query:
            # From the title index: the whole vector's index cannot tell title words, so
            # every match anywhere would be read to find the few in titles. Without weights:
            # the title vector has only title words, and a weight makes each match re-read.
            among = self if titles_among is None else titles_among
            in_titles = among.filter(search.in_title(title_query))
            limit = max(candidates // 10, 1)
            pool = in_titles.newest_first().values(*fields)[:limit]
            # Walking the date index instead (summary._title_statements), each paper is
            # tested by its title words' weight in the whole vector, not by ts_filter's copy
            # of the vector's title words: 35-55 % less a paper walked (the same papers).
            # Built only where a pool is walked (the ORM's ~0.08 ms otherwise spent for nothing).
            pool.in_title = search.in_title_by_weight(title_query)
            pool.walked = lambda: among.filter(pool.in_title).newest_first().values(*fields)[:limit]
            pools.append(pool)
        return pools

    def for_cards(self):
        """Papers as pages, feeds, the API and digests show them: without the search vectors
        (~1.6 KB a row that nothing displays), each with ``topic_list``, its shown topics
        ([{"slug", "name"}], by name), read in the same statement as the papers, not in a
        query of their own. Computed for every row the statement reads, those an OFFSET
        skips included: a deep page loads its papers by their ids (``PagedByIds``)."""
        return self.defer("search_vector", "author_vector").annotate(topic_list=_topic_list())

    def newest_first(self):
        # NULL dates last: a card without a date is less useful than any dated one.
        return self.order_by(models.F("published_on").desc(nulls_last=True), "-id")

    def oldest_first(self):
        return self.order_by(models.F("published_on").asc(nulls_last=True), "id")

    def most_upvoted(self):
        return self.order_by("-upvotes", models.F("published_on").desc(nulls_last=True), "-id")

    def trending(self):
        """By ``trending_score`` (kept current by catalogue.trending), then upvotes."""
        return self.order_by("-trending_score", "-upvotes", "-id")


class Paper(models.Model):
    # Unique by the constraints below, not unique=True: that would add a second, LIKE-pattern
    # index to each, which no query uses and every insert pays for. NULL, not "": many papers
    # lack one of the keys, and unique NULLs do not collide.
    arxiv_id = models.CharField(  # noqa: DJ001
        max_length=32, null=True, blank=True, help_text="Versionless arXiv id."
    )
    # For listings that carry no arXiv id: "<source>:<key within that source>".
    source_key = models.CharField(max_length=300, null=True, blank=True)  # noqa: DJ001
    title = models.TextField()
    abstract = models.TextField(blank=True)
    authors = ArrayField(models.TextField(), default=list, blank=True)
    author_count = models.PositiveIntegerField(
        null=True, blank=True, help_text="Number of authors when the names are not known."
    )
    published_on = models.DateField(null=True, blank=True, help_text="First publication.")
    listed_on = models.DateField(null=True, blank=True, help_text="First day a listing showed it.")
    updated_on = models.DateField(null=True, blank=True, help_text="Latest version.")
    upvotes = models.PositiveIntegerField(default=0)
    comments = models.PositiveIntegerField(default=0)
    github_stars = models.PositiveIntegerField(null=True, blank=True)
    code_url = models.URLField(max_length=500, blank=True)
    project_url = models.URLField(max_length=500, blank=True)
    primary_category = models.CharField(max_length=40, blank=True)
    categories = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    keywords = ArrayField(models.TextField(), default=list, blank=True)
    version = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Latest arXiv version."
    )
    doi = models.CharField(max_length=200, blank=True)
    journal_ref = models.TextField(blank=True)
    arxiv_comment = models.TextField(blank=True)
    withdrawn = models.BooleanField(default=False)
    # Database defaults too: the bulk upsert writes rows with SQL, not through the ORM.
    hidden = models.BooleanField(default=False, db_default=False)
    featured = models.BooleanField(default=False, db_default=False)
    trending_score = models.FloatField(
        default=0, db_default=0, help_text="Recent upvote gain with time decay; see trending.py."
    )
    # Fields a curator edited: ingest never overwrites them (see ingest.upsert).
    curated_fields = ArrayField(models.CharField(max_length=50), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    search_vector = models.GeneratedField(
        expression=SEARCH_VECTOR, output_field=SearchVectorField(), db_persist=True
    )
    author_vector = models.GeneratedField(
        expression=AUTHOR_VECTOR, output_field=SearchVectorField(), db_persist=True
    )

    objects = PaperQuerySet.as_manager()

    class Meta:
        indexes = [
            GinIndex(fields=["search_vector"], name="paper_search_gin"),
            GinIndex(fields=["author_vector"], name="paper_author_gin"),
            # Whole sort keys, so a LIMIT reads 25 index entries instead of sorting every paper.
            # Each includes what pages filter the order by (hidden, the dates, upvotes, code
            # links), so a page's ids are read from the index alone, without visiting the
            # papers an OFFSET skips (``PagedByIds``): page 360 of the upvotes order in 1.3 ms
            # instead of 28. So are a date range's matches a summary counts exactly: with code
            # links, 21,000 papers of 100,000 read from the table to keep 3,131 (22 ms warm,
            # 218 from disk).
            models.Index(
                models.F("trending_score").desc(),
                models.F("upvotes").desc(),
                models.F("id").desc(),
                include=["hidden", "published_on", "code_url"],
                name="paper_trending_idx",
            ),
            # Digests look for papers ingested since a saved search was made; tagging for
            # papers an ingest run changed.
            models.Index(fields=["created_at"], name="paper_created_idx"),
            models.Index(fields=["updated_at"], name="paper_updated_idx"),
            models.Index(
                models.F("published_on").desc(nulls_last=True),
                "id",
                include=["hidden", "upvotes", "code_url"],
                name="paper_published_idx",
            ),
            # sort=oldest: the index above read backwards gives undated papers first, so
            # without its own index that order sorts every match (seconds on deep pages).
            models.Index(
                models.F("published_on").asc(nulls_last=True),
                "id",
                include=["hidden", "upvotes", "code_url"],
                name="paper_published_asc_idx",
            ),
            models.Index(
                models.F("upvotes").desc(),
                models.F("published_on").desc(nulls_last=True),
                models.F("id").desc(),
                include=["hidden", "code_url"],
                name="paper_upvotes_idx",
            ),
            # Title words alone (see search.TITLE_VECTOR): similar papers, title matches.
            GinIndex(search.TITLE_VECTOR, name=search.TITLE_INDEX),
            # The sample's own indexes (see SAMPLE_EVERY): text, author and other filters.
            GinIndex(fields=["search_vector"], name="paper_sample_gin", condition=in_sample()),
            GinIndex(
                fields=["author_vector"], name="paper_sample_author_gin", condition=in_sample()
            ),
            # With every column a filter other than words, authors and topics tests (dates,
            # upvotes, code links): the sample's rows are read from the index alone.
            models.Index(
                fields=["id"],
                include=["published_on", "hidden", "upvotes", "code_url"],
                name="paper_sample_idx",
                condition=in_sample(),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["arxiv_id"], name="paper_arxiv_id_unique"),
            models.UniqueConstraint(fields=["source_key"], name="paper_source_key_unique"),
            models.CheckConstraint(
                condition=Q(arxiv_id__isnull=False) | Q(source_key__isnull=False),
                name="paper_has_natural_key",
            ),
        ]

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return slug_path("paper-detail", self.slug, PaperSlugConverter.regex)

    @staticmethod
    def paths() -> Callable[[str], str]:
        """``get_absolute_url`` as a function of a paper's slug, for a page of many papers."""
        return slug_paths("paper-detail", PaperSlugConverter.regex)

    @property
    def slug(self) -> str:
        """The paper's public id: its arXiv id, else its catalogue number."""
        return self.arxiv_id or str(self.pk)

    @property
    def display_author_count(self) -> int:
        return len(self.authors) or self.author_count or 0

    @property
    def arxiv_url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv_id}" if self.arxiv_id else ""

    @property
    def pdf_url(self) -> str:
        return f"https://arxiv.org/pdf/{self.arxiv_id}" if self.arxiv_id else ""


# The text a paper's embedding is computed from, and its md5 as PostgreSQL computes it: a
# stale embedding (text changed since) is found by one comparison in SQL.
EMBEDDED_TEXT_MD5 = MD5(
    Concat("title", models.Value("\n"), "abstract", output_field=models.TextField())
)


def embedded_text(title: str, abstract: str) -> str:
    """What the embedder reads of a paper (``EMBEDDED_TEXT_MD5`` hashes the same)."""
    return f"{title}\n{abstract}"


class PaperEmbedding(models.Model):
    """A paper's meaning as a unit vector (MiniLM, 384 dimensions, half precision).

    Its own table, not a column of Paper: ingest rewrites paper rows often and should not
    carry 800 bytes of vector each time, and the HNSW index is built over this table only.
    ``model`` and ``text_hash`` say what it was computed from, so a new model or an edited
    abstract makes it stale (``PaperQuerySet.missing_or_stale_embeddings``).
    """

    paper = models.OneToOneField(
        Paper, on_delete=models.CASCADE, primary_key=True, related_name="embedding"
    )
    vector = HalfVectorField(dimensions=384)
    model = models.CharField(max_length=100)
    text_hash = models.CharField(max_length=32, help_text="md5 of the embedded text.")
    computed_at = models.DateTimeField(auto_now=True)
    # The paper's publication date, kept equal to it by the database (triggers of migration
    # 0024, as ``PaperTopic.published_on``): a nearest-neighbour scan limited to a date range
    # tests it on the embedding row the HNSW index hands back, and looks up only the papers
    # in range (``PaperQuerySet.nearest_to``), not the paper of every entry it passes over.
    # Whatever is written here is replaced by the paper's date. Unlike a link's, it cannot be
    # left behind by a racing redate: the embeddings' writer locks their papers first
    # (``embedding._save``).
    published_on = models.DateField(null=True, editable=False)

    class Meta:
        indexes = [
            HnswIndex(
                name="embedding_hnsw",
                fields=["vector"],
                m=16,
                ef_construction=64,
                opclasses=["halfvec_cosine_ops"],
            ),
            # The latest embedding is part of the catalogue's version (summary.catalogue_state):
            # cached neighbours by meaning and pages must not outlive a backfill's new vectors.
            models.Index(fields=["computed_at"], name="embedding_computed_idx"),
            # A date range's nearest papers measured each, read by the embeddings' own date
            # (``hybrid.nearest_measured``): ~0.6 µs a paper, against ~2.1 through each
            # paper's date and then its embedding.
            models.Index(fields=["published_on"], name="embedding_published_idx"),
        ]

    def __str__(self):
        return f"embedding of {self.paper_id} ({self.model})"


class PhrasePairs(models.Model):
    """The adjacent word pairs of a paper's search vector, hashed (``catalogue.phrases``): its
    GIN index finds the papers that may hold a phrase of two common words without testing
    every paper that holds both. Written by a background task, apart from ingest; a paper not
    paired yet, or whose text changed since, is in ``PhrasePending``. No foreign key: the
    papers' triggers keep both tables (migration 0022)."""

    paper_id = models.BigIntegerField(primary_key=True)
    pairs = ArrayField(models.IntegerField())

    class Meta:
        indexes = [GinIndex(fields=["pairs"], name="phrase_pairs_gin")]

    def __str__(self):
        return f"pairs of paper {self.paper_id}"


class PhrasePending(models.Model):
    """Papers whose ``PhrasePairs`` are missing or stale: every new paper and every paper whose
    search vector changed (database triggers put them here, whatever wrote the paper), until
    the background task pairs them. A phrase search looks at all of them."""

    paper_id = models.BigIntegerField(primary_key=True)

    def __str__(self):
        return f"paper {self.paper_id} to pair"


class Sighting(models.Model):
    """Provenance: which source listed a paper, first and last seen, and on which day."""

    # No index of its own: the unique constraint's index, which starts with the paper, finds a
    # paper's sightings (one index fewer for every ingested paper to keep).
    paper = models.ForeignKey(
        Paper, on_delete=models.CASCADE, related_name="sightings", db_index=False
    )
    source = models.CharField(max_length=100)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    listed_on = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["paper", "source"], name="sighting_once_per_source")
        ]

    def __str__(self):
        return f"{self.paper_id} seen by {self.source}"

    @property
    def source_name(self) -> str:
        """What readers see: "arXiv API", not ``arxiv_atom``."""
        return provenance.source_name(self.source)


class PopularitySnapshot(models.Model):
    """Upvotes and GitHub stars as observed on a day: the history trending is computed from."""

    # Found through the unique constraint's index, which starts with the paper (see Sighting).
    paper = models.ForeignKey(
        Paper, on_delete=models.CASCADE, related_name="snapshots", db_index=False
    )
    observed_on = models.DateField()
    upvotes = models.PositiveIntegerField(null=True, blank=True)
    github_stars = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["paper", "observed_on"], name="snapshot_once_per_paper_and_day"
            )
        ]
        indexes = [models.Index(fields=["observed_on", "paper"], name="snapshot_day_idx")]

    def __str__(self):
        return f"{self.paper_id} on {self.observed_on}: {self.upvotes}"


def _new_token() -> str:
    return secrets.token_urlsafe(32)


class Topic(models.Model):
    """A named, curated query: papers matching ``query`` are tagged with the topic.

    Staff can pin a paper to a topic or exclude it; those choices survive re-tagging.
    """

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    query = models.CharField(
        max_length=500, help_text='Same syntax as the search box, e.g. "linear attention" OR mamba'
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    papers = models.ManyToManyField(Paper, through="PaperTopic", related_name="topic_links")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return slug_path("topic-detail", self.slug, SlugConverter.regex)

    @staticmethod
    def paths() -> Callable[[str], str]:
        """``get_absolute_url`` as a function of a topic's slug, for a page of many topics."""
        return slug_paths("topic-detail", SlugConverter.regex)


class PaperTopic(models.Model):
    """Why a paper has (or explicitly has not) a topic."""

    class Reason(models.TextChoices):
        RULE = "rule", "matched the topic's query"
        PINNED = "pinned", "pinned by staff"
        EXCLUDED = "excluded", "excluded by staff"

    paper = models.ForeignKey(Paper, on_delete=models.CASCADE)
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE)
    reason = models.CharField(max_length=10, choices=Reason.choices, default=Reason.RULE)
    created_at = models.DateTimeField(auto_now_add=True)
    # The paper's publication date, kept equal to it by the database (triggers of migration
    # 0023, whatever writes a link or a paper's date): a topic's papers of a date range are
    # then read from the topic's own date index (``PaperQuerySet.in_topic``), not found by
    # joining every link of the topic with every paper of the range (37-67 ms at a million
    # papers). Whatever is written here is replaced by the paper's date.
    published_on = models.DateField(null=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["paper", "topic"], name="papertopic_once"),
        ]
        indexes = [
            models.Index(fields=["topic", "reason", "paper"], name="papertopic_topic_idx"),
            # Shown links only (SHOWN_REASONS, as ``in_topic`` asks for them), by date.
            models.Index(
                fields=["topic", "published_on"],
                include=["paper"],
                condition=models.Q(reason__in=["rule", "pinned"]),
                name="papertopic_topic_date_idx",
            ),
        ]

    def __str__(self):
        return f"{self.paper_id} · {self.topic_id} ({self.reason})"


# The links that show a topic on a paper (staff exclusions are kept but hidden).
SHOWN_REASONS = [PaperTopic.Reason.RULE, PaperTopic.Reason.PINNED]
SHOWN_REASON_VALUES = [str(reason) for reason in SHOWN_REASONS]  # as SQL parameters


class PaperAlias(models.Model):
    """A natural key (arXiv id or source key) of a paper merged into another one.

    Ingest maps these keys to the canonical paper, and the merged paper's URL redirects there.
    """

    key = models.CharField(max_length=300, unique=True)
    paper = models.ForeignKey(Paper, on_delete=models.CASCADE, related_name="aliases")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.key} → {self.paper_id}"


class SavedSearch(models.Model):
    """A reader's bookmarked search (its canonical query string), optionally with alerts."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_searches"
    )
    name = models.CharField(max_length=200)
    query = models.CharField(max_length=2000, help_text="Canonical query string of the list page.")
    alerts = models.BooleanField(default=True, help_text="Email a daily digest of new matches.")
    unsubscribe_token = models.CharField(max_length=64, unique=True, default=_new_token)
    created_at = models.DateTimeField(auto_now_add=True)
    last_digest_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="savedsearch_name_per_user"),
        ]

    def __str__(self):
        return self.name


class AlertDelivery(models.Model):
    """A paper already sent for a saved search: each new match is emailed once."""

    saved_search = models.ForeignKey(SavedSearch, on_delete=models.CASCADE, related_name="sent")
    paper = models.ForeignKey(Paper, on_delete=models.CASCADE, related_name="+")
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["saved_search", "paper"], name="alert_once"),
        ]

    def __str__(self):
        return f"{self.paper_id} sent for {self.saved_search_id}"


def _topic_list() -> RawSQL:
    """A paper's shown topics, [{"slug", "name"}] by name (``PaperQuerySet.for_cards``).
    Written as SQL: the ORM's ArraySubquery of a JSONObject took 0.7 ms of every list page to
    build and compile, for the same text each time (test_round_trips.py compares)."""
    papers, links, topics = Paper._meta.db_table, PaperTopic._meta.db_table, Topic._meta.db_table
    sql = (
        f"ARRAY(SELECT jsonb_build_object('slug', t.slug, 'name', t.name)"
        f" FROM {links} l JOIN {topics} t ON t.id = l.topic_id"
        f' WHERE l.paper_id = "{papers}"."id" AND l.reason = ANY(%s) ORDER BY t.name)'
    )
    return RawSQL(sql, (SHOWN_REASON_VALUES,), output_field=ArrayField(models.JSONField()))
