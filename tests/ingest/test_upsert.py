import datetime as dt
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from catalogue.models import Paper
from ingest.records import PaperRecord
from ingest.sources import hf_page
from ingest.upsert import upsert_papers

pytestmark = pytest.mark.django_db


def record(**fields) -> PaperRecord:
    base = {
        "source": "hf_daily",
        "source_key": "2401.00001",
        "arxiv_id": "2401.00001",
        "title": "Linear attention for everyone",
        "abstract": "We decouple things.",
        "authors": ("Ada Lovelace", "Alan Turing"),
        "published_on": dt.date(2024, 1, 2),
        "listed_on": dt.date(2024, 1, 3),
        "upvotes": 10,
    }
    return PaperRecord(**{**base, **fields})


def test_same_records_twice_create_nothing_the_second_time(seed_bytes):
    records = list(hf_page.parse(seed_bytes, listed_on=dt.date(2025, 12, 24)))
    first = upsert_papers(records)
    second = upsert_papers(records)
    assert (first.created, first.updated, first.unchanged) == (49, 0, 0)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 49)
    assert Paper.objects.count() == 49


def test_replaying_an_older_listing_never_lowers_upvotes():
    upsert_papers([record(upvotes=10)])
    counts = upsert_papers([record(upvotes=3)])
    assert counts.unchanged == 1
    assert Paper.objects.get().upvotes == 10


def test_higher_upvotes_update_the_paper():
    upsert_papers([record(upvotes=10)])
    counts = upsert_papers([record(upvotes=12)])
    assert (counts.created, counts.updated) == (0, 1)
    assert Paper.objects.get().upvotes == 12


def test_earliest_dates_are_kept():
    upsert_papers([record(published_on=dt.date(2024, 1, 2), listed_on=dt.date(2024, 1, 5))])
    upsert_papers([record(published_on=dt.date(2024, 3, 1), listed_on=dt.date(2024, 1, 4))])
    paper = Paper.objects.get()
    assert paper.published_on == dt.date(2024, 1, 2)
    assert paper.listed_on == dt.date(2024, 1, 4)


def test_empty_incoming_fields_do_not_erase_known_ones():
    upsert_papers([record(code_url="https://github.com/a/b")])
    upsert_papers([record(abstract="", authors=(), code_url="")])
    paper = Paper.objects.get()
    assert paper.abstract == "We decouple things."
    assert paper.authors == ["Ada Lovelace", "Alan Turing"]
    assert paper.code_url == "https://github.com/a/b"


def test_curated_title_survives_reingest():
    upsert_papers([record()])
    Paper.objects.update(title="Curated title", curated_fields=["title"])
    upsert_papers([record(title="Ingested title", upvotes=20)])
    paper = Paper.objects.get()
    assert paper.title == "Curated title"
    assert paper.upvotes == 20


def test_duplicates_inside_one_batch_become_one_paper():
    counts = upsert_papers([record(upvotes=1), record(upvotes=5), record(upvotes=2)])
    assert counts.created == 1
    assert Paper.objects.get().upvotes == 5


def test_records_without_arxiv_id_are_keyed_by_source_and_key():
    card = record(arxiv_id=None, source="hf_page", source_key="some-title")
    upsert_papers([card, replace(card, source_key="other-title")])
    assert set(Paper.objects.values_list("source_key", flat=True)) == {
        "hf_page:some-title",
        "hf_page:other-title",
    }


def test_search_vector_is_generated_from_title_and_abstract():
    upsert_papers([record()])
    assert Paper.objects.search("decoupling").count() == 1
    assert Paper.objects.search('"linear attention"').count() == 1


def test_one_paper_seen_by_two_sources_is_one_row_with_two_sightings():
    upsert_papers([record(source="hf_daily", upvotes=7, categories=())])
    upsert_papers(
        [record(source="arxiv_atom", upvotes=None, categories=("cs.LG", "cs.CL"), version=2)]
    )
    paper = Paper.objects.get()
    assert sorted(paper.sightings.values_list("source", flat=True)) == ["arxiv_atom", "hf_daily"]
    assert paper.upvotes == 7  # popularity from HF survives the arXiv record without it
    assert paper.categories == ["cs.LG", "cs.CL"]
    assert paper.version == 2


def test_same_listing_twice_keeps_one_sighting_and_one_snapshot_per_day():
    day = dt.date(2025, 3, 3)
    upsert_papers([record(upvotes=7, github_stars=100)], observed_on=day)
    upsert_papers([record(upvotes=7, github_stars=100)], observed_on=day)
    paper = Paper.objects.get()
    assert paper.sightings.count() == 1
    assert list(paper.snapshots.values_list("observed_on", "upvotes", "github_stars")) == [
        (day, 7, 100)
    ]


