"""Each embedding carries its paper's publication date (``PaperEmbedding.published_on``),
kept by triggers as the topic links' (migration 0023): an embedding takes its paper's date
when it is written, and a paper's new date reaches its embedding. A nearest-neighbour scan of
a date range then tests the date on the row the HNSW index hands back.

The backfill is one rewrite of the table (``ALTER COLUMN ... TYPE ... USING``, the date
looked up per row), not an UPDATE: an UPDATE writes a new version of every row, entered one
by one into the HNSW index (a million papers: hours), and leaves the table twice its size,
each row's new version away from its neighbours' (the statements that read embeddings by
paper then read more pages). The HNSW index is dropped first and built once after, as it was.
"""

from django.db import migrations, models

SQL = r"""
CREATE FUNCTION catalogue_embedding_dated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.published_on := (SELECT published_on FROM catalogue_paper WHERE id = NEW.paper_id);
    RETURN NEW;
END $$;
CREATE TRIGGER paperembedding_dated BEFORE INSERT OR UPDATE ON catalogue_paperembedding
    FOR EACH ROW EXECUTE FUNCTION catalogue_embedding_dated();

CREATE OR REPLACE FUNCTION catalogue_paper_redated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalogue_papertopic SET published_on = NEW.published_on WHERE paper_id = NEW.id;
    UPDATE catalogue_paperembedding SET published_on = NEW.published_on WHERE paper_id = NEW.id;
    RETURN NULL;
END $$;

DROP INDEX embedding_hnsw;
CREATE FUNCTION pg_temp.paper_published_on(paper bigint) RETURNS date LANGUAGE sql STABLE
    AS 'SELECT published_on FROM catalogue_paper WHERE id = paper';
ALTER TABLE catalogue_paperembedding
    ALTER COLUMN published_on TYPE date USING pg_temp.paper_published_on(paper_id);
DROP FUNCTION pg_temp.paper_published_on(bigint);
SET LOCAL maintenance_work_mem = '1GB';
CREATE INDEX embedding_hnsw ON catalogue_paperembedding
    USING hnsw (vector halfvec_cosine_ops) WITH (m = 16, ef_construction = 64);
"""

REVERSE_SQL = """
DROP TRIGGER paperembedding_dated ON catalogue_paperembedding;
DROP FUNCTION catalogue_embedding_dated();
CREATE OR REPLACE FUNCTION catalogue_paper_redated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalogue_papertopic SET published_on = NEW.published_on WHERE paper_id = NEW.id;
    RETURN NULL;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("catalogue", "0023_topic_links_dated"),
    ]

    operations = [
        migrations.AddField(
            model_name="paperembedding",
            name="published_on",
            field=models.DateField(editable=False, null=True),
        ),
        migrations.RunSQL(SQL, reverse_sql=REVERSE_SQL),
    ]
