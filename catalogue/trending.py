"""Trending: upvotes gained recently, with a time decay, computed from popularity snapshots.

score = gain / (days since first listed + 2) ** 1.5, where gain is the upvotes a paper gained
over the last ``WINDOW_DAYS`` days (all of its upvotes when it was first listed inside the
window). The score is stored on the paper (``trending_score``, indexed) so that sorting by it
costs what sorting by upvotes costs; this task refreshes it after ingests and hourly.
"""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.db import connection, transaction
from django.utils import timezone

WINDOW_DAYS = 7
DECAY = 1.5

_SCORES = """
CREATE TEMP TABLE trending_scores ON COMMIT DROP AS
WITH candidate_ids AS (
    -- A UNION, not "id IN (…) OR listed_on > …": PostgreSQL cannot hash a sub-select under an
    -- OR, and re-scans it for every paper (minutes at a million papers).
    SELECT paper_id AS id FROM catalogue_popularitysnapshot WHERE observed_on > %(cutoff)s
    UNION
    SELECT id FROM catalogue_paper WHERE listed_on > %(cutoff)s
), candidates AS (
    SELECT p.id, p.upvotes, COALESCE(p.listed_on, p.published_on, p.created_at::date) AS since_day,
        (SELECT s.upvotes FROM catalogue_popularitysnapshot s
          WHERE s.paper_id = p.id AND s.observed_on <= %(cutoff)s AND s.upvotes IS NOT NULL
          ORDER BY s.observed_on DESC LIMIT 1) AS before_window,
        (SELECT s.upvotes FROM catalogue_popularitysnapshot s
          WHERE s.paper_id = p.id AND s.observed_on > %(cutoff)s AND s.upvotes IS NOT NULL
          ORDER BY s.observed_on LIMIT 1) AS first_in_window
    FROM candidate_ids JOIN catalogue_paper p USING (id)
)
SELECT id,
    GREATEST(upvotes - CASE WHEN since_day > %(cutoff)s THEN 0
                            ELSE COALESCE(before_window, first_in_window, upvotes) END, 0)::float
    / power(GREATEST(%(today)s - since_day, 0) + 2, %(decay)s) AS score
FROM candidates
"""


def refresh_scores(today: dt.date | None = None) -> int:
    """Recompute every trending score; returns how many papers changed."""
    today = today or timezone.localdate()
    params = {"cutoff": today - dt.timedelta(days=WINDOW_DAYS), "today": today, "decay": DECAY}
    with transaction.atomic(), connection.cursor() as cursor:
        # Dropped first: a caller's outer transaction may have run this already (tests do).
        cursor.execute("DROP TABLE IF EXISTS pg_temp.trending_scores")
        cursor.execute(_SCORES, params)
        cursor.execute(
            """UPDATE catalogue_paper p SET trending_score = t.score FROM trending_scores t
               WHERE p.id = t.id AND p.trending_score IS DISTINCT FROM t.score"""
        )
        changed = cursor.rowcount
        cursor.execute(
            """UPDATE catalogue_paper SET trending_score = 0 WHERE trending_score <> 0
               AND NOT EXISTS (SELECT 1 FROM trending_scores t WHERE t.id = catalogue_paper.id)"""
        )
        return changed + cursor.rowcount


@shared_task
def refresh_trending() -> int:
    return refresh_scores()
