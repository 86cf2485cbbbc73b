"""The ingest benchmark runs end to end on a tiny corpus (figures: make bench-ingest)."""

import re
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from catalogue.dburl import url_from_settings
from tests.bench.commands import command
from tests.bench.commands.bench_ingest import INTO_FIRST_ID
from tests.bench.synthetic import write_snapshot


@pytest.mark.django_db
def test_bench_ingest_prints_a_row_per_size_and_run_kind():
    out = StringIO()
    call_command(command("bench_ingest"), records=[300], runs=1, stdout=out)
    table = out.getvalue()
    assert re.search(r"\| 300 \| new papers \| [\d.]+ \| [\d,]+ \| \d+ \|", table), table
    assert re.search(r"\| 300 \| re-ingest \(unchanged\) \| [\d.]+ \| [\d,]+ \| \d+ \|", table)
    reference = re.search(
        r"\| 300 \| reference: COPY \+ vector, 1 connection \| [\d.]+ \| [\d,]+ \| - \|", table
    )
    assert reference, table
    assert re.search(r"300 new papers: [\d.]+x the reference", table), table


@pytest.mark.django_db
def test_bench_ingest_of_a_corpus_file_loads_it_into_an_empty_catalogue():
    """``--corpus``: the file's papers (a real snapshot's 200 lines here) are the size, and the
    reference is taken on them; with ``--into`` or without the file it is refused."""
    corpus = Path(settings.BASE_DIR, SNAPSHOT)
    out = StringIO()
    call_command(command("bench_ingest"), corpus=corpus, runs=1, stdout=out)
    table = out.getvalue()
    assert re.search(r"\| 200 \| new papers \| [\d.]+ \| [\d,]+ \| \d+ \|", table), table
    assert re.search(r"\| 200 \| reference: COPY \+ vector, 1 connection \|", table), table
    assert re.search(r"200 new papers: [\d.]+x the reference", table), table
    with pytest.raises(CommandError, match="give it without --into"):
        call_command(command("bench_ingest"), corpus=corpus, into="any", stdout=StringIO())
    with pytest.raises(CommandError, match="no such file"):
        call_command(command("bench_ingest"), corpus=corpus.with_name("none.jsonl"))


SNAPSHOT = "tests/data/formats/kaggle_arxiv_snapshot/arxiv-metadata-oai-snapshot_head200.jsonl"


@pytest.mark.django_db
def test_bench_ingest_into_a_copy_adds_new_papers_and_leaves_the_original_alone(tmp_path):
    """``--into``: each run ingests into a file copy of a catalogue; the reference copies the
    papers that run added; a catalogue already holding the snapshot's ids is refused."""
    db = settings.DATABASES["default"]
    name = f"{db['NAME']}_into"
    server_url, into_url = url_from_settings(db, "postgres"), url_from_settings(db, name)
    bench = command("bench_ingest")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        held = write_snapshot(tmp_path / "held.jsonl", 7)
        bench._manage(["migrate", "-v0"], into_url)
        bench._manage(["ingest", str(held), "--inline", "--no-progress"], into_url)

        out = StringIO()
        call_command(bench, records=[200], runs=1, into=name, stdout=out)
        table = out.getvalue()
        assert f"into a copy of {name}," in table, table
        assert re.search(r"\| 200 \| new papers \| [\d.]+ \| [\d,]+ \| \d+ \|", table), table
        assert re.search(r"200 new papers: [\d.]+x the reference", table), table
        assert _papers(into_url) == 7  # the original: as it was

        colliding = write_snapshot(tmp_path / "colliding.jsonl", 1, start=INTO_FIRST_ID)
        bench._manage(["ingest", str(colliding), "--inline", "--no-progress"], into_url)
        with pytest.raises(CommandError, match="already holds the snapshot's ids 3091.00000"):
            call_command(bench, records=[50], runs=1, into=name, stdout=StringIO())
        with psycopg.connect(server_url) as conn:
            bench_db = f"{db['NAME']}_bench"
            left = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [bench_db])
            assert left.fetchone()[0] == 0  # the run's copy is dropped, refused or not
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _papers(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM catalogue_paper").fetchone()[0]
