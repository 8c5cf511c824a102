"""Operate runs from the shell: list and show them and the items they skipped, pause, resume, cancel or force them."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q
from django.utils import timezone

from maintenance_tasks.actors import command_line, describe, local_actor
from maintenance_tasks.exceptions import EnqueueFailed, MaintenanceTaskError
from maintenance_tasks.management.commands.run_maintenance_task import BAD_INPUT, ERRORED
from maintenance_tasks.models import Run, RunEvent, Task
from maintenance_tasks.overdue import overdue_for
from maintenance_tasks.progress import progress_text
from maintenance_tasks.registry import registry, short_name
from maintenance_tasks.runner import Runner
from maintenance_tasks.skipping import csv_lines, skipped_rows
from maintenance_tasks.status import ACTIVE_STATUSES, COMPLETED_STATUSES, EXECUTING_STATUSES, RunStatus

#: ``--status`` also takes these names of status groups.
STATUS_GROUPS = {"active": ACTIVE_STATUSES, "completed": COMPLETED_STATUSES}
#: Each change: the Runner method that makes it, and its help.
CHANGES = {
    "pause": (Runner.pause, "Pause a run: at once if nothing performs it, else after its current batch."),
    "cancel": (Runner.cancel, "Cancel a run for good: at once if nothing performs it, else after its current batch."),
    "force": (Runner.force_stop, "Force a run stuck in pausing/cancelling for STUCK_AFTER to paused/cancelled."),
}


def whole_number(text: str, what: str, minimum: int) -> int:
    """Return ``text`` as an int of at least ``minimum``; raise a one-line CommandError otherwise."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise CommandError(f"{what} must be a whole number, {minimum} or more, not {text!r}.", returncode=BAD_INPUT)
    return value


def find_run(text: str) -> Run:
    """Return the run with the id ``text``; raise a one-line CommandError when there is none."""
    pk = whole_number(text, "A run id", 1)
    run = Run.objects.select_related("task").filter(pk=pk).first()
    if run is None:
        raise CommandError(f"There is no run {pk}.", returncode=BAD_INPUT)
    return run


def status_filter(given: list[str]) -> set[str]:
    """Return the statuses ``--status`` names (repeatable, comma-separated, or a group such as ``active``)."""
    statuses: set[str] = set()
    for name in (word.strip() for text in given for word in text.split(",")):
        if name in STATUS_GROUPS:
            statuses.update(STATUS_GROUPS[name])
        elif name in RunStatus.values:
            statuses.add(name)
        else:
            choices = ", ".join([*RunStatus.values, *STATUS_GROUPS])
            raise CommandError(f"Unknown status {name!r}: choose from {choices}.", returncode=BAD_INPUT)
    return statuses


def processor_filter(name: str) -> Q:
    """Return the runs of the processor ``name`` (dotted path or class name), gone from the code or not."""
    match = Q(processor=name) | Q(processor__endswith=f".{name}")
    if not Task.objects.filter(match).exists():
        try:
            registry.resolve(name)  # a processor that never ran lists nothing; an unknown name is refused
        except MaintenanceTaskError as error:
            raise CommandError(str(error), returncode=BAD_INPUT) from None
    return Q(task__in=Task.objects.filter(match))


def when(value: datetime | None) -> str:
    """Return a time as the shell shows it, in the current time zone, to the second."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def notes(run: Run) -> str:
    """Return what stands out about a run: a dry run, overdue, its error class."""
    marks = ["dry run"] if run.dry_run else []
    if overdue_for(run):
        marks.append("overdue")
    if run.error_class:
        marks.append(short_name(run.error_class))
    return ", ".join(marks)


def run_data(run: Run) -> dict[str, Any]:
    """Return what ``--json`` says of a run."""
    return {
        "id": run.pk,
        "processor": run.task.processor,
        "name": short_name(run.task.processor),
        "config": run.task.shown_config,
        "status": run.status,
        "overdue": overdue_for(run) is not None,
        "dry_run": run.dry_run,
        "tick_count": run.tick_count,
        "tick_total": run.tick_total,
        "progress": run.progress,
        "rate": run.rate,
        "eta_seconds": run.eta.total_seconds() if run.eta is not None else None,
        "time_running": run.time_running,
        "cursor": run.cursor,
        "attempt": run.attempt,
        "retries": run.retries,
        "job_id": run.job_id,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "updated_at": run.updated_at,
        "ended_at": run.ended_at,
        "heartbeat_at": run.heartbeat_at,
        "error_class": run.error_class,
        "error_message": run.error_message,
        "metadata": run.shown_metadata,
    }


def event_data(event: RunEvent) -> dict[str, Any]:
    """Return what ``--json`` says of an audit trail entry."""
    fields = ("action", "from_status", "to_status", "source", "user", "detail")
    return {"at": event.created_at, **{name: getattr(event, name) for name in fields}}


def table(rows: list[list[str]]) -> list[str]:
    """Return the rows as lines of left-aligned columns, two spaces apart."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


