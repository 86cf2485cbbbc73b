"""Daily digests: each saved search with alerts gets one email of its new matches, each once."""

import datetime as dt
import re
import time

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from catalogue import digest
from catalogue.digest import send_digests
from catalogue.models import AlertDelivery, Paper, SavedSearch
from ingest.records import PaperRecord
from ingest.sources import hf_page
from ingest.upsert import upsert_papers

pytestmark = pytest.mark.django_db

SITE = "https://papers.example.org"


@pytest.fixture(autouse=True)
def site_url(settings):
    settings.SITE_URL = SITE


@pytest.fixture
def ada():
    return User.objects.create_user("ada", "ada@example.org", "a long passphrase")


@pytest.fixture
def bob():
    return User.objects.create_user("bob", "bob@example.org", "another passphrase")


def saved_yesterday(user, query: str, name: str = "Decoupling", alerts: bool = True):
    """A saved search created before the papers of the test were ingested."""
    saved = SavedSearch.objects.create(user=user, name=name, query=query, alerts=alerts)
    yesterday = timezone.now() - dt.timedelta(days=1)
    SavedSearch.objects.filter(pk=saved.pk).update(created_at=yesterday)
    saved.refresh_from_db()
    return saved


def ingest_seed(seed_bytes) -> list[PaperRecord]:
    records = list(hf_page.parse(seed_bytes, listed_on=dt.date(2025, 12, 24)))
    upsert_papers(records)
    return records


def new_paper(title: str, published_on=dt.date(2025, 12, 30)) -> PaperRecord:
    record = PaperRecord(
        source="test", source_key=title.lower().replace(" ", "-"), title=title,
        abstract="A short abstract.", published_on=published_on, upvotes=2,
    )  # fmt: skip
    upsert_papers([record])
    return record


def matching_titles(client, query: str) -> set[str]:
    response = client.get(f"{reverse('paper-list')}?{query}")
    return {paper.title for paper in response.context["page"].paginator.object_list}


def listed_titles(email) -> set[str]:
    """Titles listed in a digest's plain-text body (lines starting with "* ")."""
    return set(re.findall(r"^\* (.+)$", email.body, re.MULTILINE))


def test_digest_lists_every_new_match_of_the_saved_search(client, ada, seed_bytes):
    saved = saved_yesterday(ada, "q=decoupling&since=2024-01-01")
    ingest_seed(seed_bytes)
    expected = matching_titles(client, saved.query)
    assert 5 < len(expected) < 49

    report = send_digests()

    (email,) = mail.outbox
    assert email.to == ["ada@example.org"]
    assert email.subject == f"{len(expected)} new papers for “Decoupling”"
    assert listed_titles(email) == expected
    assert report == {"digests": 1, "papers": len(expected), "failed": 0}
    assert AlertDelivery.objects.filter(saved_search=saved).count() == len(expected)
    saved.refresh_from_db()
    assert saved.last_digest_at is not None


def test_running_twice_sends_nothing_the_second_time(ada, seed_bytes):
    saved_yesterday(ada, "q=decoupling")
    ingest_seed(seed_bytes)
    send_digests()
    assert len(mail.outbox) == 1
    assert send_digests() == {"digests": 0, "papers": 0, "failed": 0}
    assert len(mail.outbox) == 1


def test_the_next_digest_contains_only_the_new_paper(ada, seed_bytes):
    saved_yesterday(ada, "q=decoupling")
    ingest_seed(seed_bytes)
    send_digests()
    new_paper("Decoupled heads for faster decoding")
    new_paper("Something else entirely")  # does not match the query
    send_digests()
    assert len(mail.outbox) == 2
    assert listed_titles(mail.outbox[1]) == {"Decoupled heads for faster decoding"}
    assert mail.outbox[1].subject == "1 new paper for “Decoupling”"


def test_papers_ingested_before_the_search_was_saved_are_not_new(ada, seed_bytes):
    ingest_seed(seed_bytes)
    SavedSearch.objects.create(user=ada, name="Decoupling", query="q=decoupling")
    send_digests()
    assert mail.outbox == []


def test_searches_without_alerts_get_no_email(ada, seed_bytes):
    saved_yesterday(ada, "q=decoupling", alerts=False)
    ingest_seed(seed_bytes)
    send_digests()
    assert mail.outbox == []
    assert not AlertDelivery.objects.exists()


def test_hidden_papers_are_not_sent(ada):
    saved_yesterday(ada, "")
    new_paper("A paper staff hid")
    Paper.objects.update(hidden=True)
    send_digests()
    assert mail.outbox == []


def test_one_email_per_saved_search(ada, bob, seed_bytes):
    saved_yesterday(ada, "q=decoupling", name="Decoupling")
    saved_yesterday(ada, 'q="linear attention"', name="Linear attention")
    saved_yesterday(bob, "min_upvotes=3", name="Popular")
    ingest_seed(seed_bytes)
    send_digests()
    sent = sorted((email.to[0], email.subject.split("“")[1]) for email in mail.outbox)
    assert sent == [
        ("ada@example.org", "Decoupling”"),
        ("ada@example.org", "Linear attention”"),
        ("bob@example.org", "Popular”"),
    ]


