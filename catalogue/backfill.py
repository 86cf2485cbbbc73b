"""The embedding backfill's state in Redis, which its chains on every worker host share.

A backfill splits the pending papers' ids into slices (``embedding.pending_slices``), one chain
of ``catalogue.tasks.embed_papers`` tasks each, so as many workers embed at once as there are
slices. Redis holds, per Celery queue (test sessions sharing one Redis each have their own):

- ``embed-backfill:<queue>``: the id of the backfill running now. Set only when absent (one
  backfill at a time: an ingest finishing meanwhile starts none), kept alive by every chunk
  of its chains and gone ``STALL_SECONDS`` after the last one: a backfill whose chains all
  died with their worker hosts gives way to the next one.
- ``…:<id>:slices``: slice name → the paper id its chain has reached. A task goes on only if
  its backfill is the current one and its slice is where the task starts: a task of an older
  backfill, or a redelivered copy of one whose successor is already queued, stops at once, so
  no two chains cover the same papers at once. A slice is removed when its chain ends; the
  chain that removes the last one ends the backfill.
- ``…:<id>:done``: worker name → papers it embedded, counted after each committed batch.
- ``…:<id>:meta``: how many papers were pending and in how many chains, whether it ended and
  whether a chain failed.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass

import redis
from django.conf import settings

# A backfill that no chunk of any chain has kept alive for this long is taken as dead, and
# the next ``queue_embedding`` starts another. Long enough for a chunk waiting behind other
# tasks (embedding has the lowest priority); a stale chain meeting a newer backfill stops.
STALL_SECONDS = 15 * 60
# How long the counts of an ended backfill stay readable (by ``manage.py embed --on-workers``).
KEEP_SECONDS = 3600

# Deletes KEYS[1] only if it still holds ARGV[1]: an ended backfill never clears a newer one.
_DELETE_IF_EQUAL = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


def redis_client() -> redis.Redis:
    return _client(settings.REDIS_URL.replace("redis+socket://", "unix://"))


def slice_name(upto: int | None) -> str:
    """A slice is named by its upper bound, which its chain's tasks all carry."""
    return "open" if upto is None else str(upto)


@dataclass(frozen=True)
class Backfill:
    id: str
    queue: str

    # --- one at a time ---------------------------------------------------------------------

    @staticmethod
    def current_key(queue: str) -> str:
        return f"embed-backfill:{queue}"

    @classmethod
    def start(cls, queue: str) -> Backfill | None:
        """A new backfill, unless one is running (then None)."""
        backfill = cls(uuid.uuid4().hex[:12], queue)
        started = redis_client().set(cls.current_key(queue), backfill.id, nx=True, ex=STALL_SECONDS)
        return backfill if started else None

    @classmethod
    def running(cls, queue: str) -> Backfill | None:
        current = redis_client().get(cls.current_key(queue))
        return None if current is None else cls(current.decode(), queue)

    def is_current(self) -> bool:
        return redis_client().get(self.current_key(self.queue)) == self.id.encode()

    # --- its slices ------------------------------------------------------------------------

    def _key(self, part: str) -> str:
        return f"{self.current_key(self.queue)}:{self.id}:{part}"

    def plan(self, slices: list[tuple[int, int | None]], pending: int) -> bool:
        """Record the slices, each at its start; False if they were recorded already (a
        redelivered planning task must not send the chains again)."""
        client = redis_client()
        if not client.hsetnx(self._key("meta"), "planned", 1):
            return False
        with client.pipeline() as pipe:
            if slices:
                pipe.hset(self._key("slices"), mapping={slice_name(u): a for a, u in slices})
            pipe.hset(self._key("meta"), mapping={"chains": len(slices), "pending": pending})
            self._expire(pipe, STALL_SECONDS)
            pipe.execute()
        return True

    def may_go_on(self, name: str, after: int) -> bool:
        """Whether the task of slice ``name`` starting above ``after`` is the one to go on."""
        with redis_client().pipeline() as pipe:
            pipe.get(self.current_key(self.queue))
            pipe.hget(self._key("slices"), name)
            current, position = pipe.execute()
        return current == self.id.encode() and position == str(after).encode()

    def advance(self, name: str, last: int) -> None:
        """The slice's chain goes on above ``last``; keeps the backfill alive."""
        with redis_client().pipeline() as pipe:
            pipe.hset(self._key("slices"), name, last)
            self._expire(pipe, STALL_SECONDS)
            pipe.execute()
        # Only while it is ours: once expired, the key may name a newer backfill.
        if self.is_current():
            redis_client().expire(self.current_key(self.queue), STALL_SECONDS)

    def record(self, worker: str, embedded: int) -> None:
        """Count papers that ``worker`` embedded (and committed)."""
        with redis_client().pipeline() as pipe:
            pipe.hincrby(self._key("done"), worker, embedded)
            pipe.expire(self._key("done"), STALL_SECONDS)
            pipe.execute()

    def finish(self, name: str, failed: bool = False) -> bool:
        """The slice's chain ended (``failed``: with an error); True if it was the last."""
        with redis_client().pipeline() as pipe:  # MULTI: one chain alone sees the last
            pipe.hdel(self._key("slices"), name)
            pipe.hlen(self._key("slices"))
            if failed:
                pipe.hset(self._key("meta"), "failed", 1)
            removed, left, *_ = pipe.execute()
        return removed == 1 and left == 0

    def end(self) -> None:
        """No chain is left: the next ``queue_embedding`` may start a backfill."""
        client = redis_client()
        # Marked ended first: whoever follows it never sees it gone but not ended.
        with client.pipeline() as pipe:
            pipe.hset(self._key("meta"), "ended", 1)
            self._expire(pipe, KEEP_SECONDS)
            pipe.execute()
        client.eval(_DELETE_IF_EQUAL, 1, self.current_key(self.queue), self.id)

    def _expire(self, pipe, seconds: int) -> None:
        for part in ("slices", "done", "meta"):
            pipe.expire(self._key(part), seconds)

    # --- what it did -----------------------------------------------------------------------

    def meta(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in redis_client().hgetall(self._key("meta")).items()}

    def counts(self) -> dict[str, int]:
        """Papers embedded by each worker so far."""
        done = redis_client().hgetall(self._key("done"))
        return {worker.decode(): int(n) for worker, n in done.items()}

    def live_slices(self) -> dict[str, int]:
        """Slice name → the id its chain has reached, for the chains not ended yet."""
        slices = redis_client().hgetall(self._key("slices"))
        return {name.decode(): int(at) for name, at in slices.items()}
