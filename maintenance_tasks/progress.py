"""Show a run's progress in a terminal: a bar on a TTY, plain periodic lines otherwise."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from tqdm import tqdm

from .models import Run


def describe(run: Run) -> str:
    """Return one line of progress: count, total, percentage, rate and ETA."""
    total = f"/{run.tick_total:,}" if run.tick_total is not None else ""
    percent = f" ({run.progress:.1%})" if run.progress is not None else ""
    rate = f", {run.rate:,.0f} items/s" if run.rate else ""
    eta = f", ETA {timedelta(seconds=round(run.eta.total_seconds()))}" if run.eta is not None else ""
    throttled = f", throttled: {run.throttled_reason}" if run.throttled_reason else ""
    return f"Run {run.pk}: {run.tick_count:,}{total} items{percent}{rate}{eta}{throttled}"


class ProgressBar:
    """A tqdm bar fed by the engine's progress callbacks."""

    def __init__(self, run: Run, stream: Any) -> None:
        self.bar = tqdm(
            total=run.tick_total,
            initial=run.tick_count,
            unit=" items",
            file=stream,
            dynamic_ncols=True,
            desc=f"Run {run.pk} {run.task.name}",
            smoothing=0.1,
        )

    def __call__(self, run: Run) -> None:
        if self.bar.total is None and run.tick_total is not None:
            self.bar.total = run.tick_total
        self.bar.update(run.tick_count - self.bar.n)
        throttled = f"throttled: {run.throttled_reason}" if run.throttled_reason else ""
        if throttled != self.bar.postfix:
            self.bar.set_postfix_str(throttled)

    def close(self) -> None:
        self.bar.close()


class ProgressLog:
    """A plain line every ``interval`` seconds, for logs and pipes."""

    def __init__(self, run: Run, stream: Any, interval: float) -> None:
        self.stream, self.interval = stream, interval
        self.next_line = time.monotonic() + interval
        self.throttled = run.throttled_reason

    def __call__(self, run: Run) -> None:
        throttled, self.throttled = self.throttled, run.throttled_reason
        if time.monotonic() >= self.next_line or bool(throttled) != bool(run.throttled_reason):
            self.stream.write(describe(run))
            self.next_line = time.monotonic() + self.interval

    def close(self) -> None:
        pass
