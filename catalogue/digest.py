"""Daily digests: one email per saved search with alerts on, listing the papers new to it.

"New" means ingested (``Paper.created_at``) after the search was saved and never sent for it
before: an ``AlertDelivery`` row per (saved search, paper) is what makes each match go out once,
even when the digest runs twice or a worker dies and the task is redelivered.

Celery beat runs ``send_digests`` daily (scheduled by a data migration); ``manage.py
send_digests`` is its twin.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from catalogue.models import AlertDelivery, Paper, SavedSearch
from catalogue.saved import canonical

logger = logging.getLogger(__name__)

# Papers listed in one email; more new matches wait for the next digest, newest first.
MAX_PAPERS = 50


def site_url() -> str:
    # Emails have no request to take the host from: SITE_URL comes from the environment.
    return settings.SITE_URL


@dataclass
class DigestReport:
    digests: int = 0  # emails sent
    papers: int = 0  # papers listed in them
    failed: int = 0  # saved searches whose email could not be built or sent


@shared_task(name="catalogue.digest.send_digests")
def send_digests() -> dict:
    """Email every saved search with alerts its new matches; returns the counts."""
    report = DigestReport()
    ids = SavedSearch.objects.filter(alerts=True).order_by("pk").values_list("pk", flat=True)
    for saved_search_id in ids:
        try:
            sent = send_digest(saved_search_id)
        except Exception:
            # One bad address or query must not stop everyone else's digest.
            logger.exception("digest of saved search %s failed", saved_search_id)
            report.failed += 1
            continue
        if sent:
            report.digests += 1
            report.papers += sent
    logger.info("digests: %s", report)
    return asdict(report)


def send_digest(saved_search_id: int) -> int:
    """Send one saved search its new matches; returns how many papers the email listed.

    The row lock makes concurrent runs skip a search another run is busy with; deliveries are
    recorded in the same transaction as the send, so a failed send leaves them unsent.
    """
    with transaction.atomic():
        saved_search = (
            SavedSearch.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("user")
            .filter(pk=saved_search_id, alerts=True)
            .first()
        )
        if saved_search is None or not saved_search.user.email:
            return 0
        papers = new_matches(saved_search)
        if papers:
            AlertDelivery.objects.bulk_create(
                [AlertDelivery(saved_search=saved_search, paper=paper) for paper in papers]
            )
            digest_email(saved_search, papers).send()
        saved_search.last_digest_at = timezone.now()
        saved_search.save(update_fields=["last_digest_at"])
        return len(papers)


def new_matches(saved_search: SavedSearch) -> list[Paper]:
    """Papers matching the saved query, ingested after it was saved, not sent for it yet."""
    already_sent = AlertDelivery.objects.filter(saved_search=saved_search).values("paper_id")
    candidates = (
        Paper.objects.visible()
        .filter(created_at__gt=saved_search.created_at)
        .exclude(pk__in=already_sent)
    )
    paper_filter = canonical(saved_search.query, queryset=candidates)
    if not paper_filter.is_valid():
        # E.g. a topic in the query was deleted since: nothing matches until it is edited.
        logger.warning(
            "saved search %s has an invalid query %r", saved_search.pk, saved_search.query
        )
        return []
    # The newest matches: what a relevance ranking's candidates are, without ranking them.
    newest = paper_filter.matches.newest_first().defer("search_vector", "author_vector")
    return list(newest[:MAX_PAPERS])


def digest_email(saved_search: SavedSearch, papers: list[Paper]) -> EmailMultiAlternatives:
    base = site_url()
    unsubscribe_url = base + reverse("saved-unsubscribe", args=[saved_search.unsubscribe_token])
    query = f"?{saved_search.query}" if saved_search.query else ""
    context = {
        "saved_search": saved_search,
        "papers": [(paper, base + paper.get_absolute_url()) for paper in papers],
        "more_may_follow": len(papers) == MAX_PAPERS,
        "search_url": base + reverse("paper-list") + query,
        "saved_list_url": base + reverse("saved-list"),
        "unsubscribe_url": unsubscribe_url,
    }
    count = len(papers)
    subject = f"{count} new paper{'s' if count != 1 else ''} for “{saved_search.name}”"
    email = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("emails/digest.txt", context),
        to=[saved_search.user.email],
        # RFC 8058 one-click unsubscribe: mail providers POST "List-Unsubscribe=One-Click" to
        # the URL (our unsubscribe view accepts that POST without a session or CSRF token).
        headers={
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    email.attach_alternative(render_to_string("emails/digest.html", context), "text/html")
    return email
