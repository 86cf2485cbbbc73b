"""Merging duplicates: what moves, what wins, old URLs redirecting, ingest not recreating them."""

import datetime as dt
from dataclasses import replace

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalogue import merging
from catalogue.models import (
    Paper,
    PaperAlias,
    PaperTopic,
    PopularitySnapshot,
    Sighting,
    Topic,
)
from ingest.records import PaperRecord
from ingest.upsert import upsert_papers
from tests.admin_support import action_data, seed_catalogue

pytestmark = pytest.mark.django_db

DAY_1, DAY_2 = dt.date(2025, 12, 24), dt.date(2025, 12, 25)
CHANGELIST = reverse("admin:catalogue_paper_changelist")


def hf_card(**fields) -> PaperRecord:
    base = {
        "source": "hf_page",
        "source_key": "mom-linear-sequence-modeling-with-mixture-of-memories",
        "title": "MoM: Linear Sequence Modeling with Mixture-of-Memories",
        "abstract": "Linear attention with several memories.",
        "upvotes": 2,
        "published_on": dt.date(2025, 2, 19),
    }
    return PaperRecord(**{**base, **fields})


def arxiv_entry(**fields) -> PaperRecord:
    base = {
        "source": "arxiv_atom",
        "source_key": "2502.13685",
        "arxiv_id": "2502.13685",
        "title": "MoM: Linear Sequence Modeling with Mixture-of-Memories",
        "abstract": "",
        "authors": ("Jusen Du", "Weigao Sun"),
        "published_on": dt.date(2025, 2, 18),
        "code_url": "https://github.com/OpenSparseLLMs/MoM",
    }
    return PaperRecord(**{**base, **fields})


def paper_of(record: PaperRecord) -> Paper:
    if record.arxiv_id:
        return Paper.objects.get(arxiv_id=record.arxiv_id)
    return Paper.objects.get(source_key=record.natural_key)


def test_merge_moves_history_keeps_higher_values_and_takes_over_the_arxiv_id():
    upsert_papers([hf_card(upvotes=5)], observed_on=DAY_1)
    upsert_papers([arxiv_entry(upvotes=3)], observed_on=DAY_1)
    upsert_papers([arxiv_entry(upvotes=9)], observed_on=DAY_2)
    card, entry = paper_of(hf_card()), paper_of(arxiv_entry())
    topic_a = Topic.objects.create(name="A", slug="a", query="memories")
    topic_b = Topic.objects.create(name="B", slug="b", query="mixture")
    PaperTopic.objects.create(paper=card, topic=topic_a, reason=PaperTopic.Reason.RULE)
    PaperTopic.objects.create(paper=entry, topic=topic_a, reason=PaperTopic.Reason.EXCLUDED)
    PaperTopic.objects.create(paper=entry, topic=topic_b, reason=PaperTopic.Reason.PINNED)

    result = merging.merge(card, [entry])

    kept = Paper.objects.get()
    assert kept.pk == card.pk
    assert kept.arxiv_id == "2502.13685"  # the better natural key moved over
    assert kept.upvotes == 9
    assert kept.published_on == dt.date(2025, 2, 18)  # the earlier one
    assert kept.abstract == "Linear attention with several memories."  # the canonical's
    assert kept.code_url == "https://github.com/OpenSparseLLMs/MoM"  # a blank filled
    assert kept.authors == ["Jusen Du", "Weigao Sun"]
    snapshots = dict(PopularitySnapshot.objects.values_list("observed_on", "upvotes"))
    assert snapshots == {DAY_1: 5, DAY_2: 9}  # per day, the higher value
    assert set(Sighting.objects.values_list("paper_id", "source")) == {
        (card.pk, "hf_page"),
        (card.pk, "arxiv_atom"),
    }
    reasons = dict(PaperTopic.objects.values_list("topic__slug", "reason"))
    assert reasons == {"a": PaperTopic.Reason.EXCLUDED, "b": PaperTopic.Reason.PINNED}
    # Its catalogue-number URL moved to the arXiv id; the card's key stays its own.
    assert result.aliases == [f"#{card.pk}"]


def test_merged_away_arxiv_id_redirects_and_its_records_update_the_canonical_paper(client):
    upsert_papers([arxiv_entry(), arxiv_entry(arxiv_id="2502.99999", source_key="2502.99999")])
    kept, duplicate = paper_of(arxiv_entry()), Paper.objects.get(arxiv_id="2502.99999")
    merging.merge(kept, [duplicate])

    response = client.get(reverse("paper-detail", args=["2502.99999"]))
    assert response.status_code == 301
    assert response["Location"] == kept.get_absolute_url()

    counts = upsert_papers([arxiv_entry(arxiv_id="2502.99999", source_key="x", upvotes=40)])
    assert counts.created == 0
    assert Paper.objects.get().upvotes == 40


