"""The catalogue's data: papers and the QuerySet methods that hold query logic."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import Q
from django.urls import reverse

from catalogue import search

# Title words count more than abstract words: weights A and B in one stored vector.
SEARCH_VECTOR = SearchVector("title", weight="A", config=search.CONFIG) + SearchVector(
    "abstract", weight="B", config=search.CONFIG
)


class PaperQuerySet(models.QuerySet):
    def visible(self):
        return self.filter(hidden=False)

    def search(self, query: str):
        """Papers matching a reader's query (websearch syntax), best match first."""
        return search.apply(self, query)

    def published_between(self, since=None, until=None):
        qs = self
        if since:
            qs = qs.filter(published_on__gte=since)
        if until:
            qs = qs.filter(published_on__lte=until)
        return qs

    def with_min_upvotes(self, minimum: int | None):
        return self if minimum is None else self.filter(upvotes__gte=minimum)

    def newest_first(self):
        # NULL dates last: a card without a date is less useful than any dated one.
        return self.order_by(models.F("published_on").desc(nulls_last=True), "-id")

    def most_upvoted(self):
        return self.order_by("-upvotes", models.F("published_on").desc(nulls_last=True), "-id")


class Paper(models.Model):
    arxiv_id = models.CharField(
        max_length=32, null=True, blank=True, unique=True, help_text="Versionless arXiv id."
    )
    # For listings that carry no arXiv id: "<source>:<key within that source>".
    source_key = models.CharField(max_length=300, null=True, blank=True, unique=True)
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
    hidden = models.BooleanField(default=False)
    # Fields a curator edited: ingest never overwrites them (see ingest.upsert).
    curated_fields = ArrayField(models.CharField(max_length=50), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    search_vector = models.GeneratedField(
        expression=SEARCH_VECTOR, output_field=SearchVectorField(), db_persist=True
    )

    objects = PaperQuerySet.as_manager()

    class Meta:
        indexes = [
            GinIndex(fields=["search_vector"], name="paper_search_gin"),
            models.Index(
                models.F("published_on").desc(nulls_last=True), "id", name="paper_published_idx"
            ),
            models.Index(fields=["-upvotes"], name="paper_upvotes_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(arxiv_id__isnull=False) | Q(source_key__isnull=False),
                name="paper_has_natural_key",
            ),
        ]

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return reverse("paper-detail", args=[self.slug])

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


class Sighting(models.Model):
    """Provenance: which source listed a paper, first and last seen, and on which day."""

    paper = models.ForeignKey(Paper, on_delete=models.CASCADE, related_name="sightings")
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


class PopularitySnapshot(models.Model):
    """Upvotes and GitHub stars as observed on a day: the history trending is computed from."""

    paper = models.ForeignKey(Paper, on_delete=models.CASCADE, related_name="snapshots")
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
