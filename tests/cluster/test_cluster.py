"""Issue 15's cluster test: a worker host and the replica are lost while the catalogue ingests
100,000 papers and readers browse it; no paper is lost or doubled and no page fails.

The ingest is split into chunks that the workers on work1 and work2 execute at once. Once a
chunk has finished and work1 executes another, work1 is lost: its link goes down, then every
process on it is SIGKILLed (no FIN: the primary learns of it by TCP keepalive, which ends the
sessions holding its chunks' leases). Beat's reaper queues those chunks again and work2 resumes
them. Meanwhile a curator edits a paper through web1's admin and reads it back on web2 (the
``primary_reads`` cookie sends their reads to the primary, while the replica, its replay
paused, still shows anonymous readers the old title); then the replica's host is lost under
the readers' traffic, and pages keep answering from the primary. The timeline and the ingest
rates go to the terminal and to .data/cluster/last-run.txt.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.cluster.conftest import ADMIN, WORKER_CONCURRENCY, Site, logs_shown_on_failure
from tests.cluster.netns import Process
from tests.cluster.scenario import (
    Chunk,
    Progress,
    Readers,
    Timeline,
    chunks,
    log_in,
    make_payload,
    paper_form,
    received_runs,
    save_paper,
)
from tests.cluster.services import BASE_DIR
from tests.private_postgres import has_paper, insert_paper, wait_until

pytestmark = pytest.mark.cluster

CHUNKS = 16
INGEST_SECONDS = 420
REPORT = BASE_DIR / ".data" / "cluster" / "last-run.txt"
# Embedding 100,000 papers takes hours on two cores: mark a backfill as running, so ingest
# starts none (catalogue.tasks.queue_embedding) and the workers' cores go to the ingest.
NO_EMBEDDING = (
    "from catalogue.backfill import Backfill, redis_client; from catalogue.tasks import _queue; "
    "redis_client().set(Backfill.current_key(_queue()), 'held-by-the-cluster-test', ex=3600)"
)
RESULT = re.compile(
    r"Run (\d+) (\w+) \(arxiv_snapshot\): seen (\d+), created (\d+), updated (\d+), "
    r"unchanged (\d+), rejected (\d+)"
)
MARKERS = ["9912.00001", "9912.00002"]  # papers written straight to the primary (pre-2007 ids)


class Watcher(threading.Thread):
    """Polls the chunks on the primary every 0.25 s: progress samples and timeline events."""

    def __init__(self, site: Site, timeline: Timeline):
        super().__init__(daemon=True)
        self.site, self.timeline = site, timeline
        self.progress = Progress()
        self.latest: list[Chunk] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        before: dict[int, Chunk] = {}
        while not self.stopped.is_set():
            now = self.timeline.now()
            try:
                self.latest = chunks(self.site.primary)
            except Exception as error:  # the watch goes on; the checks tell what went wrong
                self.timeline.mark(f"watcher: {error}")
            if self.latest and not before:
                self.timeline.mark(f"{len(self.latest)} chunks queued")
            for chunk in self.latest:
                self._report(before.get(chunk.id), chunk)
                before[chunk.id] = chunk
            self.progress.add(now, sum(chunk.done for chunk in self.latest))
            time.sleep(0.25)

    def _report(self, before: Chunk | None, chunk: Chunk) -> None:
        host = chunk.host
        finished = sum(c.finished for c in self.latest)
        if before is None or before.status == chunk.status and before.worker == chunk.worker:
            return
        if chunk.finished:
            self.timeline.mark(f"chunk {chunk.id} {chunk.status} on {host} ({finished}/{CHUNKS})")
        elif chunk.status == "queued" and before.status == "running":
            self.timeline.mark(f"chunk {chunk.id} requeued by the reaper (was on {host})")
        elif chunk.status == "running" and chunk.attempts > 1:
            self.timeline.mark(f"chunk {chunk.id} resumed on {host} at {chunk.done:,} records")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.join(timeout=5)


def test_a_lost_worker_host_and_a_lost_replica_cost_no_paper_and_no_page(site: Site, corpus):
    timeline = Timeline()
    payload = make_payload(corpus, site.cluster.workdir / "payload.jsonl")
    timeline.mark(
        f"payload: {payload.lines:,} lines, {payload.distinct_ids:,} distinct papers, "
        f"{payload.bad_lines} lines of broken JSON, {payload.duplicates} papers twice"
    )
    site.manage("shell", "-c", NO_EMBEDDING)
    with (
        logs_shown_on_failure(site.cluster),
        Readers(site.webs) as readers,
        Watcher(site, timeline) as watcher,
    ):
        ingest = start_ingest(site, payload.path)
        timeline.mark(f"manage.py ingest --chunks {CHUNKS} started; readers on web1 and web2")
        killed_at, orphans = lose_work1_mid_run(site, timeline)
        curator_edit_reads_back_at_once(site, timeline)
        lose_replica_under_readers(site, readers, timeline)
        output = finish(site, ingest, timeline)
        time.sleep(2)  # a last round of reads while the replica is still gone

    _, status, *counts = RESULT.search(output).groups()
    seen, created, updated, unchanged, rejected = map(int, counts)
    totals = site.primary.query("SELECT count(*), count(DISTINCT arxiv_id) FROM catalogue_paper")[0]
    timeline.note(f"catalogue_paper: {totals[0]:,} rows, {totals[1]:,} distinct arXiv ids "
                  f"({len(MARKERS)} of them markers written straight to db1)")  # fmt: skip
    report(timeline, watcher.progress, killed_at, readers)

    assert status == "partial"  # finished, with the broken lines rejected
    assert rejected == payload.bad_lines
    assert seen + rejected == payload.lines
    assert created == payload.distinct_ids
    assert updated + unchanged == payload.duplicates
    assert totals == (payload.distinct_ids + len(MARKERS),) * 2, "a paper was doubled or lost"
    resumed = {c.id: c for c in chunks(site.primary)}
    for orphan in orphans:
        assert resumed[orphan].finished and resumed[orphan].host == "work2"
    assert readers.failures() == [], "a reader page failed"
    assert {r.web for r in readers.requests if r.phase == "replica lost"} == set(site.webs)


def start_ingest(site: Site, payload: Path) -> Process:
    """``manage.py ingest --chunks`` from the driver, the operator's terminal: it queues the
    chunks and waits for the run."""
    log = site.cluster.workdir / "logs" / "driver-ingest.log"
    command = [sys.executable, "manage.py", "ingest", str(payload), "--chunks", str(CHUNKS),
               "--no-progress", "--timeout", str(INGEST_SECONDS)]  # fmt: skip
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            command, cwd=BASE_DIR, env=site.env, stdout=out, stderr=subprocess.STDOUT
        )
    process = Process("driver/ingest", log, popen)
    site.cluster.driven.append(process)
    return process


def lose_work1_mid_run(site: Site, timeline: Timeline) -> tuple[float, list[int]]:
    """Once a chunk has finished and work1 executes one, lose work1; (when, its chunks)."""
    executing = wait_until(lambda: _work1_executing(site), timeout=INGEST_SECONDS, every=0.1)
    site.hosts["work1"].lose()
    # A chunk may have finished between that read and the loss (seen in CI: "chunk 5
    # succeeded on work1" in the same 0.1 s): lost, work1 can commit nothing more, so what
    # is unfinished now is what work2 must resume.
    unfinished = {c.id for c in chunks(site.primary) if not c.finished}
    orphans = [chunk for chunk in executing if chunk in unfinished]
    assert orphans, f"work1 finished chunks {executing} as it was lost: nothing to resume"
    killed_at = timeline.mark(f"work1 lost (link down, SIGKILL) while executing chunks {orphans}")
    address = site.hosts["work1"].address
    wait_until(
        lambda: (
            not site.primary.query(
                "SELECT 1 FROM pg_stat_activity WHERE client_addr = %s", [address]
            )
        ),
        timeout=60,
    )
    timeline.mark("db1 ended work1's sessions (TCP keepalive): its chunks' leases are free")
    return killed_at, orphans


def _work1_executing(site: Site) -> list[int]:
    """The chunks work1 executes, once a chunk has finished and each of work1's processes
    executes one: then work1 holds no task it has not started (prefetch: one per process).

    A chunk whose task the lost host had received and not yet started is sent again by the
    reaper only after INGEST_RESEND_QUEUED_AFTER (60 s here; its message would otherwise wait
    for the visibility timeout, hours): the timeline stays short by losing work1 while it
    holds no such task. ``tests/ingest/test_runs.py`` tests the resend itself."""
    latest = chunks(site.primary)
    executing = [c.id for c in latest if c.running_on("work1")]
    if len(executing) < WORKER_CONCURRENCY or not any(c.finished for c in latest):
        return []
    queued = {c.id for c in latest if c.status == "queued"}
    return [] if received_runs(site.env["REDIS_URL"]) & queued else executing


def curator_edit_reads_back_at_once(site: Site, timeline: Timeline) -> None:
    """A paper edited in web1's admin reads back on web2 for the curator, while the replica
    (its replay paused) still shows anonymous readers the old title."""
    paper_id, arxiv_id = site.replica.query(
        "SELECT id, arxiv_id FROM catalogue_paper ORDER BY id LIMIT 1"
    )[0]
    new_title = f"Edited in the cluster test {time.time():.0f}"
    with httpx.Client(base_url=site.webs["web1"], timeout=30) as curator:
        log_in(curator, *ADMIN)
        form = paper_form(curator, paper_id)
        pause_replay_after_a_commit(site)
        save_paper(curator, paper_id, form, title=new_title)
        cookies = dict(curator.cookies.items())
    timeline.mark(f"curator changed paper {arxiv_id}'s title on web1 (replica replay paused)")
    assert "primary_reads" in cookies
    paper = f"/papers/{arxiv_id}/"
    # The balancer sends the same browser to web2: its cookies go along.
    with httpx.Client(base_url=site.webs["web2"], cookies=cookies, timeout=30) as same_browser:
        assert new_title in same_browser.get(paper).text
    with httpx.Client(base_url=site.webs["web2"], timeout=30) as anonymous:
        wait_until(lambda: new_title not in _page(anonymous, paper), timeout=10)
    timeline.mark("web2 shows the curator the new title at once, anonymous readers the replica's")
    site.replica.query("SELECT pg_wal_replay_resume()::text")


def _page(client: httpx.Client, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, answer.status_code
    return answer.text


def pause_replay_after_a_commit(site: Site) -> None:
    """Pause the replica just after it replayed a fresh commit: its lag counts from now."""
    insert_paper(site.primary.url(), MARKERS[0])
    wait_until(lambda: has_paper(site.replica.url(), MARKERS[0]))
    site.replica.query("SELECT pg_wal_replay_pause()::text")


def lose_replica_under_readers(site: Site, readers: Readers, timeline: Timeline) -> None:
    """Lose db2 under the readers' traffic; a paper written after that reads on both webs."""
    served = site.replica.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'catalogue' "
        "AND client_addr = ANY(%s::inet[])",
        [[site.hosts[name].address for name in site.webs]],
    )[0][0]
    site.hosts["db2"].lose()
    readers.phase = "replica lost"
    timeline.mark(f"db2 lost (link down, SIGKILL); it had {served} sessions of web1 and web2")
    insert_paper(site.primary.url(), MARKERS[1])
    for name, url in site.webs.items():
        answer = httpx.get(f"{url}/papers/{MARKERS[1]}/", timeout=30)
        assert answer.status_code == 200, f"{name}: {answer.status_code}"
    timeline.mark("a paper written after the loss reads on web1 and web2: the primary answers")