def test_snapshots_build_a_popularity_history_across_days():
    upsert_papers([record(upvotes=3)], observed_on=dt.date(2025, 3, 3))
    upsert_papers([record(upvotes=9)], observed_on=dt.date(2025, 3, 4))
    upsert_papers([record(upvotes=5)], observed_on=dt.date(2025, 3, 4))  # an older replay
    history = Paper.objects.get().snapshots.order_by("observed_on")
    assert list(history.values_list("upvotes", flat=True)) == [3, 9]


def test_records_without_popularity_make_no_snapshot():
    upsert_papers([record(source="arxiv_atom", upvotes=None, github_stars=None)])
    assert not Paper.objects.get().snapshots.exists()


def test_changed_text_is_searchable_and_replaces_the_old_words():
    upsert_papers([record(abstract="We decouple things.")])
    counts = upsert_papers([record(abstract="We entangle things.")])
    assert (counts.created, counts.updated) == (0, 1)
    assert Paper.objects.search("entangled").count() == 1
    assert Paper.objects.search("decoupling").count() == 0


def test_a_popularity_change_alone_keeps_the_text_and_its_vector():
    upsert_papers([record(upvotes=10)])
    before = Paper.objects.values_list("search_vector", flat=True).get()
    counts = upsert_papers([record(upvotes=25, abstract="")])  # empty text: keep ours
    paper = Paper.objects.get()
    assert (counts.updated, paper.upvotes, paper.abstract) == (1, 25, "We decouple things.")
    assert Paper.objects.values_list("search_vector", flat=True).get() == before


def test_new_and_changed_papers_in_one_batch_are_counted_apart():
    upsert_papers([record(arxiv_id="2401.00001", source_key="2401.00001", upvotes=1)])
    counts = upsert_papers(
        [
            record(arxiv_id="2401.00001", source_key="2401.00001", upvotes=2),
            record(arxiv_id="2401.00002", source_key="2401.00002"),
        ]
    )
    assert (counts.created, counts.updated, counts.unchanged) == (1, 1, 0)


def test_a_paper_an_earlier_batch_of_the_same_transaction_inserted_is_still_merged():
    """The upsert skips comparing the papers its own insert just created: those an earlier
    batch of the same transaction created are not among them, and merge."""
    from django.db import transaction

    with transaction.atomic():
        first = upsert_papers([record(upvotes=1), record(arxiv_id="2401.00002", upvotes=1)])
        second = upsert_papers([record(upvotes=5), record(arxiv_id="2401.00003", upvotes=1)])
    assert (first.created, first.updated) == (2, 0)
    assert (second.created, second.updated, second.unchanged) == (1, 1, 0)
    assert Paper.objects.get(arxiv_id="2401.00001").upvotes == 5


@pytest.mark.django_db(transaction=True)
def test_a_paper_another_writer_inserts_meanwhile_is_merged_not_lost():
    """Writer A inserts a paper and has not committed; writer B's insert of the same paper
    waits for A, finds it there and must then merge its record into A's row."""
    import threading

    from django.db import connections, transaction

    a_inserted, b_result = threading.Event(), {}

    def writer_b():
        a_inserted.wait()
        try:
            b_result["counts"] = upsert_papers([record(upvotes=40)])
        finally:
            connections.close_all()

    b = threading.Thread(target=writer_b)
    b.start()
    with transaction.atomic():
        upsert_papers([record(upvotes=10)])
        a_inserted.set()
        b.join(timeout=1)  # B is now blocked on A's uncommitted row
        assert b.is_alive()
    b.join(timeout=10)
    assert (b_result["counts"].created, b_result["counts"].updated) == (0, 1)
    paper = Paper.objects.get()
    assert paper.upvotes == 40
    # B did not create the paper: its sighting and snapshot find it by its key.
    assert paper.sightings.count() == 1
    assert list(paper.snapshots.values_list("upvotes", flat=True)) == [40]


def test_one_batch_of_new_and_stored_papers_of_either_key_sees_each_paper_once():
    """The papers a batch creates take their sightings and snapshots from the ids its insert
    returned; the stored ones are looked up by arXiv id or source key. Each paper gets its own
    record's, whichever way it was found."""
    day = dt.date(2025, 3, 3)
    stored = [
        record(arxiv_id="2401.00001", source_key="2401.00001", upvotes=1),
        record(arxiv_id=None, source="hf_page", source_key="stored-page", upvotes=2),
    ]
    upsert_papers(stored, observed_on=day)
    counts = upsert_papers(
        [
            record(arxiv_id="2401.00001", source_key="2401.00001", upvotes=11),
            record(arxiv_id="2401.00002", source_key="2401.00002", upvotes=12),
            record(arxiv_id=None, source="hf_page", source_key="stored-page", upvotes=13),
            record(arxiv_id=None, source="hf_page", source_key="new-page", upvotes=14),
            # A key kind's value equal to the other kind's: still two papers.
            record(arxiv_id=None, source="hf_page", source_key="2401.00002", upvotes=15),
        ],
        observed_on=day,
    )
    assert (counts.created, counts.updated) == (3, 2)
    seen = {
        paper.arxiv_id or paper.source_key: (
            list(paper.sightings.values_list("source", flat=True)),
            list(paper.snapshots.values_list("observed_on", "upvotes")),
        )
        for paper in Paper.objects.all()
    }
    assert seen == {
        "2401.00001": (["hf_daily"], [(day, 11)]),
        "2401.00002": (["hf_daily"], [(day, 12)]),
        "hf_page:stored-page": (["hf_page"], [(day, 13)]),
        "hf_page:new-page": (["hf_page"], [(day, 14)]),
        "hf_page:2401.00002": (["hf_page"], [(day, 15)]),
    }


