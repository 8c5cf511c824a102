"""Schedules, stuck runs and retention: what the scheduler does on each tick.

``tick(now)`` starts the runs that are due, flags runs that are stuck, and once a day prunes
old runs. It takes the time as an argument, so tests drive it with any clock, and it is safe
with any number of schedulers at once: a due time is claimed by a conditional update of
``next_run_at`` (and, where the database can, rows locked by another scheduler are skipped).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import batched
from typing import Any

from croniter import croniter
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Max, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from .conf import app_settings
from .exceptions import MaintenanceTaskError, RunAlreadyActive
from .models import DeployRecord, Run, Schedule, SchedulerState, ScheduleSource, Task
from .registry import registry
from .signals import run_stuck
from .status import RunStatus

logger = logging.getLogger(__name__)

S = RunStatus
#: A run in one of these statuses is at work or waiting for a worker: it may be stuck. Paused
#: and interrupted runs wait for an operator, which is not being stuck.
STUCK_STATUSES = frozenset({S.ENQUEUED, S.RUNNING, S.PAUSING, S.CANCELLING})
PRUNE_EVERY = timedelta(days=1)


# -- cron ------------------------------------------------------------------------------------


def cron_error(expression: Any) -> str | None:
    """Return why ``expression`` is not a 5-field cron expression, or None if it is one."""
    if not isinstance(expression, str) or not expression.strip():
        return "Enter a cron expression, e.g. '0 3 * * *'."
    fields = expression.split()
    if len(fields) != 5:
        return f"A cron expression has 5 fields (minute hour day-of-month month day-of-week), not {len(fields)}: {expression!r}."
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression."
    return None


def next_cron(expression: str, after: datetime) -> datetime:
    """Return the first time after ``after`` that matches ``expression``, in settings.TIME_ZONE.

    Daylight saving time is handled as croniter does: a time that the clock skips in spring
    runs at the first time after it; a time that happens twice in autumn runs at both.
    """
    local = timezone.localtime(after, timezone.get_default_timezone())
    return croniter(expression, local).get_next(datetime)


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
        wanted.add(path)
        expression = " ".join(processor.schedule.split())
        config = processor.default_config()
        task, _ = Task.objects.get_or_create(
            processor=path, config_digest=Task.digest(config), defaults={"config": config}
        )
        schedule, created = Schedule.objects.get_or_create(
            code_processor=path,
            defaults={
                "task": task,
                "cron": expression,
                "source": ScheduleSource.CODE,
                "next_run_at": next_cron(expression, now),
            },
        )
        if created:
            result.created.append(path)
        elif schedule.cron != expression or schedule.task_id != task.pk:
            Schedule.objects.filter(pk=schedule.pk).update(
                task=task, cron=expression, next_run_at=next_cron(expression, now), updated_at=now
            )
            result.updated.append(path)
    gone = Schedule.objects.filter(source=ScheduleSource.CODE).exclude(code_processor__in=wanted)
    result.removed = sorted(gone.values_list("code_processor", flat=True))
    gone.delete()
    from .jobs import ensure_scheduler

    ensure_scheduler(now)
    return result


# -- the tick ----------------------------------------------------------------------------------


@dataclass
class TickResult:
    started: list[Run] = field(default_factory=list)
    skipped: list[Schedule] = field(default_factory=list)
    stuck: list[Run] = field(default_factory=list)
    pruned: dict[str, int] | None = None


def tick(now: datetime | None = None) -> TickResult:
    """Start due runs, flag stuck runs and, once a day, prune old runs."""
    now = now or timezone.now()
    result = TickResult()
    due = Schedule.objects.filter(enabled=True, next_run_at__lte=now).order_by("next_run_at", "pk")
    for pk in list(due.values_list("pk", flat=True)):
        fire(pk, now, result)
    result.stuck = flag_stuck_runs(now)
    result.pruned = prune_if_due(now)
    return result


def fire(pk: int, now: datetime, result: TickResult) -> Run | None:
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
        from .runner import Runner, local_actor

        metadata = local_actor("schedule", schedule=pk, due=due.isoformat())
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


# -- stuck runs --------------------------------------------------------------------------------


def expected_duration(processor_path: str) -> timedelta:
    """Return how long a run of the processor may stay active before it is stuck."""
    processor = registry.processors().get(processor_path)
    value = getattr(processor, "expected_duration", None)
    if value is None:
        return timedelta(seconds=app_settings.STUCK_RUN_AFTER)
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


def stuck_for(run: Run, now: datetime | None = None) -> timedelta | None:
    """Return how long the run has been active if that is longer than expected, else None."""
    if run.status not in STUCK_STATUSES:
        return None
    active_for = (now or timezone.now()) - (run.started_at or run.created_at)
    return active_for if active_for > expected_duration(run.task.processor) else None


def flag_stuck_runs(now: datetime | None = None) -> list[Run]:
    """Flag runs active for longer than expected: a warning and ``run_stuck``, once per run."""
    now = now or timezone.now()
    limits = [timedelta(seconds=app_settings.STUCK_RUN_AFTER)]
    limits += [expected_duration(path) for path, p in registry.processors().items() if p.expected_duration is not None]
    candidates = (
        Run.objects.filter(status__in=STUCK_STATUSES, stuck_flagged_at__isnull=True)
        .alias(since=Coalesce("started_at", "created_at"))
        .filter(since__lt=now - min(limits))
        .select_related("task")
    )
    flagged = []
    for run in candidates:
        active_for = stuck_for(run, now)
        if active_for is None:
            continue
        if not Run.objects.filter(pk=run.pk, stuck_flagged_at__isnull=True).update(stuck_flagged_at=now):
            continue  # another scheduler flagged it
        run.stuck_flagged_at = now
        logger.warning(
            "Run %s of %s is stuck: %s for %s (expected at most %s).",
            run.pk,
            run.task,
            run.status,
            active_for,
            expected_duration(run.task.processor),
        )
        run_stuck.send(sender=Run, run=run, active_for=active_for)
        flagged.append(run)
    return flagged


# -- retention ---------------------------------------------------------------------------------


def prune_runs(now: datetime | None = None, *, dry_run: bool = False) -> dict[str, int]:
    """Delete ended runs older than RETENTION for their status; keep each task's latest run.

    Runs the deploy hook counts (a run-once task's succeeded run) are kept too: without
    them, the next deploy would start that task again.

    Return the number of runs deleted (or, with ``dry_run``, that would be) by status.
    """
    now = now or timezone.now()
    latest = set(Run.objects.order_by().values("task").annotate(last=Max("pk")).values_list("last", flat=True))
    latest.update(DeployRecord.objects.exclude(run=None).values_list("run_id", flat=True))
    counts = {}
    for status, days in app_settings.RETENTION.items():
        if days is None:
            continue
        cutoff = now - timedelta(days=days)
        old = Run.objects.filter(status=status).filter(
            Q(ended_at__lt=cutoff) | Q(ended_at__isnull=True, created_at__lt=cutoff)
        )
        ids = [pk for pk in old.order_by("pk").values_list("pk", flat=True) if pk not in latest]
        counts[status] = len(ids)
        if not dry_run:
            for chunk in batched(ids, 500):
                Run.objects.filter(pk__in=chunk).delete()
    if not dry_run and any(counts.values()):
        logger.info("Pruned runs: %s.", ", ".join(f"{n} {status}" for status, n in counts.items()))
    return counts


def prune_if_due(now: datetime) -> dict[str, int] | None:
    """Prune runs if no scheduler has done it in the last day."""
    state = SchedulerState.get()
    last = state.last_pruned_at
    if last is not None and now - last < PRUNE_EVERY:
        return None
    if not SchedulerState.objects.filter(pk=state.pk, last_pruned_at=last).update(last_pruned_at=now):
        return None  # another scheduler is at it
    return prune_runs(now)
