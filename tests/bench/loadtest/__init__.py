"""The loopback load test and crawler sweep of ``load_test`` (see that command).

- ``vocabulary``: words, phrases, authors, paper ids and months read from a benchmark corpus;
- ``workload``: the load test's endless stream of distinct URLs of mixed page classes, and
  the sweep's fixed list of deep pages, long ranges and calendar pages;
- ``locustfile``: the locust user that requests the stream (no think time) and records every
  request; it imports nothing of Django (locust monkey-patches with gevent);
- ``report``: percentiles and the tables.
"""
