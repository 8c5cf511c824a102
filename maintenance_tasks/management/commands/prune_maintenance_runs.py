"""Delete ended runs older than RETENTION: what the scheduler does once a day."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from maintenance_tasks.conf import app_settings
from maintenance_tasks.retention import prune_runs


class Command(BaseCommand):
    help = "Delete ended runs older than the RETENTION setting for their status. A task's latest run is always kept."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count the runs that would be deleted; delete none.")

    def handle(self, *, dry_run: bool, verbosity: int, **options: Any) -> None:
        counts = prune_runs(dry_run=dry_run)
        if verbosity == 0:
            return
        verb = "Would delete" if dry_run else "Deleted"
        retention = app_settings.RETENTION
        for status, days in retention.items():
            if days is None:
                self.stdout.write(f"{status}: kept forever.")
            else:
                self.stdout.write(
                    f"{status}: {verb.lower()} {counts[status]} run(s) ended more than {days:g} days ago."
                )
        self.stdout.write(f"{verb} {sum(counts.values())} run(s) in all.")
