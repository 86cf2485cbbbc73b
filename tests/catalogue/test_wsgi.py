"""The production entry point: what a server process holds for its whole life is loaded and
kept out of the garbage collector's full collections before the first request."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

REPORT = """
import gc, json, sys
import catalogue.wsgi
print(json.dumps({
    "frozen": gc.get_freeze_count(),
    "tracked": len(gc.get_objects()),
    "views_loaded": "catalogue.views" in sys.modules and "catalogue.api" in sys.modules,
    "query_model_loaded": sys.modules["catalogue.embedder"]._embedders.get(True) is not None,
}))
"""


def _report_of(script: str, **env: str) -> dict:
    """What ``script`` prints last (JSON), run in a process of its own (``env`` added to its
    environment): the collector's state is the process's, and importing catalogue.wsgi
    changes it."""
    shown = subprocess.run(
        [sys.executable, "-c", script],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "catalogue.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(shown.stdout.splitlines()[-1])


def test_the_wsgi_module_loads_the_pages_then_freezes_what_it_loaded():
    report = _report_of(REPORT)
    assert report["views_loaded"]
    # Nearly everything the import made is frozen: full collections walk only what
    # requests leave behind.
    assert report["frozen"] > 50_000
    assert report["tracked"] < report["frozen"] / 10
    # The query embedder too: a process's first search does not wait ~0.2 s to build it.
    assert report["query_model_loaded"]


@pytest.mark.parametrize("files", ["missing", "damaged"])
def test_the_wsgi_module_loads_without_a_working_model(tmp_path, files):
    """Pages work without the model (search by meaning waits for its files): a server
    process starts all the same, its files missing or unreadable."""
    if files == "damaged":
        for name in ("model.safetensors", "tokenizer.json", "config.json"):
            (tmp_path / name).write_text("not what it should be")
    report = _report_of(REPORT, EMBEDDING_MODEL_DIR=str(tmp_path))
    assert report["views_loaded"] and not report["query_model_loaded"]


BETWEEN_REQUESTS = """
import gc, json
import catalogue.wsgi
from django.core.signals import request_finished, request_started

def collections():
    return sum(generation["collections"] for generation in gc.get_stats())

kept = []  # what a request leaves for the process's life (a cache's entry)

def request(multithread, allocate=20_000):
    request_started.send(sender=None, environ={"wsgi.multithread": multithread})
    during = gc.isenabled()
    kept.append({"entry": [multithread]})
    before = collections()
    garbage = [[] for _ in range(allocate)]  # containers, as a page's querysets and rows are
    collected_during = collections() - before
    del garbage
    frozen = gc.get_freeze_count()
    request_finished.send(sender=None)
    [[] for _ in range(1_000)]  # what follows the response: the paused collections run
    return {"enabled_during": during, "collected_during": collected_during,
            "enabled_after": gc.isenabled(), "collected_after": collections() - before,
            "froze": gc.get_freeze_count() != frozen}

sync = [request(False) for _ in range(12)]
threaded = request(True)
print(json.dumps({"sync": sync, "threaded": threaded}))
"""


def test_a_sync_workers_collector_runs_between_requests_not_during_them():
    report = _report_of(BETWEEN_REQUESTS)
    for request in report["sync"]:
        assert not request["enabled_during"] and request["collected_during"] == 0
        assert request["enabled_after"] and request["collected_after"] > 0  # deferred, not lost
    # What the first requests loaded is frozen after the 1st and 10th, not after each one.
    assert [n for n, r in enumerate(report["sync"], 1) if r["froze"]] == [1, 10]
    # Threads may serve another request at any moment: the collector is left alone.
    threaded = report["threaded"]
    assert threaded["enabled_during"] and threaded["collected_during"] > 0
