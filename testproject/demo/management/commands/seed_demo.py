"""Fill the demo Article table (idempotent: tops it up to --rows)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from maintenance_tasks.models import Run
from testproject.demo.models import Article

WORDS = ["quick", "brown", "fox", "jumps", "over", "lazy", "dog", "data", "migration", "batch", "cursor", "resume"]


class Command(BaseCommand):
    help = "Seed the demo Article table with articles whose slugs are empty."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rows", type=int, default=200_000)

    def handle(self, *, rows: int, **options: Any) -> None:
        # A demo stopped halfway leaves an active run: start the demo afresh.
        Run.objects.active().filter(task__processor__startswith="testproject.demo.").delete()
        Article.objects.update(slug="", word_count=None)  # a second seed starts the backfill over
        have = Article.objects.count()
        for start in range(have, rows, 10_000):
            Article.objects.bulk_create(
                Article(title=" ".join(WORDS[(i + k) % len(WORDS)] for k in range(3 + i % 5)) + f" {i}")
                for i in range(start, min(rows, start + 10_000))
            )
        self.stdout.write(f"{max(rows, have):,} articles, all without a slug.")
