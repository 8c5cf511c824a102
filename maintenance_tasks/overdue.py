"""Overdue runs: active for longer than their processor's ``expected_duration`` (or OVERDUE_AFTER)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models.functions import Coalesce
from django.utils import timezone

from .conf import app_settings, fit_seconds
from .models import Run
from .registry import registry
from .signals import run_overdue
from .status import RunStatus

logger = logging.getLogger(__name__)

#: A run in one of these statuses is at work or waiting for a worker: it may be overdue. Paused
#: and interrupted runs wait for an operator, which is not being late.
OVERDUE_STATUSES = frozenset({RunStatus.ENQUEUED, RunStatus.RUNNING, RunStatus.PAUSING, RunStatus.CANCELLING})


def expected_duration(processor_path: str) -> timedelta:
    """Return how long a run of the processor may stay active before it is overdue."""
    processor = registry.processors().get(processor_path)
    value = getattr(processor, "expected_duration", None)
    if isinstance(value, timedelta):
        value = value.total_seconds()
    # A value the checks refuse (inf, nan, 1e15) must not break the admin's pages nor the scheduler.
    return timedelta(seconds=fit_seconds(value, app_settings.OVERDUE_AFTER))


def overdue_for(run: Run, now: datetime | None = None) -> timedelta | None:
    """Return how long the run has been active if that is longer than expected, else None."""
    if run.status not in OVERDUE_STATUSES:
        return None
    active_for = (now or timezone.now()) - (run.started_at or run.created_at)
    return active_for if active_for > expected_duration(run.task.processor) else None


def flag_overdue_runs(now: datetime | None = None) -> list[Run]:
    """Flag runs active for longer than expected: a warning and ``run_overdue``, once per run."""
    now = now or timezone.now()
    limits = [timedelta(seconds=app_settings.OVERDUE_AFTER)]
    limits += [expected_duration(path) for path, p in registry.processors().items() if p.expected_duration is not None]
    candidates = (
        Run.objects.filter(status__in=OVERDUE_STATUSES, overdue_flagged_at__isnull=True)
        .alias(since=Coalesce("started_at", "created_at"))
        .filter(since__lt=now - min(limits))
        .select_related("task")
    )
    flagged = []
    for run in candidates:
        active_for = overdue_for(run, now)
        if active_for is None:
            continue
        if not Run.objects.filter(pk=run.pk, overdue_flagged_at__isnull=True).update(overdue_flagged_at=now):
            continue  # another scheduler flagged it
        run.overdue_flagged_at = now
        logger.warning(
            "Run %s of %s is overdue: %s for %s (expected at most %s).",
            run.pk,
            run.task,
            run.status,
            active_for,
            expected_duration(run.task.processor),
        )
        run_overdue.send(sender=Run, run=run, active_for=active_for)
        flagged.append(run)
    return flagged
