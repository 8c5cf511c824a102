"""Retention: delete ended runs older than RETENTION for their status."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from itertools import batched

from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from .conf import app_settings
from .models import DeployRecord, Run, SchedulerState

logger = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(days=1)


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
            counts[status] = sum(delete_if_still_old(old, chunk) for chunk in batched(ids, 500))
    if not dry_run and any(counts.values()):
        logger.info("Pruned runs: %s.", ", ".join(f"{n} {status}" for status, n in counts.items()))
    return counts


def delete_if_still_old(old: QuerySet[Run], ids: tuple[int, ...]) -> int:
    """Delete the runs ``ids`` still in ``old``, locked first: an errored run resumed meanwhile is kept."""
    with transaction.atomic():
        still_old = list(old.filter(pk__in=ids).select_for_update().values_list("pk", flat=True))
        Run.objects.filter(pk__in=still_old).delete()
    return len(still_old)


def prune_if_due(now: datetime) -> dict[str, int] | None:
    """Prune runs if no scheduler has done it in the last day."""
    state, _ = SchedulerState.objects.get_or_create(pk=1)
    last = state.last_pruned_at
    if last is not None and now - last < PRUNE_EVERY:
        return None
    if not SchedulerState.objects.filter(pk=state.pk, last_pruned_at=last).update(last_pruned_at=now):
        return None  # another scheduler is at it
    return prune_runs(now)
