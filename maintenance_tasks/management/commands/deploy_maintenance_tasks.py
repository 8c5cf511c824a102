"""The deploy hook: run after ``migrate`` on every deploy; starts what runs on deploy and returns."""

from __future__ import annotations

import os
import sys
import time
from argparse import ArgumentTypeError
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from maintenance_tasks import deploy
from maintenance_tasks.actors import command_line, local_actor
from maintenance_tasks.conf import app_settings
from maintenance_tasks.exceptions import MaintenanceTaskError
from maintenance_tasks.models import DeployState, Run
from maintenance_tasks.progress import describe
from maintenance_tasks.status import COMPLETED_STATUSES, RunStatus

OK, ERRORED, BAD_INPUT, STOPPED, TIMED_OUT = 0, 1, 2, 3, 4
DEPLOY_ID_ENV = "MAINTENANCE_DEPLOY_ID"
#: With --wait, a run in one of these has ended, or waits for an operator.
SETTLED = COMPLETED_STATUSES | {RunStatus.PAUSED}
#: Record states an operator sets with --skip and --reset.
CHANGED_BY_HAND = {DeployState.SKIPPED: "skipped", DeployState.NEW: "reset"}


def deploy_id_text(text: str) -> str:
    text = text.strip()
    if not text or len(text) > 100:
        raise ArgumentTypeError(f"must be 1 to 100 characters, not {text!r}")
    return text


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


def who(actor: dict[str, Any]) -> str:
    user, host = actor.get("user", ""), actor.get("host", "")
    return f"{user}@{host}" if user and host else str(user or host or actor.get("source", "?"))


