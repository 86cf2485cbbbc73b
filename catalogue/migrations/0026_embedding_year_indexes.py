"""An HNSW index of each year's embeddings (``embedding_hnsw_<year>``, partial, by the
embedding's copy of its paper's date, migration 0024), 1991 to 2035, beside the whole
catalogue's (``embedding_hnsw``).

A search by meaning limited to a date range scans the whole index and drops the entries out
of range: it hands back about limit x catalogue / range entries before ``limit`` pass (at a
million papers, a range of 38,000: ~2,600 entries, 55 ms). Scanned year by year, each year's
index hands back about ``limit`` of its own (``catalogue.semantic.by_year``): a few small
scans, 5-10 ms. The years must match ``catalogue.semantic.INDEXED_YEARS`` (a test checks).
Empty years' indexes are a page or two; an embedding written enters its year's index too.
"""

from django.db import migrations

YEARS = range(1991, 2036)


def _create(year: int) -> str:
    return (
        f"CREATE INDEX embedding_hnsw_{year} ON catalogue_paperembedding"
        " USING hnsw (vector halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)"
        f" WHERE published_on >= '{year}-01-01' AND published_on < '{year + 1}-01-01';"
    )


SQL = "SET LOCAL maintenance_work_mem = '1GB';\n" + "\n".join(_create(year) for year in YEARS)
REVERSE_SQL = "\n".join(f"DROP INDEX embedding_hnsw_{year};" for year in YEARS)


class Migration(migrations.Migration):
    dependencies = [
        ("catalogue", "0025_word_months"),
    ]

    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
