"""Throttling: between batches, the engine asks the run's conditions whether it must wait.

The conditions are the processor's ``throttle_on`` and the THROTTLE_ON setting (see
throttles.py), looked at after a batch has committed, at most every THROTTLE_CHECK_INTERVAL.
While one returns a reason, the run waits, still holding its cursor, and looks again after a
backoff that doubles from THROTTLE_CHECK_INTERVAL up to the processor's ``throttle_backoff_max``.
Each throttled period is one pair of audit entries (``throttled`` with the reason,
``throttle_ended`` with the seconds), and ``Run.throttled_seconds`` adds the periods up.

A ``Critical`` reason does not wait: the engine asks the run to pause, the reason in the audit
trail, and stops after this batch; an operator (or ``Runner.resume``) starts it again.

A foreground run waits in place. A background slice waits until its end, then hands the run
back as enqueued with its next slice deferred (``retry_at``) by the backoff: a throttled run
does not hold a worker for longer than a slice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.utils import timezone

from .conf import app_settings
from .exceptions import ConcurrentChange, InvalidTransition
from .models import Run, RunEvent
from .processor import Processor
from .status import RunStatus
from .throttles import Critical

logger = logging.getLogger(__name__)

#: Why ``Throttle.wait`` stopped waiting, besides a condition that cleared (None).
STOPPED, SLICE_OVER = "stopped", "slice over"
ENGINE = {"source": "engine"}


class Throttle:
    """The throttle conditions of one run, looked at between its batches."""

    def __init__(
        self,
        run: Run,
        *,
        write: Callable[..., None],
        should_stop: Callable[[], bool],
        on_progress: Callable[[Run], None],
        slice_end: float | None,
    ) -> None:
        """``write(**fields)`` writes the run's fields if this attempt holds it, noting pause/cancel requests."""
        self.run, self.write, self.should_stop, self.on_progress = run, write, should_stop, on_progress
        self.slice_end = slice_end
        self.interval = app_settings.THROTTLE_CHECK_INTERVAL
        self.backoff = self.interval
        self.next_check = 0.0  # a look after the first batch (a throttled run handed back looks at once)

    def conditions(self, processor: Processor) -> tuple[Callable[[], Any], ...]:
        return (*processor.throttle_on, *app_settings.THROTTLE_ON)

    def reason(self, processor: Processor) -> str | None:
        """Return the first reason a condition gives to wait, or None."""
        for condition in self.conditions(processor):
            if reason := condition():
                return reason if isinstance(reason, str) else str(reason)
        return None

    def wait(self, processor: Processor) -> str | None:
        """Wait while a condition holds; return STOPPED or SLICE_OVER if it stopped waiting for that.

        A pause or cancel request while waiting is noted by ``write`` (the engine stops after
        this batch); so is the pause asked for by a critical reason.
        """
        if (now := time.monotonic()) < self.next_check:
            return None
        self.next_check = now + self.interval
        if not self.conditions(processor):
            return None
        run, cap = self.run, max(self.interval, float(processor.throttle_backoff_max))
        while (reason := self.reason(processor)) and not isinstance(reason, Critical):
            self.begin(reason[:255])
            next_look = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, cap)
            while (now := time.monotonic()) < next_look:
                if self.slice_end is not None and now >= self.slice_end:
                    return SLICE_OVER  # the period goes on: the next slice looks first
                time.sleep(max(0.0, min(app_settings.CHECKPOINT_INTERVAL, next_look - now)))
                if self.should_stop():
                    self.end()
                    return STOPPED
                self.write()  # a heartbeat, and a look for pause/cancel requests
                if run.status != RunStatus.RUNNING:
                    self.end()
                    return None
        self.end()
        self.backoff, self.next_check = self.interval, time.monotonic() + self.interval
        if reason:
            self.pause(reason)
        return None

    def begin(self, reason: str) -> None:
        """Show the run as throttled for ``reason``; a new period is one audit entry."""
        run = self.run
        if run.throttled_reason == reason:
            return
        fields: dict[str, Any] = {"throttled_reason": reason}
        if run.throttled_since is None:
            fields["throttled_since"] = timezone.now()
            RunEvent.objects.log(run, "throttled", run.status, run.status, ENGINE, reason=reason)
            logger.info("Run %s is throttled: %s.", run.pk, reason)
        self.write(**fields)
        for name, value in fields.items():
            setattr(run, name, value)
        self.on_progress(run)

    def end(self) -> None:
        """End the run's throttled period, if any: add its seconds to ``throttled_seconds``."""
        run = self.run
        if run.throttled_since is None:
            return
        seconds = max(0.0, (timezone.now() - run.throttled_since).total_seconds())
        fields = {"throttled_reason": "", "throttled_since": None, "throttled_seconds": run.throttled_seconds + seconds}
        self.write(**fields)
        for name, value in fields.items():
            setattr(run, name, value)
        RunEvent.objects.log(run, "throttle_ended", run.status, run.status, ENGINE, seconds=round(seconds, 3))
        logger.info("Run %s goes on after %.1fs throttled.", run.pk, seconds)
        self.on_progress(run)

    def pause(self, reason: str) -> None:
        """Ask the run to pause for a critical ``reason``; the engine stops after this batch."""
        logger.warning("Run %s pauses: %s.", self.run.pk, reason)
        with contextlib.suppress(InvalidTransition, ConcurrentChange):  # another request came first: answered
            self.run.pause(actor={**ENGINE, "reason": reason})
        self.write()

    def handback(self) -> dict[str, Any]:
        """Return the fields of a run handed back at the end of a slice: a throttled one's next slice deferred."""
        if self.run.throttled_since is None:
            return {}
        return {"retry_at": timezone.now() + timedelta(seconds=self.backoff)}