def test_merge_in_the_admin_redirects_the_old_url_and_reingest_does_not_recreate_it(
    admin_client, admin_user, client
):
    records = seed_catalogue()
    original = next(r for r in records if r.source_key.startswith("mom-linear"))
    # The same paper listed again under a slightly different title: a second card.
    copy = replace(original, title=original.title + " (v2)", source_key=original.source_key + "-2")
    upsert_papers([copy])
    kept, duplicate = paper_of(original), paper_of(copy)
    total = Paper.objects.count()

    response = admin_client.post(CHANGELIST, action_data("merge", [kept, duplicate]))
    assert response.status_code == 302
    merge_page = admin_client.get(response["Location"])
    assert merge_page.status_code == 200
    assert merge_page.context["chosen"] in (kept.pk, duplicate.pk)
    response = admin_client.post(
        response["Location"], {"ids": f"{kept.pk},{duplicate.pk}", "canonical": kept.pk}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:catalogue_paper_change", args=[kept.pk])
    assert Paper.objects.count() == total - 1

    old_url = reverse("paper-detail", args=[str(duplicate.pk)])
    response = client.get(old_url)
    assert response.status_code == 301
    assert response["Location"] == kept.get_absolute_url()

    counts = upsert_papers([replace(copy, upvotes=50)])
    assert (counts.created, counts.updated) == (0, 1)
    assert Paper.objects.count() == total - 1
    assert Paper.objects.get(pk=kept.pk).upvotes == 50

    history = LogEntry.objects.filter(user=admin_user)
    assert history.get(object_id=str(kept.pk)).action_flag == CHANGE
    assert history.get(object_id=str(duplicate.pk)).action_flag == DELETION


def test_a_batch_with_both_keys_of_a_merged_paper_writes_one_paper():
    upsert_papers([hf_card(), arxiv_entry()])
    merging.merge(paper_of(arxiv_entry()), [paper_of(hf_card())])
    with CaptureQueriesContext(connection) as queries:
        counts = upsert_papers([hf_card(upvotes=7), arxiv_entry(upvotes=4)])
    assert counts.created == 0
    alias_lookups = [q for q in queries.captured_queries if "catalogue_paperalias" in q["sql"]]
    assert len(alias_lookups) == 1  # one indexed look-up per batch
    paper = Paper.objects.get()
    assert paper.upvotes == 7
    assert hf_card().natural_key in PaperAlias.objects.values_list("key", flat=True)


def test_chained_merges_keep_every_alias_pointing_at_the_survivor(client):
    upsert_papers([arxiv_entry(arxiv_id=f"2502.0000{n}", source_key=str(n)) for n in range(3)])
    first, second, third = Paper.objects.order_by("arxiv_id")
    merging.merge(second, [first])
    merging.merge(third, [second])
    assert set(PaperAlias.objects.values_list("key", "paper_id")) == {
        ("2502.00000", third.pk),
        ("2502.00001", third.pk),
    }
    assert client.get(reverse("paper-detail", args=["2502.00000"])).status_code == 301


def test_unknown_slug_is_still_a_404(client):
    assert client.get(reverse("paper-detail", args=["2502.00404"])).status_code == 404
    assert client.get(reverse("paper-detail", args=["999999"])).status_code == 404


def test_merge_page_needs_two_papers(admin_client):
    upsert_papers([arxiv_entry()])
    paper = Paper.objects.get()
    response = admin_client.post(CHANGELIST, action_data("merge", [paper]), follow=True)
    assert "Choose 2 to 10 papers to merge." in response.content.decode()
    merge_url = f"{reverse('admin:catalogue_paper_merge')}?ids={paper.pk},999999"
    response = admin_client.get(merge_url, follow=True)
    assert "Choose at least two existing papers to merge." in response.content.decode()
    # Digits int() refuses, and numbers past a bigint: ignored, not a 500.
    odd_ids = f"{paper.pk},²,{'9' * 30}"
    merge_url = reverse("admin:catalogue_paper_merge")
    response = admin_client.get(merge_url, {"ids": odd_ids}, follow=True)
    assert "Choose at least two existing papers to merge." in response.content.decode()


def test_possible_duplicates_lists_alike_titles_with_a_merge_link(admin_client):
    seed_catalogue()
    upsert_papers([hf_card(source_key="mom-again", title="MoM - linear sequence modeling with")])
    upsert_papers([hf_card(source_key="mom-exact", title="MoM: Linear sequence modeling, with")])
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:catalogue_paper_duplicates"))
    assert response.status_code == 200
    pairs = response.context["pairs"]
    exact = Paper.objects.get(source_key="hf_page:mom-exact")
    again = Paper.objects.get(source_key="hf_page:mom-again")
    assert (pairs[0].newer, pairs[0].older) == (exact, again)
    assert pairs[0].same_title and pairs[0].similarity == 1
    merge_link = f"{reverse('admin:catalogue_paper_merge')}?ids={again.pk},{exact.pk}"
    assert merge_link in response.content.decode()
    assert all(pair.similarity >= merging.SIMILARITY_THRESHOLD for pair in pairs)
    assert len(queries) <= 8  # session, user, threshold, the pairs, their papers
