"""The batch loop: perform one run, batch after batch, checkpointing its cursor.

With ``atomic = True`` batches and the checkpoint that records them commit together (several
fast batches in one transaction of about ``batch_time``: see ``batching``), so a batch's
effects are applied exactly once. With ``atomic = False`` items commit on
their own and the cursor is saved at most every CHECKPOINT_INTERVAL (at-least-once).

Every write is guarded by the run's attempt token: once another executor has taken the
run over, this one's checkpoint is refused and its batch rolled back.

A background executor performs a run in slices: with ``slice_seconds`` the engine stops
after the batch that crosses that limit and hands the run back as ``enqueued``, cursor
saved, for the next slice. While it works, a heartbeat thread keeps ``heartbeat_at`` fresh
even when one item takes longer than STALE_AFTER.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import F
from django.utils import timezone

from .batching import Pacer
from .conf import app_settings
from .counting import count_total
from .csvfiles import csv_opener
from .dryrun import DryRun
from .exceptions import ConcurrentChange, InvalidProcessor, StaleAttempt
from .failures import errored_fields, retry_detail
from .heartbeat import GuardedWriter, Heartbeat
from .models import Run, RunEvent
from .outage import lost_connection
from .processor import Processor
from .sources import Batch, NoCollection, open_source
from .status import EXECUTING_STATUSES, RunStatus

logger = logging.getLogger(__name__)

INTERRUPT = "interrupt"
SLICE = "slice"
RETRY = "retry"
#: How the engine retries after an error in the processor's ``retry_on``: wait here (foreground),
#: or hand the run back to go on in a slice after the delay, or at once (a backend without defer).
SLEEP, DEFER, AT_ONCE = "sleep", "defer", "at_once"


class Engine:
    """Perform one run in this process until it ends, is paused or cancelled, or is told to stop.

    With ``slice_seconds``, stop after the batch that crosses that many seconds and leave
    the run ``enqueued`` for the next slice (``stop_reason`` is then SLICE).
    """

    def __init__(
        self,
        run: Run,
        *,
        on_progress: Callable[[Run], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        slice_seconds: float | None = None,
        retry: str = SLEEP,
    ) -> None:
        self.run = run
        self.on_progress = on_progress or (lambda run: None)
        self.should_stop = should_stop or (lambda: False)
        self.slice_seconds = slice_seconds
        self.retry = retry
        self.processor: Processor | None = None
        self.error: BaseException | None = None  # the processor's error that left the run errored
        self.writer = GuardedWriter(run.pk)
        # INTERRUPT, SLICE, or the status of a request (pausing/cancelling)
        self.stop_reason: str | None = None
        self.checkpoint_interval = app_settings.CHECKPOINT_INTERVAL
        self.last_write = time.monotonic()

    @property
    def token(self) -> int:
        """The attempt token this engine holds the run with (0 until it claims it)."""
        return self.writer.token

    # -- life cycle -----------------------------------------------------------------------

    def perform(self, *, claim: int | None = None) -> Run:
        """Claim the enqueued run and work on it; return the run as it was left.

        With ``claim``, the run is claimed only if its attempt token is still ``claim``
        (the token its job was enqueued with); otherwise ConcurrentChange is raised and
        nothing is done.
        """
        self.claim(claim)
        return self.execute()

    def claim(self, token: int | None = None) -> None:
        """Move the enqueued run to running under a new attempt token (see ``perform``)."""
        run = self.run
        now = timezone.now()
        with transaction.atomic():  # the change and its audit entry commit together, then are announced
            run.transition_to(
                RunStatus.RUNNING,
                token=token,
                attempt=F("attempt") + 1,
                started_at=run.started_at or now,
                heartbeat_at=now,
                waiting_since=None,
                retry_at=None,
                action="start",
            )
            self.writer.token = run.attempt
            RunEvent.objects.log(
                run, "started", RunStatus.ENQUEUED, RunStatus.RUNNING, {"source": "engine"}, attempt=run.attempt
            )

    def execute(self) -> Run:
        """Work on the claimed run until it ends, stops or its slice is over; return it."""
        run = self.run
        self.done_count = run.tick_count
        self.last_done: tuple[Batch, int] | None = None
        self.clock = self.last_write = time.monotonic()
        self.next_checkpoint = self.clock + self.checkpoint_interval
        self.slice_end = None if self.slice_seconds is None else self.clock + self.slice_seconds
        self.dry_run = DryRun.of(run)
        beat = max(0.05, app_settings.STALE_AFTER / 4)
        heartbeat = Heartbeat(run.pk, lambda: self.writer.token, lambda: self.last_write, beat)
        heartbeat.start()
        try:
            return self._walk_with_retries()
        finally:
            heartbeat.stop()

    def _walk_with_retries(self) -> Run:
        """Walk the batches, retrying after the errors the processor allows; leave the run where it stopped."""
        run = self.run
        while True:
            before = connections[router.db_for_write(Run)].connection
            try:
                self._walk()
            except StaleAttempt:
                logger.warning("Run %s was taken over by another executor; attempt %s stops.", run.pk, self.token)
                run.refresh_from_db()
                return run
            except Exception as error:
                retryable = self.processor is not None and isinstance(error, self.processor.retry_on)
                if not retryable and lost_connection(error, before):
                    raise  # the caller reconnects (foreground), or the watchdog recovers the silent run
                self._settle()
                if self._retry(error):
                    if self.stop_reason is None:
                        continue  # waited here (foreground): go on from the cursor
                    if self.stop_reason == RETRY:
                        return run  # handed back for a later slice
                    break
                self._fail(error)
                return run
            except BaseException as error:
                # SystemExit, KeyboardInterrupt (a second Ctrl-C) and the like: recorded, then on their way.
                self._settle()
                if isinstance(error, KeyboardInterrupt):
                    self._finish(RunStatus.INTERRUPTED)
                else:
                    self._fail(error)
                raise
            break
        if self.stop_reason is None:
            self._finish(RunStatus.SUCCEEDED)
        elif self.stop_reason == INTERRUPT:
            self._finish(RunStatus.INTERRUPTED)
        elif self.stop_reason == SLICE:
            self._finish(RunStatus.ENQUEUED)
        else:
            self._finish(RunStatus.PAUSED if self.stop_reason == RunStatus.PAUSING else RunStatus.CANCELLED)
        return run

    def _fail(self, error: BaseException) -> None:
        """Leave the run errored, with the error made storable, and log it with its traceback and context."""
        self.error = error
        self._finish(RunStatus.ERRORED, error=error, **errored_fields(self.run, error))

    def _retry(self, error: Exception) -> bool:
        """Retry after an error the processor declares in ``retry_on``, while retries are left.

        In the background (``retry`` DEFER or AT_ONCE) the run is handed back as enqueued,
        to go on from its cursor in a later slice; in the foreground (SLEEP) this executor
        waits out the delay, still holding the run, and goes on. Each retry is in the audit trail.
        """
        run, processor = self.run, self.processor
        if processor is None or not isinstance(error, processor.retry_on) or run.retries >= processor.max_retries:
            return False
        delay = 0.0 if self.retry == AT_ONCE else processor.retry_delay(run.retries)
        run.retries += 1
        detail = retry_detail(run, error, attempt=self.token, max_retries=processor.max_retries, delay=delay)
        if self.retry != SLEEP:
            self.stop_reason = RETRY
            retry_at = timezone.now() + timedelta(seconds=delay) if self.retry == DEFER else None
            self._finish(RunStatus.ENQUEUED, retries=run.retries, retry_at=retry_at, event=("retry", detail))
            return True
        self._write(retries=run.retries)
        RunEvent.objects.log(run, "retry", run.status, run.status, {"source": "engine"}, **detail)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and self.stop_reason is None:
            time.sleep(min(self.checkpoint_interval, max(0.0, deadline - time.monotonic())))
            if self.should_stop():
                self.stop_reason = INTERRUPT
            else:
                self._write()  # a heartbeat, and a look for pause/cancel requests
        return True

    def _walk(self) -> None:
        """Process the batches after the run's cursor, checkpointing as it goes, until the end or a stop."""
        run = self.run
        processor = self.processor = run.task.build_processor()
        self.dry_run.check(processor)
        source = open_source(processor, csv_opener(run))
        if run.tick_total is None and run.cursor is None:  # the first slice (a total counted once)
            run.tick_total = count_total(processor, source, run.pk)
            self._write(tick_total=run.tick_total)
        whole = processor.defines_batch()
        if isinstance(source, NoCollection):
            if processor.takes_an_item():
                raise InvalidProcessor(
                    "collection() returned None, so process() is called with no item, but it takes one."
                )
            handle: Callable[[Any], None] = lambda item: processor.process()  # noqa: E731
        else:
            handle = processor.process_batch if whole else processor.process
        pacer = Pacer(processor, source, run, run.read_tuning, self.checkpoint_interval)
        batches = source.batches(run.cursor, whole=whole)
        # Atomic: one transaction per group of batches (one batch without batch_time), see ``batching``.
        for group in pacer.groups(batches, self.slice_end) if processor.atomic else ():
            with transaction.atomic():
                for batch in group:
                    with self.dry_run.batch():  # a dry run's batch is rolled back; the checkpoint is not
                        if whole:
                            handle(batch.items)
                        else:
                            for item in batch.items:
                                handle(item)
                self._checkpoint(group.end_cursor, run.tick_count + group.size, **pacer.commit_fields())
            self._check_stop()
            if self.stop_reason:
                break
            pacer.committed()
        for batch in () if processor.atomic else batches:
            if whole:
                handle(batch.items)
                self._done(batch, batch.size - 1, batch.size)
            else:
                self._handle_each(batch, handle)
            if self.stop_reason:
                break
            pacer.committed()
        self._settle()

    def _done(self, batch: Batch, index: int, items: int) -> None:
        """Note items done in autocommit mode; checkpoint once per CHECKPOINT_INTERVAL, or to stop."""
        self.done_count += items
        self.last_done = (batch, index)
        self._check_stop()
        if self.stop_reason or time.monotonic() >= self.next_checkpoint:
            self._checkpoint(batch.cursor_at(index), self.done_count)
            self.last_done = None

    def _handle_each(self, batch: Batch, handle: Callable[[Any], None]) -> None:
        """Autocommit: handle the batch's items one by one; checkpoint once per CHECKPOINT_INTERVAL, or to stop.

        The same as calling ``_done(batch, index, 1)`` after each item, with only a flag and
        the clock looked at per item: this loop is the engine's own cost per item.
        """
        should_stop, monotonic, start = self.should_stop, time.monotonic, self.done_count
        slice_end = float("inf") if self.slice_end is None else self.slice_end
        due = min(self.next_checkpoint, slice_end)
        done = checkpointed = 0  # items of this batch handled, and recorded by a checkpoint
        try:
            for item in batch.items:
                handle(item)
                done += 1
                if should_stop():
                    self.stop_reason = INTERRUPT
                elif (now := monotonic()) < due:
                    continue
                elif now >= slice_end:
                    self.stop_reason = SLICE
                self._checkpoint(batch.cursor_at(done - 1), start + done)
                checkpointed, due = done, min(self.next_checkpoint, slice_end)
                if self.stop_reason:
                    return
        finally:
            # The position after the last item done, for _settle() if the run stops here.
            if done > checkpointed:
                self.done_count, self.last_done = start + done, (batch, done - 1)
            elif checkpointed:
                self.last_done = None

    def _check_stop(self) -> None:
        """Stop after this batch or item if told to, or if the slice is over."""
        if self.stop_reason:
            return
        if self.should_stop():
            self.stop_reason = INTERRUPT
        elif self.slice_end is not None and time.monotonic() >= self.slice_end:
            self.stop_reason = SLICE

    def _settle(self) -> None:
        """Take the position after the last item done in autocommit mode as the run's own."""
        if self.last_done is not None:
            batch, index = self.last_done
            self.run.cursor, self.run.tick_count = batch.cursor_at(index), self.done_count
            self.last_done = None

    # -- writes guarded by the attempt token -----------------------------------------------

    def _elapsed(self) -> float:
        now = time.monotonic()
        elapsed, self.clock = now - self.clock, now
        return elapsed

    def _write(self, **fields: Any) -> None:
        """Write progress fields if this attempt still holds the run; note pause/cancel requests."""
        run = self.run
        fields["heartbeat_at"] = fields["updated_at"] = timezone.now()
        if self.writer.update_if_running(fields):
            self.last_write = time.monotonic()
            return
        status, attempt = Run.objects.filter(pk=run.pk).values_list("status", "attempt").get()
        if attempt != self.token or status not in EXECUTING_STATUSES:
            raise StaleAttempt(f"Run {run.pk}: attempt {self.token} is no longer current.")
        Run.objects.filter(pk=run.pk, attempt=self.token).update(**fields)
        self.last_write = time.monotonic()
        run.status = status
        if self.stop_reason != RunStatus.CANCELLING:
            self.stop_reason = status

    def _checkpoint(self, cursor: str, tick_count: int, **fields: Any) -> None:
        run = self.run
        time_running = run.time_running + self._elapsed()
        fields.update(cursor=cursor, tick_count=tick_count, time_running=time_running, **self.dry_run.fields())
        self._write(**fields)
        for name, value in fields.items():
            setattr(run, name, value)
        self.done_count = tick_count
        self.next_checkpoint = self.clock + self.checkpoint_interval
        self.on_progress(run)

    def _finish(self, status: RunStatus, *, event: tuple[str, dict[str, Any]] | None = None, **fields: Any) -> None:
        """Move the run to where this attempt leaves it, with its last cursor.

        ``event`` names the audit entry (and its detail) when the run goes to ``status`` itself.
        """
        run = self.run
        run.time_running += self._elapsed()
        fields.update(
            cursor=run.cursor, tick_count=run.tick_count, time_running=run.time_running, heartbeat_at=timezone.now()
        )
        for _ in range(5):
            current, attempt = Run.objects.filter(pk=run.pk).values_list("status", "attempt").get()
            if attempt != self.token or current not in EXECUTING_STATUSES:
                logger.warning("Run %s was taken over; attempt %s leaves it as it is.", run.pk, self.token)
                return
            target = status
            if status in (RunStatus.INTERRUPTED, RunStatus.ENQUEUED, RunStatus.PAUSED, RunStatus.CANCELLED):
                # A request made meanwhile wins over why this executor stopped.
                target = {RunStatus.PAUSING: RunStatus.PAUSED, RunStatus.CANCELLING: RunStatus.CANCELLED}.get(
                    current, status
                )
            run.status = current
            action, detail = "slice_ended" if target == RunStatus.ENQUEUED else target, {"attempt": self.token}
            if event is not None and target == status:
                action, detail = event
            try:
                with transaction.atomic():  # the change and its audit entry commit together, then are announced
                    run.transition_to(target, token=self.token, **fields)
                    RunEvent.objects.log(run, action, current, target, {"source": "engine"}, **detail)
            except ConcurrentChange:
                continue
            self.on_progress(run)
            return
