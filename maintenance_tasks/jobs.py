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

from django.tasks import Task, task
from django.tasks.backends.immediate import ImmediateBackend
from django.tasks.exceptions import InvalidTask
from django.utils import timezone

from .conf import app_settings
from .exceptions import ConcurrentChange, InvalidRouting, InvalidTransition, UnknownProcessor
from .models import Run, record
from .processor import Processor
from .status import EXECUTING_STATUSES, RunStatus

logger = logging.getLogger(__name__)

S = RunStatus
_local = threading.local()


class StopOnSignal:
    """While a slice runs in the main thread, turn SIGTERM/SIGINT into "stop after this batch".

    The handler the worker had installed is still called, so the worker too knows it is to
    shut down once the slice returns (db_worker then exits without taking another job). A
    second signal goes to that handler alone or, if there was none, acts as it would have.

    SIGRTMIN is what RQ's ``HerokuWorker`` sends its work horse on SIGTERM: it too stops the
    slice after its batch, and is not passed on (that handler would raise into the batch).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGRTMIN)

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
        if signum == signal.SIGRTMIN:
            logger.warning("SIGRTMIN (RQ worker shutting down): the current slice stops after its batch.")
            return
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
        self.pending: deque[tuple[Task[Any, Any], int, int]] = deque()
        self.stop = StopOnSignal()


def slice_task(processor: type[Processor] | None) -> Task[Any, Any]:
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
            f"{processor.__module__}.{processor.__qualname__} routes its runs to queue {processor.queue_name!r} "
            f"with priority {processor.priority!r}, which the tasks backend {backend.alias!r} refuses: {error} "
            f"(declared queues: {declared})"
        ) from None


def route(run: Run) -> Task[Any, Any]:
    """Return the slice task for the run's processor (the default one if it is gone).

    A run waiting to retry after an error gets a slice deferred to its ``retry_at``.
    """
    from .registry import registry

    try:
        task_ = slice_task(registry.get(run.task.processor))
    except UnknownProcessor:
        task_ = perform_run  # the slice errors the run, naming the missing processor
    if run.retry_at is not None and run.retry_at > timezone.now() and task_.get_backend().supports_defer:
        task_ = task_.using(run_after=run.retry_at)
    return task_


def runs_in_process(task_: Any) -> bool:
    """Return whether the task's backend performs a job inside ``enqueue()``."""
    return isinstance(task_.get_backend(), ImmediateBackend)


def submit(task_: Task[Any, Any], run_id: int, attempt: int) -> None:
    """Enqueue a slice of the run for the given attempt token.

    Inside an executor, the slice is enqueued once the current one has returned, so that
    an in-process backend loops instead of recursing.
    """
    slices: _Slices | None = getattr(_local, "slices", None)
    if slices is not None:
        slices.pending.append((task_, run_id, attempt))
        return
    task_.enqueue(run_id, attempt)


def hand_over(task_: Task[Any, Any], run_id: int, attempt: int) -> None:
    """Enqueue a slice of the run and, outside an executor, a watchdog in case its job is lost."""
    outside = getattr(_local, "slices", None) is None
    submit(task_, run_id, attempt)
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
                next_task, next_id, next_attempt = slices.pending.popleft()
                if slices.stop() and runs_in_process(next_task):
                    _interrupt(next_id, next_attempt)  # this process is going down: nobody else would go on
                    continue
                next_task.enqueue(next_id, next_attempt)
    finally:
        _local.slices = None
    return status


def _perform_slice(run_id: int, attempt: int, slices: _Slices) -> str:
    from . import slots
    from .engine import AT_ONCE, DEFER, INTERRUPT, Engine
    from .runner import Runner

    run = Run.objects.select_related("task").filter(pk=run_id).first()
    if run is None or run.status != S.ENQUEUED or run.attempt != attempt:
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
            with slots.turn():
                if not slots.free_slots(cap):
                    slots.wait(run, attempt)
                    logger.info("Run %s waits for one of the %s slots (MAX_CONCURRENT_RUNS).", run_id, cap)
                    return "waiting"
                _claim(engine, attempt)
    except (ConcurrentChange, InvalidTransition):
        logger.info("Run %s was claimed by another job; nothing to do.", run_id)
        run.refresh_from_db(fields=["status"])
        return run.status
    engine.work()
    if run.status == S.INTERRUPTED and engine.stop_reason == INTERRUPT and not runs_in_process(perform_run):
        Runner.requeue(run)  # this worker is shutting down: another one goes on
        slots.release()
    else:
        slots.hand_back(run)  # the next slice, and runs waiting for a slot
    return run.status


def _interrupt(run_id: int, attempt: int) -> None:
    """Leave an enqueued run interrupted (resumable, visible) when no slice of it will come."""
    run = Run.objects.filter(pk=run_id, status=S.ENQUEUED, attempt=attempt).first()
    if run is None:
        return
    try:
        run.transition_to(S.INTERRUPTED, token=attempt, waiting_since=None)
    except (ConcurrentChange, InvalidTransition):
        return  # it moved on meanwhile
    record(run, "interrupted", S.ENQUEUED, S.INTERRUPTED, {"source": "engine"}, attempt=attempt)


def _claim(engine: Any, attempt: int) -> None:
    # The claim moves the token to attempt + 1: watch over that attempt from now on.
    schedule_watchdog(engine.run.pk, attempt + 1, app_settings.STALE_AFTER + 1)
    engine.claim(attempt)


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
    the next slice), or waits for a slot under MAX_CONCURRENT_RUNS: it is enqueued once
    more, and watched again. A duplicate job finds the token gone and does nothing, so this
    costs at most one extra job per slice.
    """
    from .runner import Runner

    Runner.recover(actor={"source": "watchdog"})
    ensure_scheduler()
    run = Run.objects.select_related("task").filter(pk=run_id).first()
    if run is None or run.attempt != attempt or run.status not in {*EXECUTING_STATUSES, S.ENQUEUED}:
        return "done"
    stale_after = app_settings.STALE_AFTER
    now = timezone.now()
    if run.status == S.ENQUEUED:
        since = max(run.updated_at, run.retry_at or run.updated_at)  # a retry is not due before retry_at
        waited = (now - since).total_seconds()
        if waited < stale_after:
            schedule_watchdog(run_id, attempt, stale_after - waited + 1)
            return "watching"
        logger.info("Run %s has waited %.0fs for its slice; enqueuing it once more.", run_id, waited)
        submit(route(run), run_id, attempt)
        schedule_watchdog(run_id, attempt, stale_after + 1)  # that slice may wait for a slot too
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
