"""What the cluster test does to the cluster and how it watches: the timeline, the payload,
the ingest's chunks, readers' traffic and a curator's edit through the admin."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import httpx

# A line per request of the readers' thousands would bury the timeline.
logging.getLogger("httpx").setLevel(logging.WARNING)

# --- The timeline ----------------------------------------------------------------------------


@dataclass
class Timeline:
    """Events in seconds since the scenario started, printed as they happen."""

    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.started

    def mark(self, event: str) -> float:
        at = self.now()
        self.note(f"{at:7.1f} s  {event}")
        return at

    def note(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n")


# --- The payload -----------------------------------------------------------------------------

BAD_LINE = '{"id": "2401.99999", "title": "cut short\n'


@dataclass
class Payload:
    path: Path
    lines: int
    bad_lines: int
    duplicates: int
    distinct_ids: int


def make_payload(corpus: Path, out: Path, every: int = 10_000) -> Payload:
    """The corpus with, every ``every`` lines, a line of broken JSON (a rejection) and a copy of
    a paper from half a stride earlier (the same paper twice, often in another chunk)."""
    lines = bad = duplicates = 0
    ids = set()
    with open(corpus, encoding="utf-8") as source, open(out, "w", encoding="utf-8") as target:
        recent = []
        for number, line in enumerate(source, 1):
            target.write(line)
            ids.add(json.loads(line)["id"])
            lines += 1
            recent.append(line)
            if number % every == 0:
                target.write(BAD_LINE)
                target.write(recent[len(recent) // 2])
                lines, bad, duplicates, recent = lines + 2, bad + 1, duplicates + 1, []
    return Payload(out, lines, bad, duplicates, len(ids))


# --- The ingest's chunks, as the primary records them --------------------------------------

CHUNKS_SQL = """
    SELECT id, status, worker, seen + rejected, attempts FROM ingest_ingestrun
    WHERE parent_id IS NOT NULL ORDER BY id
"""


@dataclass
class Chunk:
    id: int
    status: str
    worker: str  # "<node name> pid <pid>", the node name "worker@<host>" (services.py)
    done: int  # records written (seen and rejected)
    attempts: int

    @property
    def host(self) -> str:
        return self.worker.split(" pid ")[0].split("@")[-1] or "?"

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "partial", "failed")

    def running_on(self, host: str) -> bool:
        return self.status == "running" and self.host == host


def chunks(primary) -> list[Chunk]:
    return [Chunk(*row) for row in primary.query(CHUNKS_SQL)]


def received_runs(redis_url: str) -> set[int]:
    """Runs whose ``ingest_run`` task a worker has received and not acknowledged (kombu's
    Redis transport keeps such messages in its ``unacked`` hash until the worker acks them,
    or until the visibility timeout, hours, has passed)."""
    import redis

    runs = set()
    for value in redis.Redis.from_url(redis_url, socket_timeout=5).hvals("unacked"):
        message = json.loads(value)[0]
        if message["headers"].get("task") == "ingest.tasks.ingest_run":
            args, _, _ = json.loads(base64.b64decode(message["body"]))
            runs.add(args[0])
    return runs


@dataclass
class Progress:
    """Records written over time (sampled), for the ingest rate before and after a kill."""

    samples: list[tuple[float, int]] = field(default_factory=list)

    def add(self, at: float, done: int) -> None:
        self.samples.append((at, done))

    def at(self, moment: float) -> int:
        return max((done for at, done in self.samples if at <= moment), default=0)

    def first_write(self) -> float:
        return next(at for at, done in self.samples if done > 0)

    def last_write(self) -> float:
        final = self.samples[-1][1]
        return next(at for at, done in self.samples if done == final)

    def rate(self, start: float, end: float) -> float:
        return (self.at(end) - self.at(start)) / max(end - start, 1e-9)


# --- Readers ---------------------------------------------------------------------------------

WORDS = ["attention", "diffusion", "graph", "reinforcement", "language", "quantum"]
PAPER_LINK = re.compile(r'href="(/papers/[0-9]{4}\.[0-9]{4,5}/)"')


@dataclass
class Request:
    phase: str
    web: str
    path: str
    status: int  # 0: no answer
    seconds: float


class Readers:
    """One thread per web host GETting reader pages (the list, a search, a paper page linked
    from them, topics, the feed, the API) until stopped; every answer is kept with the phase
    it was asked in."""

    def __init__(self, webs: dict[str, str], timeout: float = 30, pause: float = 0.5):
        self.webs = webs
        self.timeout = timeout
        self.pause = pause  # between a reader's requests: the ingest needs the cores too
        self.phase = "replica up"
        self.requests: list[Request] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._read, args=(name, url), daemon=True)
            for name, url in webs.items()
        ]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)

    def _read(self, name: str, url: str) -> None:
        rng = random.Random(name)
        with httpx.Client(base_url=url, timeout=self.timeout) as client:
            for step in itertools.count():
                if self._stop.wait(self.pause):
                    return
                word = rng.choice(WORDS)
                pages = ["/", f"/?q={word}&mode=keyword", "/topics/", "/feed/",
                         f"/api/papers?q={word}&mode=keyword"]  # fmt: skip
                body = self._get(client, name, pages[step % len(pages)])
                links = PAPER_LINK.findall(body)
                if links:
                    self._get(client, name, rng.choice(links))

    def _get(self, client: httpx.Client, name: str, path: str) -> str:
        phase, began = self.phase, time.monotonic()
        try:
            response = client.get(path)
            status, body = response.status_code, response.text
        except httpx.HTTPError:
            status, body = 0, ""
        self.requests.append(Request(phase, name, path, status, time.monotonic() - began))
        return body

    def summary(self) -> list[str]:
        lines = []
        for phase in dict.fromkeys(request.phase for request in self.requests):
            asked = [r for r in self.requests if r.phase == phase]
            statuses = Counter(r.status for r in asked)
            seconds = sorted(r.seconds for r in asked)
            lines.append(
                f"readers, {phase}: {len(asked)} requests, statuses {dict(statuses)}, "
                f"median {seconds[len(seconds) // 2] * 1000:.0f} ms, max {seconds[-1]:.1f} s"
            )
        return lines

    def failures(self) -> list[Request]:
        return [request for request in self.requests if request.status != 200]


# --- A curator in the admin ------------------------------------------------------------------


def csrf_token(client: httpx.Client, path: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', client.get(path).text)[1]


def log_in(client: httpx.Client, username: str, password: str) -> None:
    token = csrf_token(client, "/admin/login/")
    answer = client.post(
        "/admin/login/?next=/admin/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
    )
    assert answer.status_code == 302, f"log-in failed: {answer.status_code} {answer.text[-500:]}"


def paper_form(client: httpx.Client, paper_id: int) -> dict[str, list[str]]:
    """What the paper's admin change form would submit as rendered."""
    page = client.get(f"/admin/catalogue/paper/{paper_id}/change/").text
    return FormFields.of(page, form_id="paper_form").data


