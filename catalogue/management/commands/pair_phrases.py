"""``manage.py pair_phrases``: pair every pending paper's adjacent words (``catalogue.phrases``),
with a progress bar.

The workers do the same after each ingest (``catalogue.tasks.pair_phrases``); this is for
after migration 0022 or an import, which leave every paper pending: until they are paired,
phrase searches test them all, as before the pairs existed (correct, not fast). Each batch
commits on its own: Ctrl-C loses at most one, and running the command again resumes.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from tqdm import tqdm

from catalogue import phrases
from catalogue.models import PhrasePending


class Command(BaseCommand):
    help = "Pair the words of the papers waiting for it, for phrase searches (resumable)."

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, no_progress: bool = False, **options):
        pending = PhrasePending.objects.count()
        done = 0
        with tqdm(total=pending, unit="papers", disable=no_progress or not pending) as bar:
            while paired := phrases.pair_pending():
                done += paired
                bar.update(paired)
        if done:
            phrases.analyse()
        self.stdout.write(f"paired {done:,} papers")
