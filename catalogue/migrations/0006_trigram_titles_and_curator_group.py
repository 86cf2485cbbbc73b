"""Curation: pg_trgm (title similarity for possible duplicates) and the ``curator`` group.

(This migration once also built a trigram GIN index over titles; 0008 replaces it.)
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

# What curators may do in the catalogue: curate papers and topics (not users, not sources).
CURATOR = "curator"
CURATOR_PERMISSIONS = {
    "paper": ("add", "change", "view"),
    "topic": ("add", "change", "view"),
    "papertopic": ("add", "change", "view"),
    "sighting": ("view",),
    "popularitysnapshot": ("view",),
    "paperalias": ("view",),
}


def create_curator_group(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations ran (post_migrate); this one needs
    # them now, on a fresh database too.
    app_config = apps.get_app_config("catalogue")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=CURATOR)
    codenames = [
        f"{action}_{model}" for model, actions in CURATOR_PERMISSIONS.items() for action in actions
    ]
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="catalogue", codename__in=codenames)
    )


def delete_curator_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=CURATOR).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("catalogue", "0005_schedule_trending"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        TrigramExtension(),
        migrations.RunPython(create_curator_group, delete_curator_group),
    ]
