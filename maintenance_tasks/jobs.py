"""The ``django.tasks`` entry points: perform one slice of a run, and watch over runs.

A job carries only ids: the run's id and the attempt token the run had when the job was
enqueued. All state stays in ``Run``, so any ``django.tasks`` backend works, a duplicate
job finds the token gone and does nothing, and a lost job is made up for by the watchdog.

The watchdog is one chain of jobs, not one per run: every STALE_AFTER / 2 one job recovers
the runs whose executor died and the enqueued runs no job will pick up, so watching costs
the queue O(1) jobs per period whatever the number of runs.

With a backend that runs tasks as they are enqueued (``ImmediateBackend``), the slice that
a slice enqueues is performed by a loop in the outermost call, never by recursion.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import F
from django.tasks import Task, TaskResultStatus, task
from django.tasks.backends.immediate import ImmediateBackend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.utils import timezone

from . import slots
from .actors import local_actor
from .conf import app_settings
from .engine import AT_ONCE, DEFER, INTERRUPT, Engine
from .exceptions import (
    ENQUEUE_FAILED,
    TOO_MANY_RECOVERIES,
    ConcurrentChange,
    EnqueueFailed,
    InvalidRouting,
    InvalidTransition,
    TooManyRecoveries,
    UnknownProcessor,
    error_class_name,
    error_message,
)
from .models import JobChain, Run, RunEvent
from .processor import Processor
from .registry import path_of, registry
from .signals import watchdog_ran
from .status import RECOVER_TARGETS, RunStatus
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
    Inside an executor, the slice is enqueued once the current one has returned, so that an
    in-process backend loops instead of recursing.
    """
    job, run_id, attempt = route(run), run.pk, run.attempt

    def put() -> None:
        slices: _Slices | None = getattr(_local, "slices", None)
        if slices is not None:
            slices.pending.append((job, run_id, attempt))
        else:
            submit(job, run_id, attempt)

    transaction.on_commit(put)


def submit(job: Task[Any, Any], run_id: int, attempt: int) -> bool:
    """Enqueue the slice job now and note its id on the run; return whether the backend took it.

    A backend that refuses the job (a broker down, bad settings) leaves the run ``errored``
    with ``EnqueueFailed`` and the backend's message: nothing would ever perform it.
    """
    try:
        result = job.enqueue(run_id, attempt)
    except Exception as error:
        _fail_enqueue(run_id, attempt, error)
        return False
    Run.objects.filter(pk=run_id, attempt=attempt, status=RunStatus.ENQUEUED).update(job_id=result.id)
    ensure_watchdog()
    return True


def _fail_enqueue(run_id: int, attempt: int, error: Exception) -> None:
    message = f"The tasks backend refused the job: {error_class_name(error)}: {error_message(error)}"
    logger.error("Run %s: %s", run_id, message, exc_info=error)
    run = Run.objects.filter(pk=run_id, attempt=attempt, status=RunStatus.ENQUEUED).first()
    if run is not None:
        failure = EnqueueFailed(message)
        failure.__cause__ = error
        fields = {"error_class": ENQUEUE_FAILED, "error_message": message, "backtrace": "", "error": failure}
        run.move_if_current(
            RunStatus.ERRORED, token=attempt, action="enqueue_failed", actor={"source": "queue"}, **fields
        )


def enqueue_each(runs: list[Run]) -> None:
    """Enqueue a slice of each run (those ``slots`` let in)."""
    for run in runs:
        enqueue(run)


def job_waiting(run: Run) -> bool:
    """Return whether the run's job is still queued or running (so no other one is needed).

    A job that runs claims its run first thing: one still running while the run has stayed
    enqueued for STALE_AFTER died before its claim (db_worker never ends a dead worker's jobs).
    """
    if not run.job_id:
        return False
    backend = perform_run.get_backend()
    if not backend.supports_get_result:
        return False  # it cannot tell: a duplicate job is harmless (the attempt token)
    try:
        status = backend.get_result(run.job_id).status
    except TaskResultDoesNotExist:
        return False
    if status == TaskResultStatus.RUNNING:
        return (timezone.now() - run.updated_at).total_seconds() < app_settings.STALE_AFTER
    return status == TaskResultStatus.READY


