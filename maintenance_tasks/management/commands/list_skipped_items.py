"""Write the items a run skipped (its processor's ``skip_on``) as CSV: the run page's download."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from maintenance_tasks.models import Run
from maintenance_tasks.skipping import CSV_COLUMNS, csv_lines


class Command(BaseCommand):
    help = (
        "Write the items a run skipped after errors in its processor's skip_on, as CSV with the columns "
        f"{', '.join(CSV_COLUMNS)}."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", type=int, metavar="RUN", help="The id of the run.")

    def handle(self, *, run_id: int, **options: Any) -> None:
        run = Run.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"There is no run {run_id}.", returncode=2)
        for line in csv_lines(run):
            self.stdout.write(line, ending="")
