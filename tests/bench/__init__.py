"""The benchmark tooling: corpora, the site, ingest and search benchmarks, the load test.

Not part of the product: it depends on both apps (``catalogue`` and ``ingest``) and neither
imports it. Its commands run as ``python -m tests.bench COMMAND [ARGS]`` (see ``__main__``);
``make bench``, ``bench-ingest``, ``eval``, ``load`` and ``profile`` call them. No module here
is named ``test_*``: pytest collects the tests of this tooling from ``tests/catalogue`` and
``tests/ingest``, never these files.

- ``corpus``: realistic synthetic arXiv corpora built from the real listing samples;
  ``synthetic``: the bundled snapshot sample repeated with fresh ids (also for fault tests);
- ``benchmark``: the site benchmark's parts (query mix, bench database, gunicorn, timing,
  report); ``evaluation``: relevance judgements and metrics;
- ``loadtest``: the load test's vocabulary, URL streams, locust user, sweep, tables and the
  page profiler's clock;
- ``commands``: the commands themselves (Django ``BaseCommand`` classes).
"""