def recover(*, actor: dict[str, Any] | None = None, now: Any = None) -> list[Run]:
    """Take over runs nobody works on, and put them back on the queue.

    A running run whose executor has not been heard from for STALE_AFTER gets a new attempt
    token (its old executor, if it wakes up, can no longer commit) and a new slice; a pausing
    run becomes paused and a cancelling one cancelled, since nothing is left to wait for. An
    enqueued run that no job will pick up (its job lost or failed, or the command meant to
    perform it killed before it began) gets a slice. A run recovered more than MAX_RECOVERIES
    times in a row at the same cursor is errored instead: something kills its executor on it.
    Running this again does nothing more.
    """
    actor = actor or local_actor("recovery")
    now = now or timezone.now()
    recovered = []
    for run in Run.objects.stale(now).select_related("task"):
        if _recover(run, RECOVER_TARGETS[RunStatus(run.status)], actor):
            recovered.append(run)
    for run in Run.objects.unclaimed(now).select_related("task"):
        if not job_waiting(run) and _recover(run, RunStatus.ENQUEUED, actor):
            recovered.append(run)
    if recovered:
        enqueue_each(slots.freed())
    return recovered


def _recover(run: Run, target: RunStatus, actor: dict[str, Any]) -> bool:
    old, token, heartbeat_at = run.status, run.attempt, run.heartbeat_at
    recoveries = 1 if run.cursor != run.recovered_cursor else run.recoveries + 1
    fields: dict[str, Any] = {"recoveries": recoveries, "recovered_cursor": run.cursor}
    if target == RunStatus.ENQUEUED and recoveries > app_settings.MAX_RECOVERIES:
        target = RunStatus.ERRORED
        fields.update(
            error_class=TOO_MANY_RECOVERIES,
            error_message=(
                f"Recovered {recoveries - 1} times in a row at the same cursor ({run.cursor or 'the start'}), "
                f"more than MAX_RECOVERIES ({app_settings.MAX_RECOVERIES}): its executor dies on it (a crash, "
                "running out of memory, a kill). Fix the cause, then start a new run."
            ),
            backtrace="",
        )
        fields["error"] = TooManyRecoveries(fields["error_message"])
    elif old == RunStatus.RUNNING:
        fields["attempt"] = F("attempt") + 1
    detail = {"stale_attempt": token, "last_heartbeat": heartbeat_at, "recoveries": recoveries}
    try:
        with transaction.atomic():  # the change and its audit entry commit together, then are announced
            if old == target:  # enqueued: no transition, a conditional update
                rows = Run.objects.filter(pk=run.pk, status=old, attempt=token, updated_at=run.updated_at)
                if not rows.update(updated_at=timezone.now(), **fields):
                    return False
                run.recoveries, run.recovered_cursor = recoveries, run.cursor
            else:
                run.transition_to(target, token=token, action="recover", **fields)
            RunEvent.objects.log(run, "recovered", old, run.status, actor, **detail)
    except (ConcurrentChange, InvalidTransition):
        return False  # it moved on meanwhile: not ours to recover
    if run.status == RunStatus.ERRORED:
        logger.error("Run %s of %s: %s", run.pk, run.task.processor, fields["error_message"])
    if run.status == RunStatus.ENQUEUED:
        enqueue(run)
    return True


