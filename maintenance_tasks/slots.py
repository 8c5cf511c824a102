"""MAX_CONCURRENT_RUNS: how many runs background executors perform at once, across processes.

A slice claims its run only while fewer than MAX_CONCURRENT_RUNS runs are executing
(running, pausing or cancelling), counted under a database lock so that two workers can
never both take the last slot. A slice that finds no free slot leaves its run enqueued with
the same attempt token and puts it in line (``waiting_since``). Whenever a run leaves an
executor, the runs that have waited longest are taken out of the line, one per free slot; a
run at the end of its slice goes to the back of the line, so runs take turns.

This module only does the bookkeeping: it returns the runs that need a slice, and the caller
(``jobs``) puts them on the queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import transaction
from django.utils import timezone

from .conf import app_settings
from .models import Lock, Run
from .status import RunStatus

LOCK = "max_concurrent_runs"


@contextmanager
def slot_lock() -> Iterator[None]:
    """Run the block in a transaction that holds the concurrency lock."""
    Lock.objects.get_or_create(name=LOCK)  # outside the transaction: never held for long
    with transaction.atomic():
        Lock.take(LOCK)
        yield


def free_slots(cap: int) -> int:
    """Return how many more runs may start now (call it inside ``slot_lock()``)."""
    return max(0, cap - Run.objects.executing().count())


def join_line(run: Run, attempt: int) -> bool:
    """Put the enqueued run in line for a slot (call it inside ``slot_lock()``); return whether it is in line."""
    now = timezone.now()
    rows = Run.objects.filter(pk=run.pk, status=RunStatus.ENQUEUED, attempt=attempt)
    if rows.filter(waiting_since__isnull=True).update(waiting_since=now, updated_at=now):
        return True
    return rows.exists()  # already in line


def take_from_line(cap: int) -> list[Run]:
    """Take the runs that waited longest out of the line, one per free slot (call it inside ``slot_lock()``)."""
    taken = []
    waiting = Run.objects.filter(status=RunStatus.ENQUEUED, waiting_since__isnull=False).select_related("task")
    for run in waiting.order_by("waiting_since", "pk")[: free_slots(cap)]:
        rows = Run.objects.filter(
            pk=run.pk, status=RunStatus.ENQUEUED, attempt=run.attempt, waiting_since=run.waiting_since
        )
        if rows.update(waiting_since=None):
            run.waiting_since = None
            taken.append(run)
    return taken


def after_slice(run: Run) -> list[Run]:
    """Return the runs that need a slice now that ``run``'s slice is over (it may be one of them).

    Without a cap, a run that goes on gets its next slice. Under a cap, it goes to the back
    of the line, and the runs first in line get the free slots. A run that is to retry waits
    for its ``retry_at``, not for a slot: its slice is deferred to then (and joins the line if
    no slot is free), so that it holds up no run in line meanwhile.
    """
    cap = app_settings.MAX_CONCURRENT_RUNS
    goes_on = run.status == RunStatus.ENQUEUED
    if cap is None:
        return [run] if goes_on else []
    with slot_lock():
        if goes_on and run.retry_at is not None and run.retry_at > timezone.now():
            return [run, *take_from_line(cap)]
        if goes_on:
            join_line(run, run.attempt)
        return take_from_line(cap)


def freed() -> list[Run]:
    """Return the runs first in line for the slots freed by runs that left their executor (recovered, forced)."""
    cap = app_settings.MAX_CONCURRENT_RUNS
    if cap is None:
        return []
    with slot_lock():
        return take_from_line(cap)
