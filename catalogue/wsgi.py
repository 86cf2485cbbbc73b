"""WSGI entry point for production servers (gunicorn catalogue.wsgi)."""

import gc
import logging
import os

from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalogue.settings")

application = get_wsgi_application()

from catalogue import embedder  # noqa: E402 (after the settings are configured)


def _freeze_what_lives_as_long_as_the_process() -> None:
    """Load every module a page needs (the URL configuration imports the views, forms and
    models) and the model that embeds readers' queries, then put every object so far out of
    the garbage collector's reach (``gc.freeze``): they live as long as the process, and
    each full collection walked them all. Measured in a process serving 360 new queries at
    a million papers: 3 full collections of 75 ms each (a request in a hundred paid one),
    9 ms each once frozen."""
    get_resolver().url_patterns  # noqa: B018 (imports the URL configuration)
    _load_the_query_model()
    gc.freeze()


def _load_the_query_model() -> None:
    """The query embedder (``embedder.get_query_embedder``), where its files are installed:
    built on a process's first search otherwise, that reader waited ~0.2 s more (225 ms
    measured: the graph from the weights, the runtime's session), once per server process."""
    try:
        embedder.get_query_embedder()
    except embedder.ModelFilesMissing:
        pass  # no search by meaning until they are installed; pages work all the same
    except Exception:
        # Damaged files must not keep the server from serving pages: a search by meaning
        # meets the same error, as it did when the model was built on the first one.
        logging.getLogger(__name__).exception("The query embedder did not load")


class CollectBetweenRequests:
    """The garbage collector runs between requests, not during them.

    A page allocates some 60,000 objects, so CPython's collector interrupted every request
    one to three times, and about one in twelve paid a collection of the older generations
    (2-4 ms; a full one 14 ms, unfrozen). Where the server runs one request at a time per
    process (``wsgi.multithread`` false: gunicorn's sync workers), the collector is paused
    while a request runs and resumed when its response is closed, which the server does
    after sending the body: the collections the request's allocations call for run then,
    while the reader already has the page. (With threads another request may be running
    at any moment, so the collector is left alone.)

    What the first requests load lives as long as the process too (the compiled
    templates, the form classes): after the 1st, 10th and 100th request the collector
    collects everything, then freezes what survived (``FREEZE_AFTER``)."""

    FREEZE_AFTER = (1, 10, 100)

    def __init__(self):
        self.paused = False
        self.served = 0

    def connect(self) -> None:
        # Strong references: the signals keep this object alive for the process's life.
        uid = "collect-between-requests"
        request_started.connect(self.pause, weak=False, dispatch_uid=uid)
        request_finished.connect(self.resume, weak=False, dispatch_uid=uid)

    def pause(self, sender=None, environ=None, **kwargs) -> None:
        if environ is None or environ.get("wsgi.multithread", True) or not gc.isenabled():
            return
        gc.disable()
        self.paused = True

    def resume(self, sender=None, **kwargs) -> None:
        if not self.paused:
            return
        self.paused = False
        gc.enable()
        self.served += 1
        if self.served in self.FREEZE_AFTER:
            gc.collect()
            gc.freeze()


_freeze_what_lives_as_long_as_the_process()
CollectBetweenRequests().connect()
