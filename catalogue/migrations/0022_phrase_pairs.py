"""Adjacent word pairs of each paper's search vector, for phrase searches (catalogue.phrases).

``catalogue_phrase_pairs(vector)``: the distinct pairs of lexemes at adjacent positions, each
"first second" hashed to an int4 by the first 4 bytes of its md5 (stable across PostgreSQL
versions, and the same in Python: ``phrases.pair_hash``). Triggers on the papers keep
``catalogue_phrasepending`` true whatever writes a paper (ingest, imports, the admin): every
new paper, and every paper whose search vector changes, waits there until the background task
pairs it; a deleted paper's rows go with it. Existing papers all start pending.
"""

import django.contrib.postgres.fields
import django.contrib.postgres.indexes
from django.db import migrations, models


SQL = r"""
CREATE FUNCTION catalogue_phrase_pairs(vector tsvector) RETURNS integer[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(
        array_agg(DISTINCT ('x' || left(md5(first.lexeme || ' ' || second.lexeme), 8))::bit(32)::integer),
        '{}'
    )
    FROM (SELECT lexeme, unnest(positions) AS position FROM unnest(vector)) AS first
    JOIN (SELECT lexeme, unnest(positions) AS position FROM unnest(vector)) AS second
        ON second.position = first.position + 1
$$;

CREATE FUNCTION catalogue_phrases_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO catalogue_phrasepending (paper_id) SELECT id FROM inserted_papers
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER paper_phrases_inserted AFTER INSERT ON catalogue_paper
    REFERENCING NEW TABLE AS inserted_papers
    FOR EACH STATEMENT EXECUTE FUNCTION catalogue_phrases_inserted();

CREATE FUNCTION catalogue_phrases_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO catalogue_phrasepending (paper_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER paper_phrases_changed AFTER UPDATE ON catalogue_paper
    FOR EACH ROW WHEN (OLD.search_vector IS DISTINCT FROM NEW.search_vector)
    EXECUTE FUNCTION catalogue_phrases_changed();

CREATE FUNCTION catalogue_phrases_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM catalogue_phrasepairs WHERE paper_id IN (SELECT id FROM deleted_papers);
    DELETE FROM catalogue_phrasepending WHERE paper_id IN (SELECT id FROM deleted_papers);
    RETURN NULL;
END $$;
CREATE TRIGGER paper_phrases_deleted AFTER DELETE ON catalogue_paper
    REFERENCING OLD TABLE AS deleted_papers
    FOR EACH STATEMENT EXECUTE FUNCTION catalogue_phrases_deleted();

INSERT INTO catalogue_phrasepending (paper_id) SELECT id FROM catalogue_paper;
"""

REVERSE_SQL = """
DROP TRIGGER paper_phrases_inserted ON catalogue_paper;
DROP TRIGGER paper_phrases_changed ON catalogue_paper;
DROP TRIGGER paper_phrases_deleted ON catalogue_paper;
DROP FUNCTION catalogue_phrases_inserted();
DROP FUNCTION catalogue_phrases_changed();
DROP FUNCTION catalogue_phrases_deleted();
DROP FUNCTION catalogue_phrase_pairs(tsvector);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("catalogue", "0021_sort_indexes_cover_code_links"),
    ]

    operations = [
        migrations.CreateModel(
            name="PhrasePending",
            fields=[
                ("paper_id", models.BigIntegerField(primary_key=True, serialize=False)),
            ],
        ),
        migrations.CreateModel(
            name="PhrasePairs",
            fields=[
                ("paper_id", models.BigIntegerField(primary_key=True, serialize=False)),
                (
                    "pairs",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.IntegerField(), size=None
                    ),
                ),
            ],
            options={
                "indexes": [
                    django.contrib.postgres.indexes.GinIndex(
                        fields=["pairs"], name="phrase_pairs_gin"
                    )
                ],
            },
        ),
        migrations.RunSQL(SQL, reverse_sql=REVERSE_SQL),
    ]