@task()
def perform_run(run_id: int, attempt: int) -> str:
    """Perform one slice of the run if it is still enqueued with this attempt token."""
    slices: _Slices | None = getattr(_local, "slices", None)
    if slices is not None:  # called by the loop below, through an in-process backend
        return _perform_slice_safely(run_id, attempt, slices)
    slices = _local.slices = _Slices()
    try:
        with slices.stop:
            status = _perform_slice_safely(run_id, attempt, slices)
            while slices.pending:
                next_job, next_id, next_attempt = slices.pending.popleft()
                if slices.stop() and runs_in_process(next_job):
                    _interrupt(next_id, next_attempt)  # this process is going down: nobody else would go on
                    continue
                submit(next_job, next_id, next_attempt)
    finally:
        _local.slices = None
    return status


def _perform_slice_safely(run_id: int, attempt: int, slices: _Slices) -> str:
    """Perform the slice; an error of this app's own bookkeeping is logged, never raised into the worker.

    The processor's own errors are the run's (the engine records them); what could still
    escape is a write that failed (the database went away): the run is then recovered once
    it is silent for STALE_AFTER, and the worker goes on with other jobs.
    """
    try:
        return _perform_slice(run_id, attempt, slices)
    except Exception:
        logger.exception("Run %s: the slice of attempt %s failed; the watchdog recovers the run.", run_id, attempt)
        # A connection the server dropped: close it, so that the worker's next query opens a new one
        # instead of failing on it (db_worker died of that, after a slice in autocommit mode).
        for db in connections.all(initialized_only=True):
            if db.connection is not None and not db.in_atomic_block and not db.is_usable():
                db.close()
        return "failed"


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
            engine.claim(attempt)
        else:
            with slots.slot_lock():
                if not slots.free_slots(cap):
                    slots.join_line(run, attempt)
                    logger.info("Run %s waits for one of the %s slots (MAX_CONCURRENT_RUNS).", run_id, cap)
                    return "waiting"
                engine.claim(attempt)
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
    if run is not None:
        run.move_if_current(
            RunStatus.INTERRUPTED, token=attempt, action="interrupted", actor={"source": "engine"}, waiting_since=None
        )


# -- the watchdog: one chain of jobs ---------------------------------------------------------------

WATCHDOG = "watchdog"


def watch_period() -> float:
    """Return the seconds between two watchdog jobs: half of STALE_AFTER (at least one second)."""
    return max(1.0, app_settings.STALE_AFTER / 2)


def ensure_watchdog(now: Any = None) -> bool:
    """Start the watchdog's job chain unless it is alive; return whether a job was enqueued."""
    if not can_defer(watchdog):
        return False
    now = now or timezone.now()
    token = JobChain.restart(WATCHDOG, now, grace=app_settings.STALE_AFTER + watch_period())
    if token is None:
        return False
    defer(watchdog, None, token)
    return True


@task()
def watchdog(token: int) -> str:
    """Recover the runs nobody works on, let runs in line into free slots, then enqueue the next watchdog.

    One job of the chain is queued at a time (a duplicate or superseded job finds the token
    moved and does nothing). While no run is active the chain stops; the next enqueued run
    starts it again. A job that fails is logged and the chain goes on. Each job also sends ``watchdog_ran``, on which the scheduler restarts its
    own chain if it died.
    """
    period = timedelta(seconds=watch_period())
    if not JobChain.advance(WATCHDOG, token, timezone.now() + period):
        return "superseded"
    recovered: list[Run] = []
    try:
        recovered = recover(actor={"source": "watchdog"})
        if not recovered:  # recover() let waiting runs in already when it took any over
            enqueue_each(slots.freed())  # in case the slice meant to let them in was lost
        watchdog_ran.send(sender=watchdog)
    except Exception:
        logger.exception("The watchdog failed; the next one runs as planned.")
    if not Run.objects.active().exists():
        JobChain.reschedule(WATCHDOG, token + 1, None)
        return f"recovered {len(recovered)}; no active run: the chain stops"
    run_after = timezone.now() + period
    if JobChain.reschedule(WATCHDOG, token + 1, run_after):
        defer(watchdog, run_after, token + 1)
    return f"recovered {len(recovered)}"
