"""``manage.py build_word_months``: build the month rows of the common words
(``catalogue.wordmonths``) of every month whose papers changed, with a progress bar.

The workers do the same after each ingest (``catalogue.tasks.build_word_months``); this is for
after an import, which leaves every month changed (until built, one-word searches rank the way
they did before the rows existed: correct, not fast), or ``--recount`` to count the common
words again (a catalogue grown or changed in kind). Each month commits on its own: Ctrl-C
loses at most one, and running the command again resumes.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import connection
from tqdm import tqdm

from catalogue import wordmonths


class Command(BaseCommand):
    help = "Build the common words' month rows of the months whose papers changed (resumable)."

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument(
            "--recount", action="store_true", help="count the common words again first"
        )

    def handle(self, *args, no_progress: bool = False, recount: bool = False, **options):
        common = wordmonths.recount() if recount else wordmonths.count_if_needed()
        if common is not None:
            self.stdout.write(f"{common:,} common words")
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(DISTINCT month) FROM catalogue_wordmonthchange")
            (changed,) = cursor.fetchone()
        built = 0
        with tqdm(total=changed, unit="months", disable=no_progress or not changed) as bar:
            while wordmonths.build_changed_month() is not None:
                built += 1
                bar.update(1)
        self.stdout.write(f"built {built:,} months")
