"""The ``django.tasks`` entry points: perform one slice of a run, and watch over runs.

A job carries only ids: the run's id and the attempt token the run had when the job was
enqueued. All state stays in ``Run``, so any ``django.tasks`` backend works, a duplicate
job finds the token gone and does nothing, and a lost job is made up for by the watchdog.

With a backend that runs tasks as they are enqueued (``ImmediateBackend``), the slice that
a slice enqueues is performed by a loop in the outermost call, never by recursion.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.tasks import Task, task
from django.tasks.backends.immediate import ImmediateBackend
from django.tasks.exceptions import InvalidTask
from django.utils import timezone

from . import slots
from .actors import local_actor
from .conf import app_settings
from .engine import AT_ONCE, DEFER, INTERRUPT, Engine
from .exceptions import ConcurrentChange, InvalidRouting, InvalidTransition, UnknownProcessor
from .models import Run, RunEvent
from .processor import Processor
from .registry import path_of, registry
from .signals import watchdog_ran
from .status import EXECUTING_STATUSES, RECOVER_TARGETS, RunStatus
from .stopping import StopOnSignal

logger = logging.getLogger(__name__)

_local = threading.local()


class _Slices:
    """What the outermost executor call of this thread shares with the calls it makes."""

    def __init__(self) -> None:
        self.pending: deque[tuple[Task[Any, Any], int, int]] = deque()
        self.stop = StopOnSignal(chain=True)


def slice_job(processor: type[Processor] | None) -> Task[Any, Any]:
    """Return the slice task routed as the processor asks (queue_name, priority).

    Raise InvalidRouting, naming the processor, if the backend refuses its queue or priority.
    Priorities are left out on a backend without them (RQ).
    """
    if processor is None:
        return perform_run
    options: dict[str, Any] = {}
    if processor.queue_name is not None:
        options["queue_name"] = processor.queue_name
    if processor.priority is not None and perform_run.get_backend().supports_priority:
        options["priority"] = processor.priority
    if not options:
        return perform_run
    try:
        return perform_run.using(**options)
    except InvalidTask as error:
        backend = perform_run.get_backend()
        declared = ", ".join(sorted(backend.queues)) or "any"
        raise InvalidRouting(
            f"{path_of(processor)} routes its runs to queue {processor.queue_name!r} "
            f"with priority {processor.priority!r}, which the tasks backend {backend.alias!r} refuses: {error} "
            f"(declared queues: {declared})"
        ) from None


def route(run: Run) -> Task[Any, Any]:
    """Return the slice job for the run's processor (the default one if it is gone).

    A run waiting to retry after an error gets a slice deferred to its ``retry_at``.
    """
    try:
        job = slice_job(registry.get(run.task.processor))
    except UnknownProcessor:
        job = perform_run  # the slice errors the run, naming the missing processor
    if run.retry_at is not None and run.retry_at > timezone.now() and job.get_backend().supports_defer:
        job = job.using(run_after=run.retry_at)
    return job


def runs_in_process(job: Any) -> bool:
    """Return whether the job's backend performs a job inside ``enqueue()``."""
    return isinstance(job.get_backend(), ImmediateBackend)


def can_defer(job: Any) -> bool:
    """Return whether the job can be enqueued to run later, in another process."""
    return job.get_backend().supports_defer and not runs_in_process(job)


def defer(job: Task[Any, Any], run_after: datetime | None, *args: Any) -> None:
    """Enqueue ``job(*args)`` to run at ``run_after``, or now if None (the watchdog, the scheduler's chain)."""
    (job if run_after is None else job.using(run_after=run_after)).enqueue(*args)