def test_a_papers_sightings_and_snapshots_are_found_by_their_unique_indexes():
    """Neither table keeps an index of its own on the paper (migration 0028): each unique
    constraint's index starts with the paper and finds a paper's rows."""
    upsert_papers([record(arxiv_id=f"2401.{n:05}", source_key=f"2401.{n:05}") for n in range(40)])
    paper_id = Paper.objects.get(arxiv_id="2401.00007").pk
    with connection.cursor() as cursor:
        # Forty papers a year of days each, counted: over one row and no statistics, the
        # planner priced a skip scan of the day index (observed_on, paper) as the unique index
        # and took either (a red run); over 366 days a skip scan costs 3-4x as much.
        cursor.execute(
            "INSERT INTO catalogue_popularitysnapshot (paper_id, observed_on, upvotes) "
            "SELECT paper.id, day, 1 FROM catalogue_paper AS paper, "
            "generate_series(date '2020-01-01', date '2020-12-31', interval '1 day') AS day"
        )
        cursor.execute("ANALYZE catalogue_sighting, catalogue_popularitysnapshot")
    expected = {
        "catalogue_sighting": "sighting_once_per_source",
        "catalogue_popularitysnapshot": "snapshot_once_per_paper_and_day",
    }
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for table, index in expected.items():
            cursor.execute(f"EXPLAIN SELECT * FROM {table} WHERE paper_id = %s", [paper_id])
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert re.search(rf"Index Scan (using|on) {index}\b", plan), plan
            cursor.execute(
                "SELECT count(*) FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
                [table, "%(paper_id)"],
            )
            assert cursor.fetchone()[0] == 0, f"{table} keeps an index on paper_id alone"


def test_a_long_abstract_and_its_search_vector_stay_in_the_papers_row():
    """Not in TOAST: compressing vectors (they barely compress) and chunking them out of line
    cost ingest ~15 % of PostgreSQL's time, and every phrase re-check a read of the chunks."""
    upsert_papers([record(abstract=_longest_real_abstract())])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_column_size(search_vector), reltoastrelid::regclass::text "
            "FROM catalogue_paper, pg_class WHERE pg_class.relname = 'catalogue_paper'"
        )
        vector_bytes, toast_table = cursor.fetchone()
        cursor.execute(f"SELECT count(*) FROM {toast_table}")
        assert cursor.fetchone()[0] == 0
    assert vector_bytes > 100


def test_a_long_abstract_is_stored_as_it_came_not_compressed():
    """The staging table compressed rows over 2 KB, and its compressed abstracts went into
    the papers as they were (pglz, ~3.5 µs a paper of ingest, and a decompression for each
    read): the papers' own rows are never compressed below a page (toast_tuple_target)."""
    # Two real abstracts as two paragraphs: ~3.5 KB, well over the staging table's default
    # threshold (~2 KB a row) and under a page with its search vector.
    abstract = "\n\n".join(_longest_real_abstracts(2))
    upsert_papers([record(abstract=abstract)])
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_column_compression(abstract) FROM catalogue_paper")
        assert cursor.fetchone()[0] is None


def _longest_real_abstract() -> str:
    return _longest_real_abstracts(1)[0]


def _longest_real_abstracts(count: int) -> list[str]:
    path = next(Path(settings.BASE_DIR, "tests/data/formats/kaggle_arxiv_snapshot").glob("*"))
    lines = path.read_text().splitlines()
    abstracts = sorted((json.loads(line)["abstract"].strip() for line in lines), key=len)
    return abstracts[-count:]


def test_lists_reach_the_database_exactly_whatever_their_characters():
    authors = ('O"Brien, J.', "Back\\slash", "{Braces}", "NULL", " spaced ", "Ñoño 李", "a,b")
    upsert_papers([record(authors=authors, categories=("cs.LG",), keywords=())])
    paper = Paper.objects.get()
    assert tuple(paper.authors) == authors
    assert paper.categories == ["cs.LG"] and paper.keywords == []