def save_paper(client: httpx.Client, paper_id: int, form: dict, **changes: str) -> None:
    """Submit the change form with ``changes``, as a browser would."""
    path = f"/admin/catalogue/paper/{paper_id}/change/"
    answer = client.post(path, data={**form, **changes, "_save": "Save"})
    errors = re.findall(r'(?s)(.{0,300})<ul class="errorlist[^>]*>(.*?)</ul>', answer.text)
    assert answer.status_code == 302, f"the change was refused: {errors or answer.text[-2000:]}"


class FormFields(HTMLParser):
    """What a browser would submit from one form of a page, as rendered."""

    def __init__(self, form_id: str):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.data: dict[str, list[str]] = {}
        self._textarea: str | None = None
        self._select: str | None = None
        self._multiple = False
        self._options: list[tuple[str, bool]] = []

    @classmethod
    def of(cls, html: str, form_id: str) -> FormFields:
        parser = cls(form_id)
        parser.feed(html)
        assert parser.data, f"no form {form_id!r} on the page"
        return parser

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == self.form_id
        if not self.inside or "name" not in attrs and tag != "option":
            return
        if tag == "input":
            self._input(attrs)
        elif tag == "textarea":
            self._textarea = attrs["name"]
            self.data.setdefault(self._textarea, [""])
        elif tag == "select":
            self._select, self._multiple, self._options = attrs["name"], "multiple" in attrs, []
        elif tag == "option" and self._select:
            self._options.append((attrs.get("value", ""), "selected" in attrs))

    def _input(self, attrs: dict) -> None:
        kind = attrs.get("type", "text")
        if kind in ("submit", "button", "file", "image", "reset"):
            return
        if kind in ("checkbox", "radio") and "checked" not in attrs:
            return
        default = "on" if kind in ("checkbox", "radio") else ""
        value = attrs.get("value")
        self.data.setdefault(attrs["name"], []).append(default if value is None else value)

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea][-1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "textarea" and self._textarea:
            # Browsers drop the newline that follows <textarea> (Django writes one).
            value = self.data[self._textarea][-1]
            self.data[self._textarea][-1] = value.removeprefix("\r\n").removeprefix("\n")
            self._textarea = None
        elif tag == "select" and self._select:
            chosen = [value for value, selected in self._options if selected]
            if not chosen and self._options and not self._multiple:
                chosen = [self._options[0][0]]  # a browser sends a single select's first
            self.data[self._select] = chosen
            self._select = None
