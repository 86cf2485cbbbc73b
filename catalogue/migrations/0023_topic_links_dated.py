"""Each topic link carries its paper's publication date (``PaperTopic.published_on``), kept
by triggers whatever writes a link or a paper (the topic rules' INSERT ... SELECT, the admin,
merges, imports, ingest's upserts): a link takes its paper's date when it is written, and a
paper's new date reaches its links. An index of the shown links by topic and date then
answers a topic's papers of a date range.
"""

from django.db import migrations, models

SQL = r"""
CREATE FUNCTION catalogue_link_dated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.published_on := (SELECT published_on FROM catalogue_paper WHERE id = NEW.paper_id);
    RETURN NEW;
END $$;
CREATE TRIGGER papertopic_dated BEFORE INSERT OR UPDATE ON catalogue_papertopic
    FOR EACH ROW EXECUTE FUNCTION catalogue_link_dated();

CREATE FUNCTION catalogue_paper_redated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalogue_papertopic SET published_on = NEW.published_on WHERE paper_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER paper_redated AFTER UPDATE OF published_on ON catalogue_paper
    FOR EACH ROW WHEN (OLD.published_on IS DISTINCT FROM NEW.published_on)
    EXECUTE FUNCTION catalogue_paper_redated();

UPDATE catalogue_papertopic AS link SET published_on = paper.published_on
    FROM catalogue_paper AS paper WHERE paper.id = link.paper_id;
"""

REVERSE_SQL = """
DROP TRIGGER papertopic_dated ON catalogue_papertopic;
DROP TRIGGER paper_redated ON catalogue_paper;
DROP FUNCTION catalogue_link_dated();
DROP FUNCTION catalogue_paper_redated();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("catalogue", "0022_phrase_pairs"),
    ]

    operations = [
        migrations.AddField(
            model_name="papertopic",
            name="published_on",
            field=models.DateField(editable=False, null=True),
        ),
        migrations.RunSQL(SQL, reverse_sql=REVERSE_SQL),
        migrations.AddIndex(
            model_name="papertopic",
            index=models.Index(
                condition=models.Q(("reason__in", ["rule", "pinned"])),
                fields=["topic", "published_on"],
                include=("paper",),
                name="papertopic_topic_date_idx",
            ),
        ),
    ]
