"""Perform one run: claim it, walk its batches (``loop.BatchLoop``), retry after errors, and leave it
where it stopped (succeeded, errored, paused, cancelled, interrupted, or enqueued for its next slice).

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

from .conf import app_settings
from .dryrun import DryRun
from .exceptions import ConcurrentChange, StaleAttempt
from .failures import errored_fields, retry_detail
from .heartbeat import GuardedWriter, Heartbeat
from .loop import INTERRUPT, SLICE, BatchLoop
from .models import Run, RunEvent
from .outage import lost_connection
from .processor import Processor
from .sources import Batch
from .status import EXECUTING_STATUSES, RunStatus
from .throttling import Throttle

logger = logging.getLogger(__name__)

RETRY = "retry"
#: How the engine retries after an error in the processor's ``retry_on``: wait here (foreground),
#: or hand the run back to go on in a slice after the delay, or at once (a backend without defer).
SLEEP, DEFER, AT_ONCE = "sleep", "defer", "at_once"


class Engine(BatchLoop):
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
        self.throttle = Throttle(
            run, write=self._write, should_stop=self.should_stop, on_progress=self.on_progress, slice_end=self.slice_end
        )
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
            self._finish(RunStatus.ENQUEUED, **self.throttle.handback())
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

    def _finish(self, status: RunStatus, *, event: tuple[str, dict[str, Any]] | None = None, **fields: Any) -> None:
        """Move the run to where this attempt leaves it, with its last cursor.

        ``event`` names the audit entry (and its detail) when the run goes to ``status`` itself.
        """
        run = self.run
        run.time_running += self._elapsed()
        fields.update(
            cursor=run.cursor, tick_count=run.tick_count, time_running=run.time_running, heartbeat_at=timezone.now()
        )
        fields.update(self.processor.output_changes(run) if self.processor else {})
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
