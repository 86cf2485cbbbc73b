import datetime as dt

import pytest

from catalogue.models import Paper, PopularitySnapshot
from catalogue.trending import refresh_scores

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 3, 20)


def paper(key, upvotes, listed_on, history):
    p = Paper.objects.create(arxiv_id=key, title=key, upvotes=upvotes, listed_on=listed_on)
    for day, value in history:
        PopularitySnapshot.objects.create(paper=p, observed_on=day, upvotes=value)
    return p


def test_recent_gain_ranks_above_a_large_but_stale_count():
    stale = paper("2401.00001", 500, dt.date(2026, 1, 2), [(dt.date(2026, 3, 1), 500)])
    rising = paper("2603.00002", 40, dt.date(2026, 3, 17), [(dt.date(2026, 3, 17), 5), (TODAY, 40)])
    steady = paper("2602.00003", 90, dt.date(2026, 2, 1), [(dt.date(2026, 3, 10), 60), (TODAY, 90)])
    refresh_scores(TODAY)
    order = list(Paper.objects.trending().values_list("arxiv_id", flat=True))
    assert order == [rising.arxiv_id, steady.arxiv_id, stale.arxiv_id]
    assert Paper.objects.get(pk=stale.pk).trending_score == 0  # nothing gained in the window
    # rising: listed 3 days ago, 40 upvotes all gained in the window: 40 / (3 + 2) ** 1.5
    assert Paper.objects.get(pk=rising.pk).trending_score == pytest.approx(40 / 5**1.5)
    # steady: 90 now, 60 at the window's start: 30 / (47 + 2) ** 1.5
    assert Paper.objects.get(pk=steady.pk).trending_score == pytest.approx(30 / 49**1.5)


def test_scores_fall_back_to_zero_when_the_window_moves_on():
    rising = paper("2603.00002", 40, dt.date(2026, 3, 17), [(TODAY, 40)])
    refresh_scores(TODAY)
    assert Paper.objects.get(pk=rising.pk).trending_score > 0
    refresh_scores(TODAY + dt.timedelta(days=30))
    assert Paper.objects.get(pk=rising.pk).trending_score == 0
