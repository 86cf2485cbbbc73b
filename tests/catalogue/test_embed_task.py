"""The embedding backfill: chains over disjoint slices of the pending papers' ids, one backfill
at a time, the last chain to end looking over every paper. Here the test runs the tasks by
hand from a queue no worker reads; tests/catalogue/test_embed_workers.py runs them on workers.
"""

from __future__ import annotations

import base64
import json

import pytest
import redis
from django.conf import settings

from catalogue import tasks
from catalogue.backfill import Backfill
from catalogue.embedding import pending_papers, pending_slices
from catalogue.models import Paper, PaperEmbedding
from tests.conftest import private_queue

# kombu's Redis transport keeps priority n of queue q in the list "q\x06\x16n" (0: "q").
SEP = "\x06\x16"


@pytest.fixture
def queue():
    """A queue no worker reads: the test looks at the messages left in Redis."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    with private_queue() as name:
        try:
            yield name, client
        finally:
            take((name, client))
            forget_backfills(name)


def forget_backfills(queue_name: str) -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(f"{Backfill.current_key(queue_name)}*"):
        client.delete(key)


def queued(queue) -> dict[int, list]:
    """The (task name, positional arguments) of the tasks waiting in each priority list."""
    name, client = queue
    lists = {0: name, **{n: f"{name}{SEP}{n}" for n in range(1, 10)}}
    waiting = {}
    for priority, key in lists.items():
        # kombu pushes on the left and pops on the right: reversed, the order of sending.
        messages = [json.loads(raw) for raw in reversed(client.lrange(key, 0, -1))]
        if messages:
            waiting[priority] = [
                (m["headers"]["task"].rsplit(".", 1)[1], json.loads(base64.b64decode(m["body"]))[0])
                for m in messages
            ]
    return waiting


def take(queue) -> list:
    """Empty the queue, returning what it held: the test runs the tasks itself."""
    name, client = queue
    waiting = [task for tasks_ in queued(queue).values() for task in tasks_]
    client.delete(name, *(f"{name}{SEP}{n}" for n in range(1, 10)))
    return waiting


def run(task: tuple[str, list]):
    name, args = task
    return getattr(tasks, name)(*args)


def papers(count: int) -> list[Paper]:
    return [
        Paper.objects.create(arxiv_id=f"2503.{n:05d}", title=f"Paper {n}", abstract="Short.")
        for n in range(count)
    ]


def started(queue) -> Backfill:
    """Start a backfill and plan it here, as the worker would."""
    assert tasks.queue_embedding()
    [plan] = take(queue)
    assert plan[0] == "plan_embedding"
    run(plan)
    return Backfill.running(queue[0])


def test_one_backfill_at_a_time_planned_at_the_lowest_priority(queue):
    assert tasks.queue_embedding() is True
    assert tasks.queue_embedding() is False  # an ingest finishing meanwhile adds nothing
    backfill = Backfill.running(queue[0])
    assert queued(queue) == {9: [("plan_embedding", [backfill.id])]}


@pytest.mark.django_db
def test_pending_papers_split_into_disjoint_slices_of_near_equal_size():
    made = papers(10)
    slices, pending = pending_slices(3)
    assert pending == 10
    ids = [p.pk for p in made]
    members = [
        [pk for pk in ids if after < pk and (upto is None or pk <= upto)] for after, upto in slices
    ]
    assert sorted(pk for member in members for pk in member) == ids  # each paper in one slice
    assert [len(member) for member in members] in ([4, 3, 3], [3, 4, 3], [3, 3, 4])
    assert slices[0][0] == 0 and slices[-1][1] is None  # open above: new papers join the last

    Paper.objects.filter(pk__in=ids[:-1]).delete()  # fewer pending papers than chains
    slices, pending = pending_slices(3)
    assert pending == 1 and slices == [(0, ids[-1]), (ids[-1], None)]


@pytest.mark.django_db
def test_nothing_pending_ends_the_backfill_at_once(queue):
    backfill = started(queue)
    assert backfill is None  # ended by its planning
    assert queued(queue) == {}
    assert tasks.queue_embedding()  # the next one may start


@pytest.mark.django_db
def test_chains_go_on_within_their_slices_and_every_paper_is_embedded_once(queue, settings):
    settings.EMBEDDING_TASK_CHUNK = 2
    settings.EMBEDDING_CHAINS = 2
    made = papers(7)
    backfill = started(queue)
    first, second = take(queue)
    middle = made[3].pk  # 7 papers: the median id bounds the first slice
    assert first == ("embed_papers", [0, middle, backfill.id])
    assert second == ("embed_papers", [middle, None, backfill.id])

    assert run(first) == 2
    assert take(queue) == [("embed_papers", [made[1].pk, middle, backfill.id])]
    assert run(second) == 2
    assert take(queue) == [("embed_papers", [made[5].pk, None, backfill.id])]
    assert run(("embed_papers", [made[5].pk, None, backfill.id])) == 1
    assert run(take(queue)[0]) == 0  # the second slice is done...
    assert backfill.live_slices() == {str(middle): made[1].pk}
    assert backfill.is_current()  # ...but not the first: the backfill goes on
    assert queued(queue) == {}

    assert run(("embed_papers", [made[1].pk, middle, backfill.id])) == 2
    assert run(take(queue)[0]) == 0  # the last chain ends the backfill
    assert Backfill.running(queue[0]) is None and backfill.meta()["ended"] == 1
    assert queued(queue) == {}  # nothing left anywhere: no new backfill
    assert PaperEmbedding.objects.count() == 7 and not pending_papers().exists()
    assert sum(backfill.counts().values()) == 7  # counted once each


@pytest.mark.django_db
def test_a_copy_of_a_task_already_followed_and_a_task_of_an_older_backfill_do_nothing(
    queue, settings
):
    settings.EMBEDDING_TASK_CHUNK = 1
    settings.EMBEDDING_CHAINS = 1
    made = papers(3)
    backfill = started(queue)
    [first] = take(queue)
    assert run(first) == 1
    assert take(queue) == [("embed_papers", [made[0].pk, None, backfill.id])]

    # Redelivered (its worker died before acknowledging it): its successor is the chain now.
    assert run(first) == 0
    assert run(("embed_papers", [made[0].pk, None, "an-older-one"])) == 0
    assert queued(queue) == {} and PaperEmbedding.objects.count() == 1


@pytest.mark.django_db
def test_a_paper_changed_behind_the_chains_starts_a_new_backfill(queue, settings):
    settings.EMBEDDING_CHAINS = 1
    first, second = papers(2)
    backfill = started(queue)
    [chain] = take(queue)
    assert run(chain) == 2
    [successor] = take(queue)
    Paper.objects.filter(pk=first.pk).update(abstract="Changed while the chain went on.")

    assert run(successor) == 0
    newer = Backfill.running(queue[0])
    assert newer is not None and newer != backfill
    assert queued(queue) == {9: [("plan_embedding", [newer.id])]}


@pytest.mark.django_db
def test_a_failing_chain_ends_its_slice_and_no_backfill_loops_on_it(queue, settings, monkeypatch):
    settings.EMBEDDING_CHAINS = 1
    papers(2)
    backfill = started(queue)
    [chain] = take(queue)

    def broken(*args, **kwargs):
        raise RuntimeError("the model broke")

    monkeypatch.setattr(tasks, "embed_after", broken)
    with pytest.raises(RuntimeError):
        run(chain)
    assert backfill.meta()["failed"] == 1 and Backfill.running(queue[0]) is None
    assert queued(queue) == {}  # the next ingest tries again


def test_a_message_from_before_slices_starts_a_backfill(queue):
    assert tasks.embed_papers(0) == 0
    backfill = Backfill.running(queue[0])
    assert queued(queue) == {9: [("plan_embedding", [backfill.id])]}
