"""Possible duplicates: group titles by the start of their normalised words (an index).

A trigram GIN index over titles (0006 built one on some databases) makes ``%`` probes slow on
a large catalogue: common trigrams have posting lists of most rows, and it costs every ingest.
Instead, titles are compared only with titles that start with the same 32 normalised
characters, found by a B-tree index; ``similarity()`` (pg_trgm) then scores those few.
"""

from django.db import migrations

TITLE_KEY = """
CREATE FUNCTION catalogue_title_key(text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN btrim(lower(regexp_replace($1, '[^[:alnum:]]+', ' ', 'g')))
"""


class Migration(migrations.Migration):
    dependencies = [("catalogue", "0007_schedule_digests")]

    operations = [
        migrations.RunSQL(
            "DROP INDEX IF EXISTS paper_title_trgm",
            reverse_sql=migrations.RunSQL.noop,
        ),
        # lower() and regexp_replace() are immutable for a given database; a wrapper is what an
        # expression index needs (like catalogue_authors_text in 0004).
        migrations.RunSQL(TITLE_KEY, reverse_sql="DROP FUNCTION catalogue_title_key(text)"),
        migrations.RunSQL(
            "CREATE INDEX paper_title_key_idx ON catalogue_paper "
            "(left(catalogue_title_key(title), 32), id)",
            reverse_sql="DROP INDEX paper_title_key_idx",
        ),
    ]