def test_email_has_html_absolute_links_and_one_click_unsubscribe(ada):
    saved = saved_yesterday(ada, "q=decoupled")
    new_paper("Decoupled heads for faster decoding")
    send_digests()
    (email,) = mail.outbox
    unsubscribe = f"{SITE}/saved/unsubscribe/{saved.unsubscribe_token}/"
    # RFC 8058: the URL in List-Unsubscribe, and the header that says a POST is enough.
    assert email.extra_headers["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    paper_url = SITE + Paper.objects.get().get_absolute_url()
    assert unsubscribe in email.body and paper_url in email.body
    assert f"{SITE}/?q=decoupled" in email.body
    ((html, mimetype),) = email.alternatives
    assert mimetype == "text/html"
    assert f'href="{unsubscribe}"' in html and f'href="{paper_url}"' in html
    assert "Decoupled heads for faster decoding" in html


def test_a_failed_send_does_not_stop_the_others_and_is_retried(ada, bob, monkeypatch):
    saved_yesterday(ada, "", name="Everything")
    saved_yesterday(bob, "", name="Everything")
    new_paper("A new paper")
    deliver = EmailBackend.send_messages

    def refuse_ada(self, messages):
        if any("ada@example.org" in message.to for message in messages):
            raise ConnectionRefusedError("SMTP server down")
        return deliver(self, messages)

    monkeypatch.setattr(EmailBackend, "send_messages", refuse_ada)
    assert send_digests() == {"digests": 1, "papers": 1, "failed": 1}
    assert [email.to for email in mail.outbox] == [["bob@example.org"]]
    assert not AlertDelivery.objects.filter(saved_search__user=ada).exists()

    monkeypatch.setattr(EmailBackend, "send_messages", deliver)
    assert send_digests() == {"digests": 1, "papers": 1, "failed": 0}
    assert [email.to for email in mail.outbox] == [["bob@example.org"], ["ada@example.org"]]


def test_an_invalid_saved_query_is_skipped(ada, bob):
    saved_yesterday(ada, "topic=deleted-since", name="Broken")
    saved_yesterday(bob, "", name="Everything")
    new_paper("A new paper")
    assert send_digests() == {"digests": 1, "papers": 1, "failed": 0}
    assert [email.to for email in mail.outbox] == [["bob@example.org"]]


def test_readers_without_an_email_address_are_skipped(ada):
    User.objects.filter(pk=ada.pk).update(email="")
    saved_yesterday(ada, "")
    new_paper("A new paper")
    send_digests()
    assert mail.outbox == []


def test_a_long_backlog_arrives_newest_first_over_several_digests(ada, monkeypatch):
    monkeypatch.setattr(digest, "MAX_PAPERS", 3)
    saved_yesterday(ada, "")
    for day in range(1, 8):
        new_paper(f"Paper of day {day}", published_on=dt.date(2025, 12, day))
    send_digests()
    send_digests()
    send_digests()
    first, second, third = (listed_titles(email) for email in mail.outbox)
    assert first == {"Paper of day 7", "Paper of day 6", "Paper of day 5"}
    assert "More new papers may match" in mail.outbox[0].body
    assert second == {"Paper of day 4", "Paper of day 3", "Paper of day 2"}
    assert third == {"Paper of day 1"}


def test_management_command_sends_the_digests(ada, seed_bytes, capsys):
    saved_yesterday(ada, 'q="linear attention"')
    ingest_seed(seed_bytes)
    call_command("send_digests")
    count = AlertDelivery.objects.count()
    assert count > 0
    assert capsys.readouterr().out.strip() == f"Sent 1 digest(s) listing {count} paper(s)."
    assert len(mail.outbox) == 1


def test_beat_sends_the_digests_daily_at_seven_utc():
    from catalogue.celery import app

    task = PeriodicTask.objects.get(name="send saved-search digests")
    assert task.task == "catalogue.digest.send_digests" and task.enabled
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_month) == ("0", "7", "*")
    assert (crontab.month_of_year, crontab.day_of_week) == ("*", "*")
    assert str(crontab.timezone) == "UTC"
    assert task.task in app.tasks


@pytest.mark.django_db(transaction=True)
def test_the_celery_worker_sends_the_digests(celery_worker, ada, seed_bytes):
    saved = saved_yesterday(ada, "q=decoupling")
    ingest_seed(seed_bytes)
    task_id = send_digests.delay().id
    finished = re.compile(rf"send_digests\[{task_id}\] (succeeded|raised)")
    deadline = time.monotonic() + 30
    while not finished.search(celery_worker.log()):
        assert time.monotonic() < deadline, celery_worker.log()
        time.sleep(0.2)
    sent = AlertDelivery.objects.filter(saved_search=saved).count()
    assert sent > 10
    log = celery_worker.log()
    assert f"{{'digests': 1, 'papers': {sent}, 'failed': 0}}" in log
    # The worker uses the default console backend: the email itself is in its log.
    assert "To: ada@example.org" in log
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in log
