"""Curators (the group catalogue's migrations create) may watch ingest runs, not steer sources."""

from django.db import migrations

CURATOR_VIEWS = ("view_ingestrun", "view_rejectedrecord")


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("ingest")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="curator")
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="ingest", codename__in=CURATOR_VIEWS)
    )


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name="curator"):
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="ingest", codename__in=CURATOR_VIEWS)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0003_source_validators"),
        ("catalogue", "0006_trigram_titles_and_curator_group"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
