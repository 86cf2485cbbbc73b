"""The sightings' and snapshots' own indexes on ``paper_id`` go: each table's unique
constraint (paper, source) and (paper, observed_on) starts with the paper and finds a paper's
rows as well. Every ingested paper then keeps one index fewer up to date (at 1M papers, 28 MB
and 8 MB of index).

The database side only drops the two indexes: Django's own AlterField would also drop and
re-add the foreign keys, checking every row again for nothing.
"""

import django.db.models.deletion
from django.db import migrations, models

FORWARD = """
DROP INDEX IF EXISTS catalogue_sighting_paper_id_e4a7fd23;
DROP INDEX IF EXISTS catalogue_popularitysnapshot_paper_id_83f8b364;
"""
BACKWARD = """
CREATE INDEX IF NOT EXISTS catalogue_sighting_paper_id_e4a7fd23
    ON catalogue_sighting (paper_id);
CREATE INDEX IF NOT EXISTS catalogue_popularitysnapshot_paper_id_83f8b364
    ON catalogue_popularitysnapshot (paper_id);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("catalogue", "0027_embedding_published_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
            state_operations=[
                migrations.AlterField(
                    model_name="popularitysnapshot",
                    name="paper",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="snapshots",
                        to="catalogue.paper",
                    ),
                ),
                migrations.AlterField(
                    model_name="sighting",
                    name="paper",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="sightings",
                        to="catalogue.paper",
                    ),
                ),
            ],
        ),
    ]