class Command(BaseCommand):
    help = (
        "List, show, pause, resume, cancel or force maintenance runs, or list the items one skipped. Exit status: 0 done, 2 refused "
        "(an unknown run, a change its status does not allow); resume in the foreground exits as "
        "run_maintenance_task does (1 errored, 3 stopped before the end)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(
            dest="action", required=True, metavar="{list,show,failures,pause,resume,cancel,force}"
        )
        listing = actions.add_parser("list", help="List runs, newest first.")
        listing.add_argument(
            "--status",
            dest="statuses",
            action="append",
            default=[],
            help="Only runs in this status (repeatable, or comma-separated; also 'active', 'completed').",
        )
        listing.add_argument("--processor", help="Only runs of this processor (dotted path or class name).")
        listing.add_argument("--limit", default="50", help="At most this many runs (default 50).")
        show = actions.add_parser("show", help="Show everything about one run, with its last audit events.")
        show.add_argument("run", help="The run's id.")
        show.add_argument("--events", default="10", help="How many of its last audit events to show (default 10).")
        failures = actions.add_parser("failures", help="List the items a run skipped (its processor's skip_on).")
        failures.add_argument("run", help="The run's id.")
        failures.add_argument("--csv", dest="as_csv", action="store_true", help="Print them all as CSV.")
        failures.add_argument("--limit", default="100", help="At most this many, the first ones (default 100).")
        resume = actions.add_parser(
            "resume", help="Go on with a paused or interrupted run, in this process with progress."
        )
        resume.add_argument("run", help="The run's id.")
        resume.add_argument("--background", action="store_true", help="Enqueue it for the workers and return.")
        for name, (_, text) in CHANGES.items():
            actions.add_parser(name, help=text).add_argument("run", help="The run's id.")
        for subparser in actions.choices.values():
            subparser.add_argument("--json", dest="as_json", action="store_true", help="Print JSON, for scripts.")

    def handle(self, *, action: str, as_json: bool, verbosity: int, **options: Any) -> None:
        if action == "list":
            self.list_runs(options["statuses"], options["processor"], options["limit"], as_json=as_json)
        elif action == "show":
            self.show_run(find_run(options["run"]), options["events"], as_json=as_json)
        elif action == "failures":
            self.list_failures(find_run(options["run"]), options["limit"], as_json=as_json, as_csv=options["as_csv"])
        elif action == "resume":
            self.resume(find_run(options["run"]), options, verbosity, as_json=as_json)
        else:
            self.change(action, find_run(options["run"]), verbosity, as_json=as_json)

    def print_json(self, data: Any) -> None:
        """Print ``data`` as indented JSON (times in ISO 8601)."""
        self.stdout.write(json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False))

    def list_runs(self, statuses: list[str], processor: str | None, limit: str, *, as_json: bool) -> None:
        """Print the newest runs, filtered, one a line in aligned columns."""
        runs = Run.objects.select_related("task").order_by("-created_at", "-id")
        if statuses:
            runs = runs.filter(status__in=status_filter(statuses))
        if processor:
            runs = runs.filter(processor_filter(processor))
        runs = runs[: whole_number(limit, "--limit", 1)]
        if as_json:
            self.print_json([run_data(run) for run in runs])
            return
        rows = [["ID", "PROCESSOR", "STATUS", "PROGRESS", "STARTED", "UPDATED", "NOTES"]]
        for run in runs:
            progress = progress_text(run, pace=False)
            name = short_name(run.task.processor)
            rows.append(
                [str(run.pk), name, run.status, progress, when(run.started_at), when(run.updated_at), notes(run)]
            )
        if len(rows) == 1:
            self.stdout.write("No runs.")
            return
        for line in table(rows):
            self.stdout.write(line)

    def show_run(self, run: Run, events: str, *, as_json: bool) -> None:
        """Print every field of the run an operator needs, then its last audit events."""
        count = whole_number(events, "--events", 0)
        trail = list(run.events.order_by("-created_at", "-id")[:count])[::-1] if count else []
        if as_json:
            extra = {"backtrace": run.backtrace, "status_line": run.status_line, "result": run.result}
            self.print_json({**run_data(run), **extra, "events": [event_data(event) for event in trail]})
            return
        status = f"{run.status} ({notes(run)})" if notes(run) else run.status
        fields = [
            ("processor", run.task.processor),
            ("config", json.dumps(run.task.shown_config, cls=DjangoJSONEncoder, ensure_ascii=False)),
            ("status", status),
            ("progress", progress_text(run)),
            ("cursor", "-" if run.cursor is None else run.cursor),
            ("created", when(run.created_at)),
            ("started", when(run.started_at)),
            ("updated", when(run.updated_at)),
            ("ended", when(run.ended_at)),
            ("heartbeat", when(run.heartbeat_at)),
            ("time running", f"{run.time_running:.1f}s"),
            ("attempt", f"{run.attempt} ({run.retries} retries)"),
            ("job id", run.job_id or "-"),
            ("started by", describe(run.shown_metadata) or "-"),
            ("metadata", json.dumps(run.shown_metadata, cls=DjangoJSONEncoder, ensure_ascii=False)),
        ]
        if run.status_line:
            fields.append(("status line", run.status_line))
        if run.error_class:
            fields.append(("error", f"{run.error_class}: {run.error_message}"))
        self.stdout.write(f"Run {run.pk} of {short_name(run.task.processor)}")
        for line in table([[f"  {name}", value] for name, value in fields]):
            self.stdout.write(line)
        if trail:
            self.stdout.write(f"Last {len(trail)} events:")
            rows = [
                [
                    f"  {when(event.created_at)}",
                    event.action,
                    f"{event.from_status}->{event.to_status}",
                    describe(event.detail),
                ]
                for event in trail
            ]
            for line in table(rows):
                self.stdout.write(line)

    def list_failures(self, run: Run, limit: str, *, as_json: bool, as_csv: bool) -> None:
        """Print the items the run skipped: the first ``limit`` in columns or JSON, or all of them as CSV."""
        if as_csv:
            for line in csv_lines(run):
                self.stdout.write(line, ending="")
            return
        items = list(skipped_rows(run)[: whole_number(limit, "--limit", 1)])
        if as_json:
            fields = ("item_key", "last_key", "items", "error_class", "error_message", "created_at")
            self.print_json({"run": run.pk, "skipped": run.skipped_count,
                             "items": [{name: getattr(item, name) for name in fields} for item in items]})  # fmt: skip
            return
        if not items:
            self.stdout.write(f"Run {run.pk} skipped no items.")
            return
        rows = [["KEY", "ITEMS", "ERROR", "MESSAGE", "SKIPPED"]]
        for item in items:
            key = f"{item.item_key}..{item.last_key}" if item.last_key else item.item_key
            message = " ".join(item.error_message.split())[:120]
            rows.append([key, str(item.items), short_name(item.error_class), message, when(item.created_at)])
        for line in table(rows):
            self.stdout.write(line)
        if run.skipped_count > len(items):
            self.stdout.write(f"{len(items)} of {run.skipped_count:,} skipped items; --csv lists them all.")

    def resume(self, run: Run, options: dict[str, Any], verbosity: int, *, as_json: bool) -> None:
        """Enqueue the run with ``--background``; else perform it here as ``run_maintenance_task --resume`` does."""
        if not options["background"]:
            if as_json:
                raise CommandError(
                    "--json goes with --background: a resume in this process prints progress.", returncode=BAD_INPUT
                )
            streams = {name: options[name] for name in ("stdout", "stderr") if options.get(name)}
            call_command("run_maintenance_task", "--resume", str(run.pk), verbosity=verbosity, **streams)
            return
        try:
            Runner.resume(run, actor=self.actor())
        except EnqueueFailed as error:
            raise CommandError(str(error), returncode=ERRORED) from None
        except MaintenanceTaskError as error:
            raise CommandError(str(error), returncode=BAD_INPUT) from None
        follow = f"Follow it with: manage.py maintenance_runs show {run.pk}"
        self.report(run, f"resumed, handed to the workers ({run.status}). {follow}", verbosity, as_json=as_json)

    def change(self, action: str, run: Run, verbosity: int, *, as_json: bool) -> None:
        """Pause, cancel or force the run through the Runner, as this OS user on this host."""
        change, _ = CHANGES[action]
        old = run.status
        try:
            change(run, actor=self.actor())
        except MaintenanceTaskError as error:
            raise CommandError(str(error), returncode=BAD_INPUT) from None
        later = " It stops after its current batch." if run.status in EXECUTING_STATUSES else ""
        self.report(run, f"{old} -> {run.status}.{later}", verbosity, as_json=as_json)

    def report(self, run: Run, what: str, verbosity: int, *, as_json: bool) -> None:
        """Say what became of the run: its JSON, or one line."""
        if as_json:
            run.refresh_from_db()
            self.print_json(run_data(run))
        elif verbosity:
            self.stdout.write(f"Run {run.pk} of {short_name(run.task.processor)}: {what}")

    @staticmethod
    def actor() -> dict[str, Any]:
        """Return who acts: the OS user, host and process, with this command line (names only)."""
        return local_actor("cli", argv=command_line(sys.argv[1:]))
