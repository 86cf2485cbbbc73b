"""``manage.py send_digests``: the daily digest task, run in this process (e.g. from cron)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from catalogue.digest import send_digests


class Command(BaseCommand):
    help = "Email each saved search with alerts on the papers that newly match it."

    def handle(self, *args, **options):
        report = send_digests()
        self.stdout.write(
            f"Sent {report['digests']} digest(s) listing {report['papers']} paper(s)."
        )
        if report["failed"]:
            raise CommandError(f"{report['failed']} digest(s) failed: see the log.")