def enqueue(run: Run) -> None:
    """Put a slice of the enqueued run on the queue once the current transaction commits.

    The one way work reaches the queue: starting, resuming, the next slice, a run let in
    under MAX_CONCURRENT_RUNS, a recovered run. The job carries the run's id and its current
    attempt token: only one job per token can claim the run, so a duplicate does nothing.
    Outside an executor, a watchdog follows in case the job is lost. Inside one, the slice
    is enqueued once the current one has returned, so that an in-process backend loops
    instead of recursing.
    """
    job, run_id, attempt = route(run), run.pk, run.attempt

    def put() -> None:
        slices: _Slices | None = getattr(_local, "slices", None)
        if slices is not None:
            slices.pending.append((job, run_id, attempt))
            return
        job.enqueue(run_id, attempt)
        watch(run_id, attempt, app_settings.STALE_AFTER + 1)

    transaction.on_commit(put)


def enqueue_each(runs: list[Run]) -> None:
    """Enqueue a slice of each run (those ``slots`` let in)."""
    for run in runs:
        enqueue(run)


def recover(*, actor: dict[str, Any] | None = None, now: Any = None) -> list[Run]:
    """Take over runs whose executor has not been heard from for STALE_AFTER.

    A running run gets a new attempt token (its old executor, if it wakes up, can no
    longer commit) and a new slice; a pausing run becomes paused and a cancelling one
    cancelled, since nothing is left to wait for. Running it again does nothing more.
    """
    actor = actor or local_actor("recovery")
    recovered = []
    for run in Run.objects.stale(now).select_related("task"):
        old, token, heartbeat_at = run.status, run.attempt, run.heartbeat_at
        fields: dict[str, Any] = {"attempt": F("attempt") + 1} if old == RunStatus.RUNNING else {}
        try:
            run.transition_to(RECOVER_TARGETS[RunStatus(old)], token=token, action="recover", **fields)
        except (ConcurrentChange, InvalidTransition):
            continue  # it moved on meanwhile: not ours to recover
        RunEvent.objects.log(run, "recovered", old, run.status, actor, stale_attempt=token, last_heartbeat=heartbeat_at)
        if run.status == RunStatus.ENQUEUED:
            enqueue(run)
        recovered.append(run)
    if recovered:
        enqueue_each(slots.freed())
    return recovered


@task()
def perform_run(run_id: int, attempt: int) -> str:
    """Perform one slice of the run if it is still enqueued with this attempt token."""
    slices: _Slices | None = getattr(_local, "slices", None)
    if slices is not None:  # called by the loop below, through an in-process backend
        return _perform_slice(run_id, attempt, slices)
    slices = _local.slices = _Slices()
    try:
        with slices.stop:
            status = _perform_slice(run_id, attempt, slices)
            while slices.pending:
                next_job, next_id, next_attempt = slices.pending.popleft()
                if slices.stop() and runs_in_process(next_job):
                    _interrupt(next_id, next_attempt)  # this process is going down: nobody else would go on
                    continue
                next_job.enqueue(next_id, next_attempt)
    finally:
        _local.slices = None
    return status


def _perform_slice(run_id: int, attempt: int, slices: _Slices) -> str:
    run = Run.objects.select_related("task").filter(pk=run_id).first()
    if run is None or run.status != RunStatus.ENQUEUED or run.attempt != attempt:
        logger.info("Run %s is not enqueued with attempt %s any more; nothing to do.", run_id, attempt)
        return run.status if run else "missing"
    defers = perform_run.get_backend().supports_defer
    if defers and run.retry_at is not None and run.retry_at > timezone.now():
        logger.info("Run %s retries at %s; this job came early and does nothing.", run_id, run.retry_at)
        return "retry later"
    retry = DEFER if defers else AT_ONCE  # without run_after (ImmediateBackend): retry at once
    engine = Engine(run, should_stop=slices.stop, slice_seconds=app_settings.SLICE_SECONDS, retry=retry)
    cap = app_settings.MAX_CONCURRENT_RUNS
    try:
        if cap is None:
            _claim(engine, attempt)
        else:
            with slots.slot_lock():
                if not slots.free_slots(cap):
                    slots.join_line(run, attempt)
                    logger.info("Run %s waits for one of the %s slots (MAX_CONCURRENT_RUNS).", run_id, cap)
                    return "waiting"
                _claim(engine, attempt)
    except (ConcurrentChange, InvalidTransition):
        logger.info("Run %s was claimed by another job; nothing to do.", run_id)
        run.refresh_from_db(fields=["status"])
        return run.status
    engine.execute()
    if run.status == RunStatus.INTERRUPTED and engine.stop_reason == INTERRUPT and not runs_in_process(perform_run):
        # This worker is shutting down: another one goes on.
        run.request("requeue", {RunStatus.INTERRUPTED: RunStatus.ENQUEUED}, local_actor("worker"))
        enqueue(run)
        enqueue_each(slots.freed())
    else:
        enqueue_each(slots.after_slice(run))  # the next slice, and runs waiting for a slot
    return run.status


