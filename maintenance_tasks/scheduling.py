"""Schedules: code schedules, the scheduler's pass (``scheduler_pass``), and its job chain.

``scheduler_pass(now)`` starts the runs that are due, flags overdue runs, and once a day prunes old
runs. It takes the time as an argument, so tests drive it with any clock, and it is safe
with any number of schedulers at once: a due time is claimed by a conditional update of
``next_run_at`` (and, where the database can, rows locked by another scheduler are skipped).

With a tasks backend that can defer jobs, the scheduler needs no process of its own: a
chain of ``scheduler_job`` jobs, each enqueuing the next, with at most one alive.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.db.models import Min
from django.tasks import task
from django.utils import timezone

from .actors import local_actor
from .conf import app_settings
from .cron import next_cron
from .exceptions import MaintenanceTaskError, RunAlreadyActive
from .jobs import can_defer, defer
from .models import JobChain, Run, Schedule, ScheduleSource, Task
from .overdue import flag_overdue_runs
from .registry import registry
from .retention import prune_if_due
from .runner import Runner

logger = logging.getLogger(__name__)


# -- code schedules ----------------------------------------------------------------------------


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def sync_code_schedules(now: datetime | None = None) -> SyncResult:
    """Create, update and remove the schedules that processors declare with ``schedule``.

    A code schedule paused in the admin stays paused. Safe to call from several hosts at
    once: a code schedule is unique per processor.
    """
    now = now or timezone.now()
    result = SyncResult()
    wanted = set()
    for path, processor in registry.processors().items():
        if processor.schedule is None:
            continue
        if error := processor.schedule_problem():
            logger.error("%s: %s (not scheduled).", path, error)
            continue
        expression = " ".join(processor.schedule.split())
        try:
            first = next_cron(expression, now)
        except ValueError as error:  # a deploy goes on without this schedule rather than stop
            logger.error("%s: schedule %r: %s (not scheduled).", path, expression, error)
            continue
        wanted.add(path)
        task = Task.objects.for_config(path, processor.default_config())
        schedule, created = Schedule.objects.get_or_create(
            code_processor=path,
            defaults={
                "task": task,
                "cron": expression,
                "source": ScheduleSource.CODE,
                "next_run_at": first,
            },
        )
        if created:
            result.created.append(path)
        elif schedule.cron != expression or schedule.task_id != task.pk:
            Schedule.objects.filter(pk=schedule.pk).update(
                task=task, cron=expression, next_run_at=first, updated_at=now
            )
            result.updated.append(path)
    gone = Schedule.objects.filter(source=ScheduleSource.CODE).exclude(code_processor__in=wanted)
    result.removed = sorted(gone.values_list("code_processor", flat=True))
    gone.delete()
    ensure_scheduler(now)
    return result


def sync_schedules_after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """Sync the schedules processors declare in code, once this app's tables exist (``post_migrate``)."""
    if using != "default" or Schedule._meta.db_table not in connections[using].introspection.table_names():
        return  # another database, or migrated back to before schedules
    result = sync_code_schedules()
    for verb, paths in (("created", result.created), ("updated", result.updated), ("removed", result.removed)):
        for path in paths:
            logger.info("Code schedule %s: %s.", verb, path)


# -- the scheduler's pass ----------------------------------------------------------------------


@dataclass
class PassResult:
    started: list[Run] = field(default_factory=list)
    skipped: list[Schedule] = field(default_factory=list)
    overdue: list[Run] = field(default_factory=list)
    pruned: dict[str, int] | None = None


def scheduler_pass(now: datetime | None = None) -> PassResult:
    """Start due runs, flag overdue runs and, once a day, prune old runs."""
    now = now or timezone.now()
    result = PassResult()
    due = Schedule.objects.filter(enabled=True, next_run_at__lte=now).order_by("next_run_at", "pk")
    for pk in list(due.values_list("pk", flat=True)):
        fire(pk, now, result)
    result.overdue = flag_overdue_runs(now)
    result.pruned = prune_if_due(now)
    return result


