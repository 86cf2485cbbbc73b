"""The load test's locust user: requests the next URL of a prepared list, with no think time.

``load_test`` writes the list (``LOADTEST_URLS``: one "page class<TAB>URL" a line,
every URL distinct) and runs locust headless on this file; every request is recorded
(page class, milliseconds, status, whether the page cache answered) into ``LOADTEST_RECORD``
as JSON when locust quits, so the command computes exact percentiles (locust's own round
response times to two significant digits).

No Django here: locust monkey-patches the standard library with gevent before this loads.
"""

from __future__ import annotations

import json
import os

from locust import FastHttpUser, constant, events, task

with open(os.environ["LOADTEST_URLS"], encoding="utf-8") as _file:
    _URLS = iter([line.rstrip("\n").split("\t", 1) for line in _file])
_RECORDS: list[tuple[str, float, int, bool]] = []


class Reader(FastHttpUser):
    wait_time = constant(0)
    network_timeout = 120.0
    connection_timeout = 10.0

    @task
    def next_page(self) -> None:
        try:
            name, url = next(_URLS)
        except StopIteration:  # the command prepares more URLs than a run can use
            self.environment.runner.quit()
            return
        with self.client.get(url, name=name, catch_response=True) as response:
            hit = response.headers.get("X-Page-Cache") == "hit" if response.headers else False
            ms = response.request_meta["response_time"]
            _RECORDS.append((name, ms, response.status_code, hit))
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")


@events.quitting.add_listener
def _write_records(environment, **kwargs) -> None:
    with open(os.environ["LOADTEST_RECORD"], "w", encoding="utf-8") as file:
        json.dump(_RECORDS, file)
