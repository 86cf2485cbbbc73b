"""The ingest benchmark runs end to end on a tiny corpus (figures: make bench-ingest)."""

import re
from io import StringIO

import pytest
from django.core.management import call_command

from tests.bench.commands import command


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
