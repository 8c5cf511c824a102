"""Run a maintenance task in this process, in the foreground, with progress (or hand it to the workers)."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from maintenance_tasks import batching, dryrun, skipping
from maintenance_tasks.actors import command_line, local_actor
from maintenance_tasks.conf import app_settings
from maintenance_tasks.engine import Engine
from maintenance_tasks.exceptions import EnqueueFailed, MaintenanceTaskError, validation_error_text
from maintenance_tasks.models import Run
from maintenance_tasks.parameters import loads
from maintenance_tasks.progress import ProgressBar, ProgressLog, describe
from maintenance_tasks.runner import Runner
from maintenance_tasks.status import COMPLETED_STATUSES, RESUMABLE_STATUSES, RunStatus
from maintenance_tasks.stopping import StopOnSignal

BAD_INPUT, ERRORED, STOPPED = 2, 1, 3
#: Seconds between two reads of a run that ``--wait`` follows.
WAIT_INTERVAL = 0.5
#: Seconds a run the workers perform may stay interrupted before ``--wait`` takes it as stopped: a
#: worker that shuts down hands its run back to the queue at once.
INTERRUPTED_GRACE = 5.0


def json_object(text: str | None) -> dict[str, Any]:
    """Return the ``--config`` object; raise a one-line CommandError (not argparse's usage block)."""
    if text is None:
        return {}
    try:
        value = loads(text, "a JSON object")
    except ValidationError as error:
        raise CommandError(f"--config: {validation_error_text(error)}", returncode=BAD_INPUT) from None
    if not isinstance(value, dict):
        raise CommandError(f"--config must be a JSON object, not {type(value).__name__}.", returncode=BAD_INPUT)
    return value


def name_value(text: str) -> tuple[str, str]:
    """Return an ``--arg``'s name and value; raise a one-line CommandError when it is not NAME=VALUE."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise CommandError(f"--arg: expected NAME=VALUE, got {text!r}.", returncode=BAD_INPUT)
    return name.strip(), value


def csv_input(path: str | None) -> contextlib.AbstractContextManager[IO[bytes] | None]:
    """Return the ``--csv`` file open in binary (``-``: standard input); raise a one-line CommandError if it cannot be."""
    if path is None:
        return contextlib.nullcontext()
    if path == "-":
        return contextlib.nullcontext(sys.stdin.buffer)
    try:
        return open(path, "rb")
    except OSError as error:
        raise CommandError(f"--csv: cannot open {path}: {error.strerror}.", returncode=BAD_INPUT) from None


def tuning_options(batch_size: str | None, batch_time: str | None, sleep_ratio: str | None) -> dict[str, Any]:
    """Return ``--batch-size``, ``--batch-time`` and ``--sleep-ratio`` as the run's own values;
    raise a one-line CommandError if one is bad."""
    tuning: dict[str, Any] = {}
    given = (("batch_size", batch_size, int), ("batch_time", batch_time, float), ("sleep_ratio", sleep_ratio, float))
    for option, text, cast in given:
        if text is None:
            continue
        try:
            tuning[option] = cast(text)
        except ValueError:
            tuning[option] = text  # refused below, with the same message as any other bad value
    if errors := batching.tuning_errors(**tuning):
        raise CommandError(
            " ".join("--" + error.replace("_", "-", 1) for error in errors.values()), returncode=BAD_INPUT
        )
    return tuning


#: The run's fields that tell the batch sizes it used and its commits.
BATCHES = ("batch_size_latest", "batch_size_min", "batch_size_max", "commits")


class Command(BaseCommand):
    help = (
        "Run a maintenance task in the foreground. Exit status: 0 succeeded, 1 errored, "
        "2 bad input, 3 stopped before the end (paused, cancelled or interrupted). With --background: "
        "0 once enqueued; with --wait, the run's outcome (3 also when waiting was stopped)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("processor", nargs="?", help="Dotted path of the processor, or its class name when unique.")
        # Parsed in handle(), not by argparse: a bad value is one line, not the 8-line usage block.
        parser.add_argument("--config", default=None, help="Parameters as one JSON object.")
        parser.add_argument(
            "--arg",
            dest="params",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="One parameter (repeatable); overrides --config.",
        )
        parser.add_argument(
            "--resume", type=int, metavar="RUN_ID", help="Go on with a paused, interrupted or errored run."
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Roll back every batch and report the writes it would have made (atomic processors only).",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="With --resume: take over a run still marked running even if its heartbeat is fresh.",
        )
        parser.add_argument(
            "--csv", metavar="PATH", help="The CSV file a csv_collection processor reads ('-': standard input)."
        )
        parser.add_argument(
            "--background",
            action="store_true",
            help="Enqueue the run for the workers, print its id and return (with -v0: only the id).",
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Enqueue the run for the workers, then follow it with progress and exit with its outcome "
            "(implies --background; Ctrl-C stops waiting, not the run).",
        )
        parser.add_argument("--batch-size", metavar="N", help="Items per batch at most, for this run.")
        parser.add_argument(
            "--batch-time", metavar="SECONDS", help="Seconds each transaction should take, for this run."
        )
        parser.add_argument(
            "--sleep-ratio",
            metavar="RATIO",
            help="After each commit, sleep this many times as long as the transaction took, for this run.",
        )

    def handle(
        self,
        *,
        processor: str | None,
        config: str | None,
        params: list[str],
        resume: int | None,
        force: bool,
        dry_run: bool,
        csv: str | None,
        background: bool,
        wait: bool,
        batch_size: str | None,
        batch_time: str | None,
        sleep_ratio: str | None,
        verbosity: int,
        **options: Any,
    ) -> None:
        background = background or wait
        actor = local_actor("cli", argv=command_line(sys.argv[1:]))
        if force and resume is None:
            raise CommandError("--force goes only with --resume RUN_ID.", returncode=BAD_INPUT)
        if dry_run and resume is not None:
            raise CommandError("--dry-run starts a run; a resumed run goes on as it began.", returncode=BAD_INPUT)
        given = {**json_object(config), **dict(name_value(param) for param in params)}
        tuning = tuning_options(batch_size, batch_time, sleep_ratio)
        try:
            if resume is not None:
                if processor or config is not None or params or csv is not None:
                    raise CommandError(
                        "--resume takes no processor, parameters nor --csv: the run keeps its own.",
                        returncode=BAD_INPUT,
                    )
                run = Run.objects.select_related("task").filter(pk=resume).first()
                if run is None:
                    raise CommandError(f"There is no run {resume}.", returncode=BAD_INPUT)
                if tuning:
                    run.tune(**{**{name: getattr(run, name) for name in batching.TUNING}, **tuning}, actor=actor)
                Runner.resume(run, actor=actor, force=force, execute=background)
            else:
                if not processor:
                    raise CommandError("Name a processor, or give --resume RUN_ID.", returncode=BAD_INPUT)
                start = Runner.run if background else Runner.create
                with csv_input(csv) as csv_file:
                    run = start(processor, given, metadata=actor, dry_run=dry_run, csv_file=csv_file, **tuning)
        except ValidationError as error:
            if getattr(error, "error_dict", None) and set(error.error_dict) == {"csv_file"}:
                raise CommandError(f"--csv: {' '.join(error.messages)}", returncode=BAD_INPUT) from None
            raise CommandError(
                f"Invalid config for {processor}: {validation_error_text(error)}", returncode=BAD_INPUT
            ) from None
        except EnqueueFailed as error:
            raise CommandError(str(error), returncode=ERRORED) from None
        except MaintenanceTaskError as error:
            raise CommandError(str(error), returncode=BAD_INPUT) from None
        if not background:
            self.perform(run, verbosity)
        elif wait:
            self.wait(run, verbosity)
        elif verbosity:
            self.stdout.write(
                f"Run {run.pk} of {run.task} handed to the workers ({run.status}). "
                f"Follow it with: manage.py maintenance_runs show {run.pk}"
            )
        else:
            self.stdout.write(str(run.pk))  # for scripts

    @staticmethod
    def connection_lost(run: Run, token: int, error: Exception) -> str:
        """Leave the run interrupted if the database answers again soon; say how to go on."""
        lost = f"Lost the database connection ({' '.join(str(error).split())[:200]})."
        if Runner.interrupt_after_outage(run, token):
            return f"{lost} Run {run.pk} is interrupted; resume with: manage.py run_maintenance_task --resume {run.pk}"
        return (
            f"{lost} Run {run.pk} is left as it was; once the database is back, resume with: "
            f"manage.py run_maintenance_task --resume {run.pk} (after STALE_AFTER, or at once with --force)"
        )

    def progress_display(self, run: Run, verbosity: int) -> Any:
        """Return what shows the run's progress: a bar on a terminal, a line every LOG_INTERVAL otherwise."""
        if verbosity == 0:
            progress: Any = lambda run: None  # noqa: E731
            progress.close = lambda: None
        elif self.stdout.isatty():
            progress = ProgressBar(run, sys.stderr, self.stdout)
        else:
            progress = ProgressLog(run, self.stdout, app_settings.LOG_INTERVAL)
        return progress

    def perform(self, run: Run, verbosity: int) -> None:
        if verbosity and run.dry_run:
            self.stdout.write("Dry run: nothing will be written.")
        if verbosity:
            self.stdout.write(f"Run {run.pk} of {run.task} started.")
        progress = self.progress_display(run, verbosity)
        engine = Engine(run, on_progress=progress)
        try:
            with StopOnSignal(report=lambda message: self.stderr.write(f"\n{message}")) as stop:
                engine.should_stop = stop
                engine.perform()
        except MaintenanceTaskError as error:
            raise CommandError(str(error), returncode=STOPPED) from None
        except (OperationalError, InterfaceError) as error:
            raise CommandError(self.connection_lost(run, engine.token, error), returncode=STOPPED) from None
        finally:
            progress.close()
        Runner.release_slot()  # the slot this run held (MAX_CONCURRENT_RUNS) goes to a run waiting for one
        run.refresh_from_db(
            fields=["status", "attempt", "tick_count", "time_running", "dry_run_report", "skipped_count", *BATCHES]
        )
        if run.attempt != engine.token and run.status not in RESUMABLE_STATUSES | COMPLETED_STATUSES:
            raise CommandError(
                f"Run {run.pk} was taken over by another executor (now {run.status}); this process stopped "
                f"at {run.tick_count:,} items. Nothing to resume here.",
                returncode=STOPPED,
            )
        self.report_outcome(run, verbosity)

    def wait(self, run: Run, verbosity: int) -> None:
        """Follow a run the workers perform, with progress, until it stops; exit with its outcome.

        A first SIGINT or SIGTERM stops the waiting, never the run: it goes on in the background.
        """
        with StopOnSignal(report=lambda message: None) as stop:
            if verbosity:
                dry = "Dry run: nothing will be written. " if run.dry_run else ""
                self.stdout.write(f"{dry}Run {run.pk} of {run.task} handed to the workers ({run.status}).")
            progress = self.progress_display(run, verbosity)
            try:
                while not stopped(run) and not stop():
                    time.sleep(WAIT_INTERVAL)
                    run.refresh_from_db()
                    progress(run)
            finally:
                progress.close()
        if not stopped(run):
            raise CommandError(
                f"Stopped waiting; run {run.pk} goes on ({run.status}). "
                f"Follow it with: manage.py maintenance_runs show {run.pk}",
                returncode=STOPPED,
            )
        self.report_outcome(run, verbosity)

    def report_outcome(self, run: Run, verbosity: int) -> None:
        """Say how the run ended: exit 0 if it succeeded, 1 if it errored, 3 if it stopped before the end."""
        if verbosity and (batches := batching.describe(run)):
            self.stdout.write(f"Run {run.pk}: {batches}.")
        if verbosity and run.dry_run:
            self.stdout.write(dryrun.describe(run))
        if verbosity and run.skipped_count:
            self.stdout.write(skipping.describe(run))
        if run.status == RunStatus.SUCCEEDED:
            if verbosity:
                self.stdout.write(self.style.SUCCESS(f"{describe(run)}. Succeeded in {run.time_running:.1f}s."))
            return
        if run.status == RunStatus.ERRORED:
            raise CommandError(f"Run {run.pk} errored: {run.error_class}: {run.error_message}", returncode=ERRORED)
        hint = (
            ""
            if run.status == RunStatus.CANCELLED
            else f" Resume with: manage.py run_maintenance_task --resume {run.pk}"
        )
        raise CommandError(f"Run {run.pk} {run.status} at {run.tick_count:,} items.{hint}", returncode=STOPPED)


def stopped(run: Run) -> bool:
    """Return whether a run the workers perform has stopped: ended, paused, or left interrupted."""
    if run.status == RunStatus.INTERRUPTED:
        return (timezone.now() - run.updated_at).total_seconds() >= INTERRUPTED_GRACE
    return run.status in COMPLETED_STATUSES | {RunStatus.PAUSED}
