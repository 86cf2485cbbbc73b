"""Runs resume from a checkpoint under a lease, and store a capped sample of rejections.

Runs recorded before kept every rejection: their stored count is what they hold.
"""

import django.contrib.postgres.fields
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ingest', '0004_curators_view_runs'),
    ]

    operations = [
        migrations.AddField(
            model_name='ingestrun',
            name='batch_size',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='ingestrun',
            name='batches_ahead',
            field=django.contrib.postgres.fields.ArrayField(base_field=models.PositiveIntegerField(), blank=True, default=list, size=None),
        ),
        migrations.AddField(
            model_name='ingestrun',
            name='checkpoint',
            field=models.PositiveIntegerField(default=0, help_text='Batches written before any gap.'),
        ),
        migrations.AddField(
            model_name='ingestrun',
            name='rejections_stored',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='ingestrun',
            name='worker',
            field=models.CharField(blank=True, help_text='Host and pid executing it.', max_length=200),
        ),
        migrations.RunSQL(
            "UPDATE ingest_ingestrun run SET rejections_stored = ("
            "SELECT count(*) FROM ingest_rejectedrecord r WHERE r.run_id = run.id)",
            migrations.RunSQL.noop,
        ),
    ]
