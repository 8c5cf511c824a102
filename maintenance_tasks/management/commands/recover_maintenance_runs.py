"""Take over runs whose executor died: the same recovery the watchdog task does on its own."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand

from maintenance_tasks.actors import command_line, local_actor
from maintenance_tasks.conf import app_settings
from maintenance_tasks.runner import Runner


class Command(BaseCommand):
    help = (
        "Recover runs whose heartbeat is older than STALE_AFTER: running runs get a new attempt and are "
        "enqueued again, pausing runs become paused, cancelling runs cancelled. Safe to run at any time."
    )

    def handle(self, *, verbosity: int, **options: Any) -> None:
        runs = Runner.recover(actor=local_actor("cli", argv=command_line(sys.argv[1:])))
        if verbosity == 0:
            return
        if not runs:
            self.stdout.write(f"No stale runs (none silent for more than {app_settings.STALE_AFTER:g}s).")
        for run in runs:
            event = run.events.filter(action="recovered").last()
            self.stdout.write(f"Run {run.pk}: {event.from_status} -> {event.to_status} ({run.task}).")
