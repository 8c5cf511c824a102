"""Show a run's progress in a terminal: a bar on a TTY, plain periodic lines otherwise."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from tqdm import tqdm

from .models import Run
from .output import OutputFollower


def describe(run: Run) -> str:
    """Return one line of progress: count, total, percentage, rate and ETA."""
    return f"Run {run.pk}: {progress_text(run)}"


def progress_text(run: Run, *, pace: bool = True) -> str:
    """Return ``300/600 items (50.0%)``, with the rate and ETA after it unless ``pace`` is False."""
    total = f"/{run.tick_total:,}" if run.tick_total is not None else ""
    percent = f" ({run.progress:.1%})" if run.progress is not None else ""
    rate = f", {run.rate:,.0f} items/s" if run.rate and pace else ""
    eta = f", ETA {timedelta(seconds=round(run.eta.total_seconds()))}" if run.eta is not None and pace else ""
    throttled = f", throttled: {run.throttled_reason}" if run.throttled_reason else ""
    return f"{run.tick_count:,}{total} items{percent}{rate}{eta}{throttled}"


class ProgressBar:
    """A tqdm bar fed by the engine's progress callbacks; the run's output lines go to ``lines``, above it."""

    def __init__(self, run: Run, stream: Any, lines: Any) -> None:
        self.lines, self.output = lines, OutputFollower(run)
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
        if new := self.output.new_lines(run):
            self.bar.clear()
            for line in new:
                self.lines.write(line)
            self.lines.flush()
        throttled = f"throttled: {run.throttled_reason}" if run.throttled_reason else ""
        postfix = " – ".join(part for part in (throttled, run.status_line) if part)
        if postfix != self.bar.postfix:
            self.bar.set_postfix_str(postfix, refresh=False)
        if self.bar.total is None and run.tick_total is not None:
            self.bar.total = run.tick_total
        self.bar.update(run.tick_count - self.bar.n)
        if new:
            self.bar.refresh()  # drawn again below the lines, even within tqdm's mininterval

    def close(self) -> None:
        self.bar.close()


class ProgressLog:
    """A plain line every ``interval`` seconds, for logs and pipes, and the run's output lines as they come."""

    def __init__(self, run: Run, stream: Any, interval: float) -> None:
        self.stream, self.interval, self.output = stream, interval, OutputFollower(run)
        self.next_line = time.monotonic() + interval
        self.throttled = run.throttled_reason

    def __call__(self, run: Run) -> None:
        for line in self.output.new_lines(run):
            self.stream.write(line)
        throttled, self.throttled = self.throttled, run.throttled_reason
        if time.monotonic() >= self.next_line or bool(throttled) != bool(run.throttled_reason):
            self.stream.write(describe(run) + (f" – {run.status_line}" if run.status_line else ""))
            self.next_line = time.monotonic() + self.interval

    def close(self) -> None:
        pass
