"""The batch loop: walk a run's batches after its cursor, checkpointing as it goes.

With ``atomic = True`` batches commit in groups sized by ``batch_time`` (see ``batching``),
each group with the checkpoint that records it, so a batch's effects are applied exactly once.
With ``atomic = False`` items commit on their own and the cursor is saved at most every
CHECKPOINT_INTERVAL (at-least-once). Every write is guarded by the run's attempt token: once
another executor has taken the run over, this one's checkpoint is refused and its group rolled back.

``Engine`` (engine.py) claims the run, sets up what the loop uses (heartbeat, dry run, throttle),
retries after errors and leaves the run where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from .batching import Pacer
from .checkpoints import take_over
from .counting import count_total
from .csvfiles import csv_opener
from .databases import batch_database
from .dryrun import DryRun
from .exceptions import InvalidProcessor, StaleAttempt
from .heartbeat import GuardedWriter
from .models import Run
from .processor import Processor
from .skipping import Skipping
from .sources import Batch, NoCollection, open_source
from .status import EXECUTING_STATUSES, RunStatus
from .throttling import STOPPED, Throttle

#: Why the loop stopped before the end (besides a pause or cancel request: its status).
INTERRUPT = "interrupt"
SLICE = "slice"
#: Seconds between looks for a stop while a run sleeps after a commit (``sleep_ratio``).
REST_LOOK = 0.1


class BatchLoop:
    """The batches of one run, walked and checkpointed by the attempt ``token`` holds (``Engine`` sets it up)."""

    run: Run
    processor: Processor | None
    writer: GuardedWriter
    should_stop: Callable[[], bool]
    on_progress: Callable[[Run], None]
    stop_reason: str | None  # INTERRUPT, SLICE, or the status of a request (pausing/cancelling)
    checkpoint_interval: float
    slice_end: float | None
    dry_run: DryRun
    throttle: Throttle
    skips: Skipping
    done_count: int
    last_done: tuple[Batch, int] | None
    clock: float
    last_write: float
    next_checkpoint: float

    @property
    def token(self) -> int:
        """The attempt token this engine holds the run with (0 until it claims it)."""
        return self.writer.token

    def _walk(self) -> None:
        """Process the batches after the run's cursor, checkpointing as it goes, until the end or a stop."""
        run = self.run
        processor = self.processor = run.task.build_processor()
        self.dry_run.check(processor)
        source = open_source(processor, csv_opener(run))
        alias = batch_database(processor, source)
        held = take_over(run, alias, self.token) if processor.atomic else None  # None: on the runs' database
        if held is not None and held.ahead:  # a batch committed there that the run does not show yet
            self._checkpoint(*held.ahead)
        if run.tick_total is None and run.cursor is None:  # the first slice (a total counted once)
            run.tick_total = count_total(processor, source, run.pk, alias)
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
        self.skips = Skipping(run, processor, whole=whole, using=alias)
        pacer = Pacer(processor, source, run, run.read_tuning, self.checkpoint_interval)
        batches = source.batches(run.cursor, whole=whole)
        # Atomic: one transaction per group of batches (one batch without batch_time), see ``batching``.
        for group in pacer.groups(batches, self.slice_end) if processor.atomic else ():
            with transaction.atomic(using=alias):
                for batch in group:
                    try:  # a dry run's batch is rolled back; the checkpoint is not
                        with self.skips.savepoint(), self.dry_run.batch(alias):
                            if whole:
                                handle(batch.items)
                            else:
                                for item in batch.items:
                                    handle(item)
                    except Exception as error:  # an error in skip_on: replayed item by item, the bad ones recorded
                        self.skips.replay(error, batch, handle, lambda: self.dry_run.batch(alias))
                end, sizes = (group.end_cursor, run.tick_count + group.size), pacer.commit_fields()
                if held:
                    held.commit(*end)
                else:
                    self._checkpoint(*end, **sizes)
            if held:
                self._checkpoint(*end, **sizes)  # the run mirrors the group committed on the other database
            self._check_stop()
            if self._rests(pacer) or self._stops_after_throttling(processor):
                break
            pacer.committed()
        for batch in () if processor.atomic else batches:
            if whole:
                self.skips.guard(batch, handle)(batch.items)
                self._done(batch, batch.size - 1, batch.size)
            else:
                self._handle_each(batch, self.skips.guard(batch, handle))
            if self._rests(pacer) or self._stops_after_throttling(processor):
                break
            pacer.committed()
        if held and not self.stop_reason:  # all walked: the run has mirrored the last batch
            held.forget()
        self._settle()

    def _rests(self, pacer: Pacer) -> bool:
        """Sleep as ``sleep_ratio`` asks after a commit, answering stops and requests; return whether the run stops."""
        end = time.monotonic() + pacer.rest()
        while not self.stop_reason and (now := time.monotonic()) < end:
            time.sleep(min(end - now, REST_LOOK))
            self._check_stop()
            if time.monotonic() - self.last_write >= self.checkpoint_interval:
                self._write()  # a heartbeat, and a look for pause/cancel requests
        return bool(self.stop_reason)

    def _stops_after_throttling(self, processor: Processor) -> bool:
        """Wait while a throttle condition holds (see ``throttling``); return whether the run stops here."""
        if self.stop_reason is None and (waited := self.throttle.wait(processor)):
            self.stop_reason = INTERRUPT if waited == STOPPED else SLICE
        return bool(self.stop_reason)

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
        output = self.processor.output_changes(run) if self.processor else {}  # lines logged, status set
        fields.update(
            cursor=cursor, tick_count=tick_count, time_running=time_running, **self.dry_run.fields(), **output
        )
        self._write(**fields)
        for name, value in fields.items():
            setattr(run, name, value)
        self.done_count = tick_count
        self.next_checkpoint = self.clock + self.checkpoint_interval
        self.on_progress(run)
