"""The deploy hook: start the processors that run on deploy, once per deploy across all hosts.

A processor declares ``run_on_deploy = "once"`` (run until a run succeeds, like a data
migration) or ``"always"`` (a run on every deploy). Each runs with its default parameters, so
each is one Task. Its DeployRecord row is locked while a hook decides, so hooks running at the
same time on several hosts (a rolling deploy) start it once; a hook that comes after a run
succeeded sees the run and starts nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .exceptions import DeployError, MaintenanceTaskError, RunAlreadyActive
from .models import DeployRecord, DeployState, Run, Task
from .processor import Processor
from .registry import registry, short_name
from .runner import Runner
from .scheduling import SyncResult, sync_code_schedules
from .status import RunStatus

ONCE, ALWAYS = "once", "always"


class DeployResult(models.TextChoices):
    """What the hook did, or would do, with a processor; the label is what the hook prints."""

    ENQUEUED = "enqueued", _("enqueued")  # started a run
    ACTIVE = "active", _("already active")  # a run is active: it goes on (paused ones wait for an operator)
    DONE = "done", _("already done")  # a run-once task whose run succeeded
    SKIPPED = "skipped", _("skipped")  # marked done with --skip
    HELD = "held", _("held")  # its last run was cancelled, or errored during this deploy: not retried by it
    THIS_DEPLOY = "this_deploy", _("already started by this deploy")  # "always", same deploy id


@dataclass
class Outcome:
    """What the hook did with one processor, and why."""

    path: str
    mode: str
    result: DeployResult
    run: Run | None = None
    reason: str = ""

    @property
    def name(self) -> str:
        return short_name(self.path)


@dataclass
class Report:
    """Everything one invocation of the hook did."""

    recovered: list[Run] = field(default_factory=list)
    resumed: list[Run] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    schedules: SyncResult | None = None  # None: not synced (a dry run)
    deploy_id: str = ""

    def runs_to_watch(self) -> list[Run]:
        """Return the runs this deploy waits for with ``--wait``."""
        runs = {run.pk: run for run in [*self.recovered, *self.resumed]}
        for outcome in self.outcomes:
            run = outcome.run
            if run is None:
                continue
            # A run-once task that errored during this deploy fails the deploy on every host, and
            # a hook that comes late reports the runs its deploy (by id) started.
            started_by_this_deploy = bool(self.deploy_id) and run.metadata.get("deploy_id") == self.deploy_id
            if (
                outcome.result in (DeployResult.ENQUEUED, DeployResult.ACTIVE)
                or (outcome.result == DeployResult.HELD and run.status == RunStatus.ERRORED)
                or started_by_this_deploy
            ):
                runs[run.pk] = run
        return list(runs.values())


def deploy_processors() -> dict[str, type[Processor]]:
    """Return the discovered processors that run on deploy, by dotted path."""
    return {path: processor for path, processor in registry.processors().items() if processor.run_on_deploy}


def find_task(path: str) -> Task | None:
    """Return the task a deploy runs for this processor, if it exists (no writes)."""
    return Task.objects.find(path, registry.get(path).default_config())


def get_record(path: str) -> DeployRecord:
    """Return the processor's deploy record, creating it and its task if needed.

    Both are created outside any transaction, where a concurrent insert is simply read back.
    A new record takes over the task's latest run: a run-once task an operator already ran
    successfully is done.
    """
    task = Task.objects.for_config(path, registry.get(path).default_config())
    mode = registry.get(path).run_on_deploy or ""
    record, _created = DeployRecord.objects.get_or_create(
        task=task, defaults={"run": lambda: latest_run(None, task, mode)}
    )
    return record


def latest_run(record: DeployRecord | None, task: Task | None, mode: str) -> Run | None:
    """Return the run that counts for the task: an active run, else its latest since the record's run.

    For a run-once task, a run that succeeded counts before any later one (an operator's run
    that errored, say): once done, it stays done. A dry run that has ended never counts: it
    wrote nothing. An active one does, as any active run: the task cannot start another meanwhile.
    """
    if task is None:
        return None
    active = task.runs.active().first()
    if active is not None:
        return active
    if record is None:
        runs = task.runs.filter(dry_run=False)  # what a new record would take over
    elif record.run_id:
        runs = task.runs.filter(pk__gte=record.run_id, dry_run=False)
    else:
        return None  # reset, or never run
    succeeded = runs.filter(status=RunStatus.SUCCEEDED).first() if mode == ONCE else None
    return succeeded or runs.first()


def decide(
    mode: str, record: DeployRecord | None, run: Run | None, *, deploy_id: str, started_at: datetime
) -> tuple[DeployResult, str]:
    """Return what a hook does with the task: ``(DeployResult.ENQUEUED, why)`` to start a run, else ``(result, why)``.

    A run-once task is done when a run succeeded or it was skipped. After an errored run it
    runs again on the next deploy (as Django's ``migrate`` retries a migration that failed),
    but not in the deploy during which the run errored: a hook started before the run ended,
    or with the same deploy id, leaves it alone. A cancelled run holds it until ``--reset``.
    An "always" task starts on each deploy unless a run is still active or, with a deploy
    id, this deploy already started one.
    """
    state = record.state if record is not None else DeployState.NEW
    if mode == ONCE and state == DeployState.SKIPPED:
        return DeployResult.SKIPPED, ""
    if run is not None and run.is_active:
        return DeployResult.ACTIVE, f"{'dry run' if run.dry_run else 'run'} {run.pk} {run.status}"
    if mode == ONCE and (state == DeployState.DONE or (run is not None and run.status == RunStatus.SUCCEEDED)):
        return (
            DeployResult.DONE,
            f"run {run.pk} succeeded" if run is not None and run.status == RunStatus.SUCCEEDED else "",
        )
    same_deploy = bool(deploy_id) and record is not None and record.deploy_id == deploy_id
    if mode == ALWAYS:
        if same_deploy and run is not None:
            return DeployResult.THIS_DEPLOY, f"run {run.pk} {run.status}"
        return DeployResult.ENQUEUED, "runs on every deploy"
    if run is None:
        if state != DeployState.NEW:
            return DeployResult.ENQUEUED, "its last run is gone"
        return DeployResult.ENQUEUED, "reset" if record is not None and record.changed_by else "not run yet"
    if run.status == RunStatus.CANCELLED:
        return DeployResult.HELD, f"run {run.pk} was cancelled; --reset to run it again, or --skip"
    if run.status == RunStatus.ERRORED:
        if same_deploy or (run.ended_at is not None and run.ended_at >= started_at):
            return DeployResult.HELD, f"run {run.pk} errored during this deploy; the next deploy retries it"
        return DeployResult.ENQUEUED, f"retry: run {run.pk} errored"
    return DeployResult.ENQUEUED, f"run {run.pk} {run.status}"


def claim(path: str, mode: str, *, actor: dict[str, Any], deploy_id: str, started_at: datetime) -> Outcome:
    """Decide for one processor with its deploy record locked, and start its run if needed."""
    record = get_record(path)
    with transaction.atomic():
        # The lock serializes hooks on this task (on SQLite, the IMMEDIATE transaction does).
        record = DeployRecord.objects.select_for_update().get(pk=record.pk)
        run = latest_run(record, record.task, mode)
        result, reason = decide(mode, record, run, deploy_id=deploy_id, started_at=started_at)
        if result == DeployResult.ENQUEUED:
            try:
                run = Runner.run(path, {}, metadata={**actor, "deploy_id": deploy_id, "reason": reason})
            except RunAlreadyActive as error:  # started by someone else meanwhile
                run = Run.objects.filter(pk=error.run_id).first()
                result, reason = DeployResult.ACTIVE, f"run {error.run_id}"
        if run is not None and run.status == RunStatus.SUCCEEDED and mode == ONCE:
            record.state = DeployState.DONE
        elif result == DeployResult.ENQUEUED:
            record.state = DeployState.STARTED
            record.deploy_id = deploy_id
            record.changed_by = actor
        if run is not None and record.state != DeployState.SKIPPED:
            record.run = run
        record.save()
    return Outcome(path, mode, result, run, reason)


def plan(path: str, mode: str, *, deploy_id: str, started_at: datetime) -> Outcome:
    """Return what a hook would do with one processor now, writing nothing."""
    task = find_task(path)
    record = DeployRecord.objects.filter(task=task).first() if task is not None else None
    run = latest_run(record, task, mode)
    result, reason = decide(mode, record, run, deploy_id=deploy_id, started_at=started_at)
    return Outcome(path, mode, result, None if result == DeployResult.ENQUEUED else run, reason)


def resume_interrupted(actor: dict[str, Any]) -> list[Run]:
    """Resume runs left interrupted (their process was stopped, by this deploy for instance)."""
    resumed = []
    runs = Run.objects.filter(status=RunStatus.INTERRUPTED, task__processor__in=list(registry.processors()))
    for run in runs.select_related("task"):
        try:
            Runner.resume(run, actor=actor)
        except MaintenanceTaskError:
            continue  # another hook or an operator got there first
        resumed.append(run)
    return resumed


def deploy(
    *, actor: dict[str, Any], deploy_id: str = "", dry_run: bool = False, started_at: datetime | None = None
) -> Report:
    """Sync code schedules, recover runs whose worker died, resume interrupted runs, start what runs on deploy.

    Returns at once with a backend that runs jobs in workers; the runs go on there.
    """
    started_at = started_at or timezone.now()
    report = Report(deploy_id=deploy_id)
    processors = deploy_processors()
    if dry_run:
        report.recovered = list(Run.objects.stale().select_related("task"))
        report.resumed = list(
            Run.objects.filter(
                status=RunStatus.INTERRUPTED, task__processor__in=list(registry.processors())
            ).select_related("task")
        )
        report.outcomes = [
            plan(path, p.run_on_deploy or "", deploy_id=deploy_id, started_at=started_at)
            for path, p in processors.items()
        ]
        return report
    report.schedules = sync_code_schedules()  # also starts the scheduler's job chain if it can
    report.recovered = Runner.recover(actor=actor)
    report.resumed = resume_interrupted(actor)
    for path, processor in processors.items():
        report.outcomes.append(
            claim(path, processor.run_on_deploy or "", actor=actor, deploy_id=deploy_id, started_at=started_at)
        )
    return report


#: What --status and the admin call each result, seen between deploys.
STATE_LABELS = {
    DeployResult.ENQUEUED: "to run on the next deploy",
    DeployResult.DONE: "done",
    DeployResult.SKIPPED: "skipped",
    DeployResult.ACTIVE: "active",
    DeployResult.HELD: "held",
}


def status_of(path: str, mode: str) -> tuple[Outcome, DeployRecord | None, Run | None]:
    """Return what the next deploy would do with one processor, its record and the run that counts."""
    task = find_task(path)
    record = DeployRecord.objects.filter(task=task).first() if task is not None else None
    run = latest_run(record, task, mode)
    result, reason = decide(mode, record, run, deploy_id="", started_at=timezone.now())
    return Outcome(path, mode, result, run, reason), record, run


def state_label(outcome: Outcome) -> str:
    if outcome.mode == ALWAYS and outcome.result == DeployResult.ENQUEUED:
        return "runs on every deploy"
    return str(STATE_LABELS.get(outcome.result, outcome.result.label))


def status() -> list[tuple[Outcome, DeployRecord | None, Run | None]]:
    """Return, for each processor that runs on deploy, its record and the run that counts."""
    return [status_of(path, processor.run_on_deploy or "") for path, processor in deploy_processors().items()]


@contextmanager
def _locked_once_record(name: str, refusal: str) -> Iterator[tuple[str, DeployRecord, Run | None]]:
    """Lock a run-once processor's deploy record; refuse (``refusal`` says why) while it has an active run."""
    processor = registry.resolve(name)
    path = registry.path_of(processor)
    if processor.run_on_deploy != ONCE:
        raise DeployError(f"{path} is not a run-once processor (run_on_deploy = {processor.run_on_deploy!r}).")
    record = get_record(path)
    with transaction.atomic():
        record = DeployRecord.objects.select_for_update().get(pk=record.pk)
        run = latest_run(record, record.task, ONCE)
        if run is not None and run.is_active:
            raise DeployError(f"{path} has an active run {run.pk} ({run.status}): {refusal}")
        yield path, record, run


def skip(name: str, *, actor: dict[str, Any]) -> str:
    """Mark a run-once processor as done without running it; return what was done."""
    with _locked_once_record(name, "cancel it first, then skip.") as (path, record, run):
        if record.state == DeployState.SKIPPED:
            return f"{path} was already skipped."
        if run is not None and run.status == RunStatus.SUCCEEDED:
            record.state, record.run = DeployState.DONE, run
            record.save()
            return f"{path} is already done (run {run.pk} succeeded): nothing to skip."
        if record.state == DeployState.DONE:
            return f"{path} is already done: nothing to skip."
        record.state, record.changed_by = DeployState.SKIPPED, actor
        record.save()
    return f"{path} marked as done without running it: deploys will not start it."


def reset(name: str, *, actor: dict[str, Any]) -> str:
    """Make a run-once processor run again on the next deploy; return what was done."""
    with _locked_once_record(name, "it cannot be reset now.") as (path, record, _run):
        record.state, record.run, record.deploy_id, record.changed_by = DeployState.NEW, None, "", actor
        record.save()
    return f"{path} reset: the next deploy starts it."