def finish(site: Site, ingest: Process, timeline: Timeline) -> str:
    """Wait for ``manage.py ingest`` to report the run; what it printed."""
    try:
        ingest.popen.wait(timeout=INGEST_SECONDS + 30)
    except subprocess.TimeoutExpired:
        ingest.popen.kill()
        queued = {c.id for c in chunks(site.primary) if c.status == "queued"}
        stuck = received_runs(site.env["REDIS_URL"]) & queued
        message = f"the run did not finish; chunks received, never started: {stuck}"
        raise AssertionError(message) from None
    printed = ingest.log.read_text(errors="replace")
    assert ingest.popen.returncode == 0, printed[-3000:]
    timeline.mark(f"ingest done: {RESULT.search(printed)[0]}")
    return printed


def report(timeline: Timeline, progress: Progress, killed_at: float, readers: Readers) -> None:
    two = progress.rate(progress.first_write(), killed_at)
    one = progress.rate(killed_at, progress.last_write())
    timeline.note(
        f"ingest rate: {two:,.0f} papers/s with two worker hosts (before the kill), "
        f"{one:,.0f} with one (after it, the wait for keepalive and the reaper included)"
    )
    timeline.note(
        "On this machine every host shares the same two cores: the rates show that the run "
        "stays correct across hosts, not that a second host makes it faster."
    )
    for line in readers.summary():
        timeline.note(line)
    timeline.write(REPORT)
