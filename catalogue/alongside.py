"""Work run beside a request's own statements, on another database connection.

A hybrid search has two retrievals that do not need each other until they are fused: the
keyword matches (summary, ranking) and the nearest papers by meaning (the query's embedding
and an HNSW scan). Run one after the other, a reader waits for both; the scan is handed to a
thread here, which embeds the query and scans on its own connection while the request's
thread reads the keyword matches on its own. On two cores the page's wall time loses the
shorter of the two (``docs/benchmarks.md``, "twenty-third pass").

What keeps it the same search:

- the thread runs in a copy of the caller's context (``contextvars``), so it reads from the
  database the request's reads go to (``catalogue.routers``: the same replica, or the
  primary after a write);
- where the caller's connection is inside a transaction, its uncommitted rows would be
  invisible to another connection (a test's ``TestCase``, an ``atomic`` block): the work
  runs inline, at once, on the caller's connection;
- the thread's connections are kept like a request's (``CONN_MAX_AGE``): closed when broken
  or too old, checked before and after each piece of work;
- an exception in the work is raised again where its result is asked for;
- where every core has work already (more threads runnable at this instant than the cores
  this process may use, the caller included), a second connection has no core to run on: the
  work runs inline, and a saturated server pays no hand-offs or second backend for nothing
  (measured on two cores without this rule: ~7 % fewer requests a second at concurrency 32).

- once a thread works beside requests, the interpreter is handed between threads every
  ``SWITCH_INTERVAL`` (0.5 ms) instead of CPython's 5 ms: the thread whose statement has
  returned does not wait that long for the request's Python.

``SEARCH_ALONGSIDE = False`` (environment) runs everything inline.
"""

from __future__ import annotations

import contextvars
import os
import queue
import sys
import threading
from concurrent.futures import Future

from django.conf import settings
from django.db import close_old_connections, connections

from catalogue.env import usable_cores


class Inline:
    """Work already done on the caller's connection: ``result()`` as a future's."""

    def __init__(self, fn, *args):
        try:
            self._value, self._error = fn(*args), None
        except Exception as error:  # raised again where the result is asked for
            self._value, self._error = None, error

    def result(self):
        if self._error is not None:
            raise self._error
        return self._value


def start(alias: str, fn, *args) -> Future | Inline:
    """``fn(*args)`` on another thread and connection, or inline where it must see what the
    connection ``alias`` sees uncommitted; ``.result()`` waits for it."""
    if not settings.SEARCH_ALONGSIDE or connections[alias].in_atomic_block or cores_busy():
        return Inline(fn, *args)
    future = Future()
    _idle_worker().jobs.put((future, contextvars.copy_context(), fn, args))
    return future


def cores_busy() -> bool:
    """Whether more threads are runnable now than this process's cores (the caller is one).
    Linux counts them in /proc/loadavg (a read of microseconds); elsewhere the one-minute load
    average stands in. In a container the count is the host's: busier, so inline more often,
    which is the one-connection way, never worse than it."""
    cores = usable_cores()
    runnable = _runnable()
    if runnable is None:
        return os.getloadavg()[0] >= cores
    return runnable > cores


def _runnable() -> int | None:
    """Threads runnable on the host at this instant: /proc/loadavg's fourth field,
    "runnable/total" (None where there is no such file)."""
    try:
        with open("/proc/loadavg", encoding="ascii") as loadavg:
            return int(loadavg.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def close() -> None:
    """Stop every thread, each closing its connections once its work is done (a test's end:
    the test database cannot be dropped while they are open). New work starts new ones."""
    with _lock:
        stopping = list(_workers)
        _workers.clear()
        _idle.clear()
    for worker in stopping:
        worker.jobs.put(None)
    for worker in stopping:
        worker.join()


class _Worker(threading.Thread):
    """A thread that runs one piece of work at a time and keeps its connections between
    them, as a server's request thread does (``CONN_MAX_AGE``)."""

    def __init__(self):
        super().__init__(name="alongside", daemon=True)
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.start()

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            future, context, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(context.run(_with_connections_kept, fn, *args))
                except BaseException as error:  # the caller's to handle, at ``result()``
                    future.set_exception(error)
            with _lock:
                if self in _workers:  # (not when ``close`` is stopping it)
                    _idle.append(self)
        connections.close_all()


def _with_connections_kept(fn, *args):
    # A request's connections are checked when it starts and ends (request_started and
    # request_finished); this thread serves no request, so it checks its own around the work.
    close_old_connections()
    try:
        return fn(*args)
    finally:
        close_old_connections()


_lock = threading.Lock()
_workers: set[_Worker] = set()  # as many as requests ran at once
_idle: list[_Worker] = []  # those waiting for work


def _forget_threads() -> None:
    # A forked child (a server's worker) has none of its parent's threads.
    _workers.clear()
    _idle.clear()


os.register_at_fork(after_in_child=_forget_threads)


def _idle_worker() -> _Worker:
    with _lock:
        if _idle:
            return _idle.pop()
        _hand_the_interpreter_over_sooner()
        worker = _Worker()
        _workers.add(worker)
        return worker


# How long a thread holding the interpreter (the GIL) runs before one that waits for it
# gets it: CPython's default is 5 ms. A worker thread whose statement has returned waits
# for the request's thread to reach that point while it renders or fuses in Python, and
# the request then waits for the worker: measured at 100,000 papers, 30 common-word
# searches' pages took p50 26.5-27.1 ms at 5 ms and 24.8-25.0 at 0.5 ms (their neighbours'
# thread 15.4-16.8 against 14.7-15.1). Where only one thread runs, nothing changes: the
# interval matters only while another waits.
SWITCH_INTERVAL = 0.0005


def _hand_the_interpreter_over_sooner() -> None:
    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)