class Command(BaseCommand):
    help = (
        "Run after migrate on every deploy: recover runs whose worker died, resume interrupted runs, "
        "and enqueue the processors declared with run_on_deploy, then return. Safe to run on several "
        "hosts at once. Exit status: 0 done, 1 a run errored (--wait), 2 bad input, 3 a run was paused "
        "or cancelled (--wait), 4 --timeout reached."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_mutually_exclusive_group()
        verbs.add_argument("--status", action="store_true", help="Show what ran on deploy, when, how it ended.")
        verbs.add_argument("--todo", action="store_true", help="Show what the next deploy would start.")
        verbs.add_argument("--skip", metavar="NAME", help="Mark a run-once processor as done without running it.")
        verbs.add_argument("--reset", metavar="NAME", help="Make a run-once processor run again on the next deploy.")
        verbs.add_argument("--dry-run", action="store_true", help="Show what the hook would do now; change nothing.")
        parser.add_argument(
            "--wait", action="store_true", help="Block until the runs of this deploy end, with progress."
        )
        parser.add_argument(
            "--timeout", type=seconds, metavar="SECONDS", help="With --wait: give up after SECONDS (exit 4)."
        )
        parser.add_argument(
            "--deploy-id",
            type=deploy_id_text,
            default=None,
            help=f"Names this deploy (default: ${DEPLOY_ID_ENV}). Hooks of one deploy sharing it start each "
            '"always" processor once, and do not retry a run that errored during this deploy.',
        )

    def handle(
        self,
        *,
        status: bool,
        todo: bool,
        skip: str | None,
        reset: str | None,
        dry_run: bool,
        wait: bool,
        timeout: float | None,
        deploy_id: str | None,
        verbosity: int,
        **options: Any,
    ) -> None:
        actor = local_actor("deploy", argv=command_line(sys.argv[1:]))
        if deploy_id is None:
            try:
                from_env = os.environ.get(DEPLOY_ID_ENV, "").strip()  # empty: no deploy id
                deploy_id = deploy_id_text(from_env) if from_env else ""
            except ArgumentTypeError as error:
                raise CommandError(f"${DEPLOY_ID_ENV} {error}.", returncode=BAD_INPUT) from None
        if wait and (status or todo or skip or reset or dry_run):
            raise CommandError("--wait only goes with the hook itself, not with another verb.", returncode=BAD_INPUT)
        if timeout is not None and not wait:
            raise CommandError("--timeout only goes with --wait.", returncode=BAD_INPUT)
        if skip is not None:
            return self.change(deploy.skip, skip, actor, verbosity)
        if reset is not None:
            return self.change(deploy.reset, reset, actor, verbosity)
        if status:
            return self.show_status()
        report = deploy.deploy(actor=actor, deploy_id=deploy_id, dry_run=dry_run or todo)
        if todo:
            return self.show_todo(report)
        if verbosity:
            self.show_report(report, dry_run=dry_run)
        if wait:
            self.wait(report.runs_to_watch(), timeout, verbosity)

    def change(self, verb: Callable[..., str], name: str, actor: dict[str, Any], verbosity: int) -> None:
        """Skip or reset one run-once processor."""
        try:
            message = verb(name, actor=actor)
        except MaintenanceTaskError as error:
            raise CommandError(str(error), returncode=BAD_INPUT) from None
        if verbosity:
            self.stdout.write(message)

    # -- output ---------------------------------------------------------------------------

    def show_report(self, report: deploy.Report, *, dry_run: bool) -> None:
        verb = "would " if dry_run else ""
        if report.schedules is not None:
            synced = report.schedules
            for change, paths in (
                ("created", synced.created),
                ("updated", synced.updated),
                ("removed", synced.removed),
            ):
                for path in paths:
                    self.stdout.write(f"schedule of {path} {change} (its processor's schedule changed).")
        for run in report.recovered:
            self.stdout.write(f"{verb}recover run {run.pk} of {run.task} (its worker is silent).")
        for run in report.resumed:
            self.stdout.write(f"{verb}resume run {run.pk} of {run.task} (interrupted).")
        for outcome in report.outcomes:
            self.stdout.write(self.outcome_line(outcome, dry_run=dry_run))
        counts: dict[str, int] = {}
        for outcome in report.outcomes:
            counts[outcome.result.label] = counts.get(outcome.result.label, 0) + 1
        parts = [f"{count} {result}" for result, count in counts.items()]
        parts += [f"{len(report.resumed)} resumed", f"{len(report.recovered)} recovered"]
        prefix = "Dry run, nothing changed: " if dry_run else ""
        self.stdout.write(f"{prefix}{len(report.outcomes)} processors run on deploy: {', '.join(parts)}.")

    def outcome_line(self, outcome: deploy.Outcome, *, dry_run: bool) -> str:
        head = f"{outcome.name} ({outcome.mode}): "
        if outcome.result == deploy.DeployResult.ENQUEUED:
            if dry_run:
                return f"{head}would enqueue a run ({outcome.reason})."
            run = outcome.run
            if run is not None:  # it may have ended already (or be performed here, by ImmediateBackend)
                run.refresh_from_db(fields=["status"])
            number, status = (run.pk, run.status) if run is not None else ("?", "unknown")
            return self.style.SUCCESS(f"{head}enqueued run {number} ({outcome.reason}); now {status}.")
        reason = f" ({outcome.reason})" if outcome.reason else ""
        line = f"{head}{outcome.result.label}{reason}."
        return self.style.WARNING(line) if outcome.result == deploy.DeployResult.HELD else line

    def show_status(self) -> None:
        rows = deploy.status()
        if not rows:
            self.stdout.write("No processor runs on deploy (none sets run_on_deploy).")
        for outcome, record, run in rows:
            state = deploy.state_label(outcome)
            parts = [f"{outcome.path} ({outcome.mode}): {state}"]
            if run is not None:
                kind = "dry run" if run.dry_run else "run"  # an active dry run holds the task
                parts.append(
                    f"last {kind} {run.pk} {run.status}, started {when(run.started_at or run.created_at)}, "
                    f"ended {when(run.ended_at)}, by {who(run.metadata)} ({run.metadata.get('source', '?')})"
                )
            else:
                parts.append("never run")
            if record is not None and record.changed_by and record.state in CHANGED_BY_HAND:
                change = CHANGED_BY_HAND[record.state]
                parts.append(f"{change} by {who(record.changed_by)} at {when(record.changed_at)}")
            self.stdout.write("; ".join(parts) + ".")

    def show_todo(self, report: deploy.Report) -> None:
        lines = [f"recover run {run.pk} of {run.task}" for run in report.recovered]
        lines += [f"resume run {run.pk} of {run.task}" for run in report.resumed]
        lines += [
            f"start {outcome.path} ({outcome.mode}): {outcome.reason}"
            for outcome in report.outcomes
            if outcome.result == deploy.DeployResult.ENQUEUED
        ]
        for line in lines or ["Nothing to start."]:
            self.stdout.write(line)

    # -- --wait ---------------------------------------------------------------------------

    def wait(self, runs: list[Run], timeout: float | None, verbosity: int) -> None:
        """Poll the runs until each has ended (or is paused); fail as the worst of them did."""
        pending = {run.pk for run in runs}
        if not pending and verbosity:
            self.stdout.write("Nothing to wait for: this deploy started no run and found none active.")
        ended: dict[int, Run] = {}
        started = time.monotonic()
        next_line = started + app_settings.LOG_INTERVAL
        while pending:
            current = Run.objects.filter(pk__in=pending).select_related("task")
            seen = set()
            for run in current:
                seen.add(run.pk)
                if run.status in SETTLED:
                    pending.discard(run.pk)
                    ended[run.pk] = run
                    if verbosity:
                        self.stdout.write(f"Run {run.pk} of {run.task} {run.status} ({describe(run)}).")
            pending &= seen  # a run deleted meanwhile is not waited for
            if not pending:
                break
            now = time.monotonic()
            if timeout is not None and now - started >= timeout:
                raise CommandError(
                    f"Still running after {timeout:g}s: runs {', '.join(map(str, sorted(pending)))}.",
                    returncode=TIMED_OUT,
                )
            if verbosity and now >= next_line:
                for run in current:
                    if run.pk in pending:
                        self.stdout.write(f"{describe(run)} ({run.task.name}, {run.status}).")
                next_line = now + app_settings.LOG_INTERVAL
            time.sleep(min(app_settings.CHECKPOINT_INTERVAL, 1.0))
        errored = [run for run in ended.values() if run.status == RunStatus.ERRORED]
        if errored:
            details = "; ".join(
                f"run {run.pk} of {run.task}: {run.error_class}: {run.error_message}" for run in errored
            )
            raise CommandError(f"Errored: {details}", returncode=ERRORED)
        stopped = [run for run in ended.values() if run.status != RunStatus.SUCCEEDED]
        if stopped:
            details = ", ".join(f"run {run.pk} {run.status}" for run in stopped)
            raise CommandError(f"Stopped before the end: {details}.", returncode=STOPPED)
        if verbosity and ended:
            self.stdout.write(self.style.SUCCESS(f"All {len(ended)} runs of this deploy succeeded."))
