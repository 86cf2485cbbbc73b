"""The Celery application. Settings live in Django settings under the CELERY_ prefix."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalogue.settings")

app = Celery("catalogue")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic tasks of the code (Sources add their own rows to django_celery_beat's tables).
app.conf.beat_schedule = {
    # Ingest runs whose worker died are queued again to resume (ingest.tasks): within 30 s,
    # not after the broker's visibility timeout of hours.
    "requeue-orphaned-ingest-runs": {
        "task": "ingest.tasks.requeue_orphaned_runs",
        "schedule": 30.0,
    },
}