def _interrupt(run_id: int, attempt: int) -> None:
    """Leave an enqueued run interrupted (resumable, visible) when no slice of it will come."""
    run = Run.objects.filter(pk=run_id, status=RunStatus.ENQUEUED, attempt=attempt).first()
    if run is None:
        return
    try:
        run.transition_to(RunStatus.INTERRUPTED, token=attempt, waiting_since=None)
    except (ConcurrentChange, InvalidTransition):
        return  # it moved on meanwhile
    RunEvent.objects.log(
        run, "interrupted", RunStatus.ENQUEUED, RunStatus.INTERRUPTED, {"source": "engine"}, attempt=attempt
    )


def _claim(engine: Engine, attempt: int) -> None:
    # The claim moves the token to attempt + 1: watch over that attempt from now on.
    watch(engine.run.pk, attempt + 1, app_settings.STALE_AFTER + 1)
    engine.claim(attempt)


def watch(run_id: int, attempt: int, delay: float) -> None:
    """Enqueue a watchdog for the run's attempt, ``delay`` seconds from now, if the backend can."""
    if can_defer(watchdog):
        defer(watchdog, timezone.now() + timedelta(seconds=delay), run_id, attempt)


@task()
def watchdog(run_id: int, attempt: int) -> str:
    """Recover runs whose executor died; keep watching this run while this attempt lasts.

    Each slice enqueues one for its attempt, so while runs are active a watchdog is due
    within about STALE_AFTER, with no cron job. A run still enqueued with this attempt after
    STALE_AFTER may have lost its job (its worker died between handing it back and enqueuing
    the next slice), or waits for a slot under MAX_CONCURRENT_RUNS: it is enqueued once
    more, and watched again. A duplicate job finds the token gone and does nothing, so this
    costs at most one extra job per slice. Each watchdog also sends ``watchdog_ran``, on
    which the scheduler restarts its job chain if it died.
    """
    recover(actor={"source": "watchdog"})
    watchdog_ran.send(sender=watchdog)
    run = Run.objects.select_related("task").filter(pk=run_id).first()
    if run is None or run.attempt != attempt or run.status not in {*EXECUTING_STATUSES, RunStatus.ENQUEUED}:
        return "done"
    stale_after = app_settings.STALE_AFTER
    now = timezone.now()
    if run.status == RunStatus.ENQUEUED:
        since = max(run.updated_at, run.retry_at or run.updated_at)  # a retry is not due before retry_at
        waited = (now - since).total_seconds()
        if waited < stale_after:
            watch(run_id, attempt, stale_after - waited + 1)
            return "watching"
        logger.info("Run %s has waited %.0fs for its slice; enqueuing it once more.", run_id, waited)
        enqueue(run)  # with a watchdog: that slice may wait for a slot too
        return "enqueued again"
    since = (now - run.heartbeat_at).total_seconds() if run.heartbeat_at else stale_after
    watch(run_id, attempt, max(1.0, stale_after - since + 1))
    return "watching"
