"""A common word's matches by month, newest first, each with its rank (catalogue.wordmonths).

``catalogue_wordmonth``: one row per common lexeme (``catalogue_commonword``) and month, its
papers' ids newest first with each one's rank for that word alone, day of the month and
whether the word is in its title, as parallel arrays. Derived data, kept apart from ingest:
triggers on the papers log the months whose papers changed (``catalogue_wordmonthchange``,
append-only, so no ingest waits on another's lock), whatever wrote them (ingest, imports, the
admin), and a background task rebuilds those months. Nothing is logged while no word is
common (a new or small catalogue). Undated papers are the month 0001-01-01.
"""

from django.db import migrations

SQL = r"""
CREATE TABLE catalogue_commonword (lexeme text PRIMARY KEY);
-- The ranking's settings (search.RANKING_SETTINGS) the ranks were computed with,
-- and how many papers there were when the common words were counted.
CREATE TABLE catalogue_wordmonthsettings (ranking text NOT NULL, papers bigint NOT NULL);
CREATE TABLE catalogue_wordmonth (
    lexeme text NOT NULL,
    month date NOT NULL,
    n integer NOT NULL,
    titled integer NOT NULL,
    ids integer[] NOT NULL,
    ranks real[] NOT NULL,
    days smallint[] NOT NULL,
    in_title boolean[] NOT NULL,
    PRIMARY KEY (lexeme, month)
);
CREATE TABLE catalogue_wordmonthchange (month date NOT NULL);
CREATE INDEX wordmonthchange_month ON catalogue_wordmonthchange (month);

CREATE FUNCTION catalogue_word_month(published date) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(date_trunc('month', published)::date, '0001-01-01'::date)
$$;

CREATE FUNCTION catalogue_word_months_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM catalogue_commonword) THEN
        INSERT INTO catalogue_wordmonthchange (month)
        SELECT DISTINCT catalogue_word_month(published_on) FROM changed_papers;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER paper_word_months_inserted AFTER INSERT ON catalogue_paper
    REFERENCING NEW TABLE AS changed_papers
    FOR EACH STATEMENT EXECUTE FUNCTION catalogue_word_months_inserted();
CREATE TRIGGER paper_word_months_deleted AFTER DELETE ON catalogue_paper
    REFERENCING OLD TABLE AS changed_papers
    FOR EACH STATEMENT EXECUTE FUNCTION catalogue_word_months_inserted();

CREATE FUNCTION catalogue_word_months_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM catalogue_commonword) THEN
        INSERT INTO catalogue_wordmonthchange (month)
        SELECT DISTINCT m FROM (VALUES (catalogue_word_month(OLD.published_on)),
                                       (catalogue_word_month(NEW.published_on))) AS months(m);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER paper_word_months_changed AFTER UPDATE ON catalogue_paper
    FOR EACH ROW WHEN (
        OLD.search_vector IS DISTINCT FROM NEW.search_vector
        OR OLD.published_on IS DISTINCT FROM NEW.published_on
        OR OLD.hidden IS DISTINCT FROM NEW.hidden
    )
    EXECUTE FUNCTION catalogue_word_months_changed();

-- A truncate of the papers (the tests' flush, a restore) fires no row's trigger: every
-- derived row goes with them.
CREATE FUNCTION catalogue_word_months_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE catalogue_commonword, catalogue_wordmonthsettings, catalogue_wordmonth,
        catalogue_wordmonthchange;
    RETURN NULL;
END $$;
CREATE TRIGGER paper_word_months_truncated AFTER TRUNCATE ON catalogue_paper
    FOR EACH STATEMENT EXECUTE FUNCTION catalogue_word_months_truncated();
"""

REVERSE_SQL = """
DROP TRIGGER paper_word_months_truncated ON catalogue_paper;
DROP FUNCTION catalogue_word_months_truncated();
DROP TRIGGER paper_word_months_inserted ON catalogue_paper;
DROP TRIGGER paper_word_months_deleted ON catalogue_paper;
DROP TRIGGER paper_word_months_changed ON catalogue_paper;
DROP FUNCTION catalogue_word_months_inserted();
DROP FUNCTION catalogue_word_months_changed();
DROP FUNCTION catalogue_word_month(date);
DROP TABLE catalogue_wordmonthchange;
DROP TABLE catalogue_wordmonth;
DROP TABLE catalogue_wordmonthsettings;
DROP TABLE catalogue_commonword;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("catalogue", "0024_embeddings_dated"),
    ]

    operations = [migrations.RunSQL(SQL, reverse_sql=REVERSE_SQL)]