def fire(pk: int, now: datetime, result: PassResult) -> Run | None:
    """Start a run of the schedule if it is due and nobody else took this due time."""
    with transaction.atomic():
        rows = Schedule.objects.filter(pk=pk, enabled=True, next_run_at__lte=now)
        if connection.features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True)
        schedule = rows.first()
        if schedule is None:
            return None  # another scheduler has it, or it changed
        due = schedule.next_run_at
        # One run for however many due times were missed: the next one is after now.
        following = schedule.following(now)
        if not Schedule.objects.filter(pk=pk, next_run_at=due).update(next_run_at=following, updated_at=now):
            return None
        task = Task.objects.get(pk=schedule.task_id)
        if task.runs.active().exists():
            logger.info("Schedule %s: %s still has an active run; skipped the run due at %s.", pk, task, due)
            result.skipped.append(schedule)
            return None
        metadata = local_actor("schedule", schedule=pk, due=due.isoformat())
        if schedule.changed_by:
            metadata["changed_by"] = schedule.changed_by  # who chose what runs: the admin user
        try:
            run = Runner.run(task.processor, task.config, metadata=metadata)
        except RunAlreadyActive:
            result.skipped.append(schedule)
            return None
        except (MaintenanceTaskError, ValidationError) as error:
            logger.error("Schedule %s: could not start %s: %s", pk, task, error)
            return None
        Schedule.objects.filter(pk=pk).update(last_run=run, last_run_at=now)
    result.started.append(run)
    return run


def next_due() -> datetime | None:
    """Return the earliest due time of the enabled schedules."""
    return Schedule.objects.filter(enabled=True).aggregate(first=Min("next_run_at"))["first"]


# -- the scheduler's job chain, with no extra process ------------------------------------------


SCHEDULER = "scheduler"


def ensure_scheduler(now: Any = None) -> bool:
    """Start the scheduler's job chain unless it is alive; return whether a job was enqueued.

    The chain is alive while its next pass is due within SCHEDULER_INTERVAL + STALE_AFTER. A
    new chain takes a new token, so at most one chain goes on: an older job finds the token
    moved and stops. Called on ``migrate``, by the deploy hook, when a schedule is saved in
    the admin, and on ``watchdog_ran``.
    """
    if not can_defer(scheduler_job):
        return False
    now = now or timezone.now()
    token = JobChain.restart(SCHEDULER, now, grace=app_settings.SCHEDULER_INTERVAL + app_settings.STALE_AFTER)
    if token is None:
        return False
    defer(scheduler_job, None, token)
    return True


def on_watchdog_ran(sender: Any, **kwargs: Any) -> None:
    """Restart the scheduler's job chain if it died (receiver of ``watchdog_ran``)."""
    ensure_scheduler()


@task()
def scheduler_job(token: int) -> str:
    """Run one scheduler pass, then enqueue the next one at the next due time (at most SCHEDULER_INTERVAL).

    Each job moves the token on before it works, so a duplicate or superseded job does
    nothing and enqueues nothing: one job of the chain is queued at any time. A pass that
    fails is logged and the chain goes on: the next pass may succeed.
    """
    interval = timedelta(seconds=app_settings.SCHEDULER_INTERVAL)
    if not JobChain.advance(SCHEDULER, token, timezone.now() + interval):
        return "superseded"
    try:
        result = scheduler_pass()
    except Exception:
        logger.exception("The scheduler pass failed; the next one runs as planned.")
        result = PassResult()
    if not can_defer(scheduler_job):
        return "done"
    now = timezone.now()
    run_after = now + interval
    due = next_due()
    if due is not None:
        run_after = max(now + timedelta(seconds=1), min(run_after, due))
    if not JobChain.reschedule(SCHEDULER, token + 1, run_after):
        return "superseded"
    defer(scheduler_job, run_after, token + 1)
    return f"started {len(result.started)}, skipped {len(result.skipped)}, overdue {len(result.overdue)}"
