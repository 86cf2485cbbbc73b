"""WSGI entry point for production servers (gunicorn catalogue.wsgi)."""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalogue.settings")

application = get_wsgi_application()


def _freeze_what_lives_as_long_as_the_process() -> None:
    """Load every module a page needs (the URL configuration imports the views, forms and
    models), then put every object so far out of the garbage collector's reach
    (``gc.freeze``): they live as long as the process, and each full collection walked
    them all. Measured in a process serving 360 new queries at a million papers: 3 full
    collections of 75 ms each (a request in a hundred paid one), 9 ms each once frozen."""
    get_resolver().url_patterns  # noqa: B018 (imports the URL configuration)
    gc.freeze()


_freeze_what_lives_as_long_as_the_process()
