"""Beat sends the saved-search digests daily at 07:00 UTC (see catalogue.digest)."""

from zoneinfo import ZoneInfo

from django.db import migrations

TASK_NAME = "send saved-search digests"


def schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    seven_utc, _ = CrontabSchedule.objects.get_or_create(
        minute="0",
        hour="7",
        day_of_month="*",
        month_of_year="*",
        day_of_week="*",
        timezone=ZoneInfo("UTC"),
    )
    PeriodicTask.objects.update_or_create(
        name=TASK_NAME,
        defaults={
            "task": "catalogue.digest.send_digests",
            "crontab": seven_utc,
            "description": "Email each saved search with alerts on its newly matching papers.",
        },
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("catalogue", "0006_trigram_titles_and_curator_group"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
