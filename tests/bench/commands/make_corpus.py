"""``make_corpus --papers N --out FILE``: a realistic synthetic arXiv snapshot.

See ``tests.bench.corpus`` for how papers are built from the real listing samples. The command
prints the document-frequency check (the real sample's top terms against a sample of the
written lines) and fails when a term is off by more than the tolerance, so a corpus that
would mislead a benchmark is never used silently. Tiny corpora (under
``corpus.CONCLUSIVE_SAMPLE`` papers) only warn: there a miss can be chance.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from tests.bench import corpus


class Command(BaseCommand):
    help = "Write a realistic synthetic arXiv metadata snapshot (JSON lines) for benchmarks."

    def add_arguments(self, parser):
        parser.add_argument("--papers", type=int, default=1_000_000)
        parser.add_argument("--out", type=Path, required=True, help="the .jsonl file to write")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--real",
            type=Path,
            help="directory of real listing samples (default: ../shared/data/formats when "
            "present, else tests/data/formats)",
        )

    def handle(self, *args, papers, out, seed, real, **options):
        if papers < 1:
            raise CommandError("--papers must be at least 1")
        pool = corpus.load_pool(real)
        self.stdout.write(f"Real pool: {len(pool.sources):,} papers from {pool.directory}")
        try:
            summary = corpus.write_corpus(out, papers, seed=seed, pool=pool)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Wrote {papers:,} papers to {out} in {summary.seconds:.1f} s "
            f"({summary.rate:,.0f} papers/s, checks included); figures in "
            f"{corpus.stats_path(out)}"
        )
        self.stdout.write(f"Checked {summary.sample.documents:,} papers: {summary.check.summary()}")
        check = summary.check
        if check.passed:
            self.stdout.write(self.style.SUCCESS("Document-frequency check passed."))
            return
        failed = ", ".join(term for term, _, _ in check.failures[:20])
        message = f"{len(check.failures)} terms outside the tolerance: {failed}"
        if check.conclusive:
            raise CommandError(message)
        self.stdout.write(
            self.style.WARNING(f"{message} (only {check.sampled:,} papers: may be chance)")
        )
