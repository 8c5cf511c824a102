"""The ``django.tasks`` entry points: perform one slice of a run, and watch over runs.

A job carries only ids: the run's id and the attempt token the run had when the job was
enqueued. All state stays in ``Run``, so any ``django.tasks`` backend works, a duplicate
job finds the token gone and does nothing, and a lost job is made up for by the watchdog.

With a backend that runs tasks as they are enqueued (``ImmediateBackend``), the slice that
a slice enqueues is performed by a loop in the outermost call, never by recursion.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import deque
from datetime import timedelta
from typing import Any

from django.tasks import task
from django.tasks.backends.immediate import ImmediateBackend
from django.utils import timezone

from .conf import app_settings
from .exceptions import ConcurrentChange, InvalidTransition
from .models import Run
from .status import EXECUTING_STATUSES, RunStatus

logger = logging.getLogger(__name__)

S = RunStatus
_local = threading.local()


class StopOnSignal:
    """While a slice runs in the main thread, turn SIGTERM/SIGINT into "stop after this batch".

    The handler the worker had installed is still called, so the worker too knows it is to
    shut down once the slice returns (db_worker then exits without taking another job). A
    second signal goes to that handler alone or, if there was none, acts as it would have.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()

    def handle(self, signum: int, frame: Any) -> None:
        first, self.requested = not self.requested, True
        previous = self.previous.get(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)
        elif first:
            logger.warning("%s: the current slice stops after its batch.", signal.Signals(signum).name)
        else:
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def __call__(self) -> bool:
        return self.requested


class _Slices:
    """What the outermost executor call of this thread shares with the calls it makes."""

    def __init__(self) -> None:
        self.pending: deque[tuple[int, int]] = deque()
        self.stop = StopOnSignal()


def runs_in_process(task_: Any) -> bool:
    """Return whether the task's backend performs a job inside ``enqueue()``."""
    return isinstance(task_.get_backend(), ImmediateBackend)


def submit(run_id: int, attempt: int) -> None:
    """Enqueue a slice of the run for the given attempt token.

    Inside an executor, the slice is enqueued once the current one has returned, so that
    an in-process backend loops instead of recursing.
    """
    slices: _Slices | None = getattr(_local, "slices", None)
    if slices is not None:
        slices.pending.append((run_id, attempt))
        return
    perform_run.enqueue(run_id, attempt)


def hand_over(run_id: int, attempt: int) -> None:
    """Enqueue a slice of the run and, outside an executor, a watchdog in case its job is lost."""
    outside = getattr(_local, "slices", None) is None
    submit(run_id, attempt)
    if outside:
        schedule_watchdog(run_id, attempt, app_settings.STALE_AFTER + 1)


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
                next_id, next_attempt = slices.pending.popleft()
                if slices.stop() and runs_in_process(perform_run):
                    continue  # this process is going down: the run waits, interrupted
                perform_run.enqueue(next_id, next_attempt)
    finally:
        _local.slices = None
    return status


def _perform_slice(run_id: int, attempt: int, slices: _Slices) -> str:
    from .engine import INTERRUPT, Engine
    from .runner import Runner

    run = Run.objects.select_related("task").filter(pk=run_id).first()
    if run is None or run.status != S.ENQUEUED or run.attempt != attempt:
        logger.info("Run %s is not enqueued with attempt %s any more; nothing to do.", run_id, attempt)
        return run.status if run else "missing"
    engine = Engine(run, should_stop=slices.stop, slice_seconds=app_settings.SLICE_SECONDS)
    # The claim below moves the token to attempt + 1: watch over that attempt.
    schedule_watchdog(run_id, attempt + 1, app_settings.STALE_AFTER + 1)
    try:
        engine.perform(claim=attempt)
    except (ConcurrentChange, InvalidTransition):
        logger.info("Run %s was claimed by another job; nothing to do.", run_id)
        run.refresh_from_db(fields=["status"])
        return run.status
    if run.status == S.ENQUEUED:
        Runner.enqueue(run)  # the next slice
    elif run.status == S.INTERRUPTED and engine.stop_reason == INTERRUPT and not runs_in_process(perform_run):
        Runner.requeue(run)  # this worker is shutting down: another one goes on
    return run.status


