"""MAX_CONCURRENT_RUNS: how many runs background executors perform at once, across processes.

A slice claims its run only while fewer than MAX_CONCURRENT_RUNS runs are executing
(running, pausing or cancelling), counted under a database lock so that two workers can
never both take the last slot. A slice that finds no free slot leaves its run enqueued with
the same attempt token and marks it waiting. Whenever a run leaves an executor, the runs
that have waited longest get a slice for each free slot; a run at the end of its slice goes
to the back of that line, so runs take turns. The watchdog enqueues a waiting run again
every STALE_AFTER, in case the slice meant to wake it was lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction
from django.utils import timezone

from .conf import app_settings
from .models import Lock, Run
from .status import EXECUTING_STATUSES, RunStatus

S = RunStatus
LOCK = "max_concurrent_runs"


@contextmanager
def turn() -> Iterator[None]:
    """Run the block in a transaction that holds the concurrency lock."""
    Lock.objects.get_or_create(name=LOCK)  # outside the transaction: never held for long
    with transaction.atomic():
        Lock.take(LOCK)
        yield


def free_slots(cap: int) -> int:
    """Return how many more runs may start now (call it inside ``turn()``)."""
    return max(0, cap - Run.objects.filter(status__in=EXECUTING_STATUSES).count())


def wait(run: Run, attempt: int) -> bool:
    """Mark the enqueued run as waiting for a slot (call it inside ``turn()``); return whether it is."""
    now = timezone.now()
    rows = Run.objects.filter(pk=run.pk, status=S.ENQUEUED, attempt=attempt)
    if rows.filter(waiting_since__isnull=True).update(waiting_since=now, updated_at=now):
        return True
    return rows.exists()  # already waiting


def wake(cap: int) -> list[Run]:
    """Enqueue a slice for each free slot, oldest waiting run first (call it inside ``turn()``)."""
    from .runner import Runner

    woken = []
    waiting = Run.objects.filter(status=S.ENQUEUED, waiting_since__isnull=False).select_related("task")
    for run in waiting.order_by("waiting_since", "pk")[: free_slots(cap)]:
        rows = Run.objects.filter(pk=run.pk, status=S.ENQUEUED, attempt=run.attempt, waiting_since=run.waiting_since)
        if rows.update(waiting_since=None):
            Runner.enqueue(run)  # on commit, once the lock is released
            woken.append(run)
    return woken


def hand_back(run: Run) -> None:
    """After a slice: let waiting runs in and, if this run goes on, put it at the back of the line.

    A run that is to retry waits for its ``retry_at``, not for a slot: its slice is deferred to
    then (and joins the line if no slot is free), so that it holds up no run in line meanwhile.
    """
    from .runner import Runner

    cap = app_settings.MAX_CONCURRENT_RUNS
    goes_on = run.status == S.ENQUEUED
    if cap is None:
        if goes_on:
            Runner.enqueue(run)
        return
    with turn():
        if goes_on and run.retry_at is not None and run.retry_at > timezone.now():
            Runner.enqueue(run)  # on commit, once the lock is released
        elif goes_on:
            wait(run, run.attempt)
        wake(cap)


def release() -> None:
    """Let waiting runs in after a run left its executor without one (recovered, forced)."""
    cap = app_settings.MAX_CONCURRENT_RUNS
    if cap is not None:
        with turn():
            wake(cap)
