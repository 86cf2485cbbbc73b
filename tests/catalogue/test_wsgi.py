"""The production entry point: what a server process holds for its whole life is loaded and
kept out of the garbage collector's full collections before the first request."""

import json
import os
import subprocess
import sys

from django.conf import settings

REPORT = """
import gc, json, sys
import catalogue.wsgi
print(json.dumps({
    "frozen": gc.get_freeze_count(),
    "tracked": len(gc.get_objects()),
    "views_loaded": "catalogue.views" in sys.modules and "catalogue.api" in sys.modules,
}))
"""


def test_the_wsgi_module_loads_the_pages_then_freezes_what_it_loaded():
    shown = subprocess.run(
        [sys.executable, "-c", REPORT],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "catalogue.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(shown.stdout.splitlines()[-1])
    assert report["views_loaded"]
    # Nearly everything the import made is frozen: full collections walk only what
    # requests leave behind.
    assert report["frozen"] > 50_000
    assert report["tracked"] < report["frozen"] / 10