def schedule_watchdog(run_id: int, attempt: int, delay: float) -> None:
    """Enqueue a watchdog for the run's attempt, ``delay`` seconds from now, if the backend can."""
    if not watchdog.get_backend().supports_defer or runs_in_process(watchdog):
        return
    run_after = timezone.now() + timedelta(seconds=delay)
    watchdog.using(run_after=run_after).enqueue(run_id, attempt)


@task()
def watchdog(run_id: int, attempt: int) -> str:
    """Recover runs whose executor died; keep watching this run while this attempt lasts.

    Each slice enqueues one for its attempt, so while runs are active a watchdog is due
    within about STALE_AFTER, with no cron job. A run still enqueued with this attempt after
    STALE_AFTER may have lost its job (its worker died between handing it back and enqueuing
    the next slice): it is enqueued once more, and the watchdog stops. A duplicate job finds
    the token gone and does nothing, so this costs at most one extra job per slice.
    """
    from .runner import Runner

    Runner.recover(actor={"source": "watchdog"})
    ensure_scheduler()
    run = Run.objects.filter(pk=run_id).only("status", "attempt", "heartbeat_at", "updated_at").first()
    if run is None or run.attempt != attempt or run.status not in {*EXECUTING_STATUSES, S.ENQUEUED}:
        return "done"
    stale_after = app_settings.STALE_AFTER
    now = timezone.now()
    if run.status == S.ENQUEUED:
        waited = (now - run.updated_at).total_seconds()
        if waited < stale_after:
            schedule_watchdog(run_id, attempt, stale_after - waited + 1)
            return "watching"
        logger.info("Run %s has waited %.0fs for its slice; enqueuing it once more.", run_id, waited)
        submit(run_id, attempt)
        return "enqueued again"
    since = (now - run.heartbeat_at).total_seconds() if run.heartbeat_at else stale_after
    schedule_watchdog(run_id, attempt, max(1.0, stale_after - since + 1))
    return "watching"


# -- the scheduler, with no extra process ------------------------------------------------------


def _can_chain(task_: Any) -> bool:
    return task_.get_backend().supports_defer and not runs_in_process(task_)


def ensure_scheduler(now: Any = None) -> bool:
    """Start the scheduler's job chain unless it is alive; return whether a job was enqueued.

    The chain is alive while its next tick is due within SCHEDULER_INTERVAL + STALE_AFTER. A
    new chain takes a new token, so at most one chain goes on: an older job finds the token
    moved and stops. Called on ``migrate``, by the deploy hook, when a schedule is saved in
    the admin and by the watchdog.
    """
    if not _can_chain(scheduler_tick):
        return False
    from .models import SchedulerState

    now = now or timezone.now()
    state = SchedulerState.get()
    grace = timedelta(seconds=app_settings.SCHEDULER_INTERVAL + app_settings.STALE_AFTER)
    if state.next_tick_at is not None and state.next_tick_at + grace > now:
        return False
    token = state.token + 1
    if not SchedulerState.objects.filter(pk=state.pk, token=state.token).update(token=token, next_tick_at=now):
        return False  # another process started it just now
    scheduler_tick.enqueue(token)
    return True


@task()
def scheduler_tick(token: int) -> str:
    """Run one scheduler tick, then enqueue the next one at the next due time (at most SCHEDULER_INTERVAL).

    Each tick moves the token on before it works, so a duplicate or superseded job does
    nothing and enqueues nothing: one job of the chain is queued at any time.
    """
    from .models import SchedulerState
    from .scheduling import next_due, tick

    interval = timedelta(seconds=app_settings.SCHEDULER_INTERVAL)
    now = timezone.now()
    if not SchedulerState.objects.filter(pk=1, token=token).update(token=token + 1, next_tick_at=now + interval):
        return "superseded"
    result = tick()
    if not _can_chain(scheduler_tick):
        return "done"
    now = timezone.now()
    run_after = now + interval
    due = next_due()
    if due is not None:
        run_after = max(now + timedelta(seconds=1), min(run_after, due))
    if not SchedulerState.objects.filter(pk=1, token=token + 1).update(next_tick_at=run_after):
        return "superseded"
    scheduler_tick.using(run_after=run_after).enqueue(token + 1)
    return f"started {len(result.started)}, skipped {len(result.skipped)}, stuck {len(result.stuck)}"
