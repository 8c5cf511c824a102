"""Start due scheduled runs, flag overdue runs and prune old runs: a long-lived loop, or one pass."""

from __future__ import annotations

import signal
import threading
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections
from django.utils import timezone

from maintenance_tasks.conf import app_settings
from maintenance_tasks.scheduling import PassResult, next_due, scheduler_pass


class Command(BaseCommand):
    help = (
        "Start the runs that schedules make due, flag overdue runs and prune old runs once a day. Runs until "
        "SIGTERM or SIGINT; any number of schedulers may run at once. Not needed while a worker runs the "
        "scheduler's self-re-enqueuing task."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit.")

    def handle(self, *, once: bool, verbosity: int, **options: Any) -> None:
        if once:
            self.report(scheduler_pass(), verbosity)
            return
        stop = threading.Event()
        previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            if verbosity:
                self.stdout.write(f"Scheduler started (a pass at least every {app_settings.SCHEDULER_INTERVAL:g}s).")
            while not stop.is_set():
                self.report(scheduler_pass(), verbosity)
                stop.wait(self.seconds_to_next_checkpoint())
                close_old_connections()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if verbosity:
            self.stdout.write("Scheduler stopped.")

    @staticmethod
    def seconds_to_next_checkpoint() -> float:
        now = timezone.now()
        wake = now + timedelta(seconds=app_settings.SCHEDULER_INTERVAL)
        due = next_due()
        if due is not None:
            wake = min(wake, due)
        return max(0.5, (wake - now).total_seconds())

    def report(self, result: PassResult, verbosity: int) -> None:
        if verbosity == 0:
            return
        for run in result.started:
            self.stdout.write(f"Started run {run.pk} of {run.task}.")
        for schedule in result.skipped:
            self.stdout.write(f"Skipped schedule {schedule.pk}: {schedule.task} still has an active run.")
        for run in result.overdue:
            self.stdout.write(f"Run {run.pk} of {run.task} is overdue ({run.status}).")
        if result.pruned and any(result.pruned.values()):
            self.stdout.write("Pruned " + ", ".join(f"{n} {status}" for status, n in result.pruned.items()) + " runs.")
