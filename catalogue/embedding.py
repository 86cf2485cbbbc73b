"""The writer of paper embeddings: papers without a current vector get one, a batch at a time.

"Current" is decided in SQL (``PaperQuerySet.missing_or_stale_embeddings``): a vector of this
``MODEL_ID`` whose ``text_hash`` is the md5 of the paper's text now. So the work left is always
a query away: each batch commits on its own, and a run that stops (Ctrl-C, a killed worker)
is resumed by running again. Hidden papers are embedded too: staff can unhide them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from django.db import connection, transaction

from catalogue.embedder import MODEL_ID, get_embedder
from catalogue.models import Paper, PaperEmbedding, embedded_text

BATCH_SIZE = 64


def pending_papers():
    """Papers whose embedding is missing or stale, in id order."""
    return Paper.objects.missing_or_stale_embeddings(MODEL_ID).order_by("pk")


def pending_slices(count: int) -> tuple[list[tuple[int, int | None]], int]:
    """The pending papers split by id into at most ``count`` ranges (after, upto] of about
    equal size, and how many papers are pending: one pass over the pending papers (the same
    as counting them), the range bounds being quantiles of their ids. The last range is open
    above, so papers created meanwhile join it. No ranges when nothing is pending."""
    fractions = [n / count for n in range(1, count)]
    pending_ids, params = pending_papers().order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY pk) "
            f"FROM ({pending_ids}) AS pending (pk)",
            [fractions, *params],
        )
        pending, bounds = cursor.fetchone()
    if not pending:
        return [], 0
    uppers = [*sorted(set(bounds or [])), None]  # few pending papers: equal quantiles
    lowers = [0, *uppers[:-1]]
    return list(zip(lowers, uppers, strict=True)), pending


def text_hash(text: str) -> str:
    """md5 of the UTF-8 text, as PostgreSQL's md5() computes it (``EMBEDDED_TEXT_MD5``)."""
    return hashlib.md5(text.encode()).hexdigest()


def embed_pending(
    batch_size: int = BATCH_SIZE,
    limit: int | None = None,
    progress: Callable[[int], object] | None = None,
    seconds: float | None = None,
) -> int:
    """Embed pending papers (at most ``limit``), ``batch_size`` per transaction; calls
    ``progress(n)`` after each committed batch of n. With ``seconds``, no new batch starts
    once that long has passed. Returns how many were embedded."""
    done, _ = embed_after(0, batch_size, limit, progress, seconds)
    return done


def embed_after(
    after: int,
    batch_size: int = BATCH_SIZE,
    limit: int | None = None,
    progress: Callable[[int], object] | None = None,
    seconds: float | None = None,
    upto: int | None = None,
) -> tuple[int, int]:
    """``embed_pending`` of the papers with ids in (``after``, ``upto``] only (no upper bound
    when ``upto`` is None); returns how many were embedded and the last id embedded
    (``after`` when none). Finding pending papers reads every paper's text from ``after`` on
    (5 µs a paper: 0.5 s at 100,000 papers), so a chain of tasks goes on from where the
    previous one stopped instead of from the start."""
    embedder = get_embedder()
    pending = pending_papers() if upto is None else pending_papers().filter(pk__lte=upto)
    deadline = None if seconds is None else time.monotonic() + seconds
    done = 0
    # Ids only go up: a paper whose text changes meanwhile waits for the next run.
    while limit is None or done < limit:
        if deadline is not None and time.monotonic() >= deadline:
            break
        size = batch_size if limit is None else min(batch_size, limit - done)
        batch = list(pending.filter(pk__gt=after).values_list("pk", "title", "abstract")[:size])
        if not batch:
            break
        texts = [embedded_text(title, abstract) for _, title, abstract in batch]
        vectors = embedder.embed(texts)
        _save(
            [
                PaperEmbedding(
                    paper_id=pk, vector=vector, model=MODEL_ID, text_hash=text_hash(text)
                )
                for (pk, _, _), text, vector in zip(batch, texts, vectors, strict=True)
            ]
        )
        after = batch[-1][0]
        done += len(batch)
        if progress is not None:
            progress(len(batch))
    return done, after


def _save(embeddings: list[PaperEmbedding]) -> None:
    """Insert or replace the batch's embeddings in one transaction. The hash is of the text
    that was embedded, not of the paper's text now: an abstract edited meanwhile leaves the
    vector stale, and it is done again next time."""
    with transaction.atomic():
        # A paper merged away (deleted) while its text was being embedded would fail the whole
        # batch on the foreign key: lock the batch's papers, keep the embeddings of those left.
        existing = set(
            Paper.objects.filter(pk__in=[e.paper_id for e in embeddings])
            .select_for_update(no_key=True)
            .values_list("pk", flat=True)
        )
        PaperEmbedding.objects.bulk_create(
            [e for e in embeddings if e.paper_id in existing],
            update_conflicts=True,
            unique_fields=["paper"],
            update_fields=["vector", "model", "text_hash", "computed_at"],
        )
