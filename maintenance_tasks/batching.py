"""Transactions sized by time: fast batches grouped in one commit, slow batches made smaller.

An atomic processor's batches commit with the checkpoint that records them. Committing after
every batch of 100 cheap rows costs more than the rows (a transaction, a write of the run, a
round trip or three), so with ``batch_time`` the engine keeps one transaction open over
several batches and commits them together once the group has taken ``batch_time`` seconds.
Each batch is still at most ``batch_size`` items: ``process_batch()`` never gets more.

The other way round, a batch slower than ``batch_time`` on its own makes the next batches
smaller, down to ``min_batch_size``, so that a transaction (and the locks it holds) lasts
about ``batch_time``; they grow back toward ``batch_size`` once batches are fast again.
``BatchSizer`` holds that arithmetic: the next size is what fits in ``batch_time`` at the
moving average of seconds per item, never more than twice the size before, so that a steady
load keeps a steady size and a slow spell is answered at once.

Without ``batch_time`` (None) each batch is one transaction of ``batch_size`` items, as before.

``sleep_ratio`` paces a run on a busy database: after each commit the run sleeps that many times
the time the work since the last sleep took (1.0: half the time working, half sleeping), so that
the traffic gets the database between transactions whatever their size.

This module is a leaf: the engine hands it the batches and a way to read the run's tuning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.core.exceptions import ValidationError

from .sources import Batch, Source

#: Weight of the latest batch in the moving average of seconds per item.
SMOOTHING = 0.5
#: The next batch is at most this many times the size of the one before.
MAX_GROWTH = 2.0
#: A new size within this fraction of the current one leaves the size as it is (no jitter on noise).
DEAD_BAND = 0.1
#: A run's own values, each None for the processor's (``Run.tune()``).
TUNING = ("batch_size", "batch_time", "sleep_ratio")
#: The largest ``sleep_ratio``: a run that sleeps 100 times as long as it works.
MAX_SLEEP_RATIO = 100


def tuning_errors(batch_size: Any = None, batch_time: Any = None, sleep_ratio: Any = None) -> dict[str, str]:
    """Return a message per bad per-run override: ``batch_size`` a whole number, 1 or more;
    ``batch_time`` a positive number of seconds; ``sleep_ratio`` a number from 0 to MAX_SLEEP_RATIO
    (None: the processor's own, for each)."""
    errors = {}
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        errors["batch_size"] = f"batch_size must be a whole number, 1 or more, not {batch_size!r}."
    if batch_time is not None and (
        isinstance(batch_time, bool)
        or not isinstance(batch_time, int | float)
        or not math.isfinite(batch_time)
        or not 0 < batch_time <= 3600
    ):
        errors["batch_time"] = f"batch_time must be a number of seconds, above 0 and at most 3600, not {batch_time!r}."
    if sleep_ratio is not None and not is_ratio(sleep_ratio):
        errors["sleep_ratio"] = f"sleep_ratio must be a number from 0 to {MAX_SLEEP_RATIO}, not {sleep_ratio!r}."
    return errors


def is_ratio(value: Any) -> bool:
    """Return whether ``value`` is a ``sleep_ratio``: a number from 0 to MAX_SLEEP_RATIO."""
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= MAX_SLEEP_RATIO


def sizing_problems(processor: Any) -> list[str]:
    """Return why a processor's ``batch_time`` or ``min_batch_size`` cannot size its batches."""
    problems = []
    if not is_ratio(ratio := processor.sleep_ratio):
        problems.append(f"sleep_ratio must be a number from 0 to {MAX_SLEEP_RATIO}, not {ratio!r}.")
    if processor.batch_time is not None and tuning_errors(batch_time=processor.batch_time):
        problems.append(
            f"batch_time must be None or a number of seconds, above 0 and at most 3600, not {processor.batch_time!r}."
        )
    size, smallest = processor.batch_size, processor.min_batch_size
    if isinstance(smallest, bool) or not isinstance(smallest, int) or smallest < 1:
        problems.append(f"min_batch_size must be a whole number, 1 or more, not {smallest!r}.")
    elif isinstance(size, int) and not isinstance(size, bool) and 1 <= size < smallest:
        problems.append(f"min_batch_size ({smallest}) must be at most batch_size ({size}).")
    return problems


def validate_tuning(batch_size: Any = None, batch_time: Any = None, sleep_ratio: Any = None) -> None:
    """Raise ValidationError, one message per field, when an override is not valid."""
    if errors := tuning_errors(batch_size, batch_time, sleep_ratio):
        raise ValidationError({field: [message] for field, message in errors.items()})


def describe(run: Any) -> str:
    """Return the batch sizes a run used and its commits, in a few words ("" before its first commit)."""
    if not run.commits:
        return ""
    low, high = run.batch_size_min, run.batch_size_max
    sizes = f"{low:,}" if low == high else f"{low:,} to {high:,}, latest {run.batch_size_latest:,}"
    return f"batches of {sizes} items; {run.commits:,} commit{'s' * (run.commits != 1)}"


def describe_own(run: Any) -> str:
    """Return the run's own values ("batch_size 7, batch_time 0.5s, sleep_ratio 1.0"), or "" if it has none."""
    return ", ".join(
        f"{name} {value}{'s' if name == 'batch_time' else ''}"
        for name in TUNING
        if (value := getattr(run, name)) is not None
    )


class BatchSizer:
    """Size each batch so that it takes about ``batch_time``, between ``min_size`` and ``max_size`` items."""

    def __init__(self, max_size: int, min_size: int = 1, batch_time: float | None = None) -> None:
        self.max_size, self.min_size, self.batch_time = max_size, min(min_size, max_size), batch_time
        self.size = max_size
        self.per_item: float | None = None  # moving average of seconds per item

    def retune(self, max_size: int, batch_time: float | None) -> None:
        """Take a new ``batch_size`` and ``batch_time`` (a run tuned while it goes on)."""
        self.max_size, self.min_size, self.batch_time = max_size, min(self.min_size, max_size), batch_time
        self.size = min(self.size, max_size) if batch_time is not None else max_size

    def record(self, items: int, seconds: float) -> int:
        """Note that a batch of ``items`` took ``seconds``; return the size of the next batch."""
        if self.batch_time is None or items < 1:
            return self.size
        rate = max(seconds, 0.0) / items
        if self.per_item is None or seconds > self.batch_time:
            self.per_item = rate  # a first batch, or one too slow on its own: act on it now
        else:
            self.per_item += SMOOTHING * (rate - self.per_item)
        fits = self.max_size if self.per_item <= 0 else int(self.batch_time / self.per_item)
        size = max(self.min_size, min(fits, int(self.size * MAX_GROWTH), self.max_size))
        if abs(size - self.size) > DEAD_BAND * self.size or size in (self.min_size, self.max_size):
            self.size = size
        return self.size


class Group:
    """The batches one transaction takes: the first, then more until the group has taken ``batch_time``
    (or the time ``until``, a ``time.monotonic()`` value, has come: the end of a background slice).

    Iterate over it inside the transaction; then ``size``, ``end_cursor`` and ``exhausted`` tell
    what it held and whether the source has no batch left.
    """

    def __init__(self, pacer: Pacer, first: Batch, rest: Iterator[Batch], started: float, until: float) -> None:
        self.pacer, self.first, self.rest, self.started, self.until = pacer, first, rest, started, until
        self.size = self.batches = 0
        self.end_cursor = ""
        self.exhausted = False

    def __iter__(self) -> Iterator[Batch]:
        batch, fetched = self.first, self.started
        while True:
            yield batch  # the caller processes it, then asks for the next one
            now = time.monotonic()
            self.pacer.record(batch.size, now - fetched)
            self.size, self.batches, self.end_cursor = self.size + batch.size, self.batches + 1, batch.end_cursor
            batch_time = self.pacer.sizer.batch_time
            if batch_time is None or now - self.started >= batch_time or now >= self.until:
                return
            fetched, following = now, next(self.rest, None)
            if following is None:
                self.exhausted = True
                return
            batch = following


class Pacer:
    """Group an atomic run's batches into transactions and size its batches; record what it used.

    It starts with the run's own ``batch_size``, ``batch_time`` and ``sleep_ratio`` (None: the
    processor's); ``read_tuning()`` returns them as stored now, and is called after a commit at most once per
    ``tune_interval`` seconds, so that a run tuned while it goes on takes the new values there.
    An autocommit processor's batches are neither grouped nor resized: only ``batch_size`` applies.
    """

    def __init__(
        self,
        processor: Any,
        source: Source,
        run: Any,
        read_tuning: Callable[[], tuple[int | None, float | None, float | None]],
        tune_interval: float,
    ) -> None:
        self.processor, self.source = processor, source
        self.read_tuning, self.tune_interval = read_tuning, tune_interval
        self.sizer: BatchSizer  # made by the first tune()
        self.tuning: tuple[int | None, float | None, float | None] | None = None  # the overrides applied
        self.sleep_ratio = 0.0
        self.tuned_at = -math.inf
        # What the run recorded in its slices before this one.
        self.latest, self.smallest, self.largest = run.batch_size_latest, run.batch_size_min, run.batch_size_max
        self.commits: int = run.commits
        self.working_since = time.monotonic()
        self.tune(run.batch_size, run.batch_time, run.sleep_ratio)

    def tune(self, batch_size: int | None, batch_time: float | None, sleep_ratio: float | None = None) -> None:
        """Apply the run's overrides (None: the processor's) if they changed."""
        self.tuned_at = time.monotonic()
        if (batch_size, batch_time, sleep_ratio) != self.tuning:
            first, self.tuning = self.tuning is None, (batch_size, batch_time, sleep_ratio)
            processor = self.processor
            self.sleep_ratio = processor.sleep_ratio if sleep_ratio is None else sleep_ratio
            batch_size = batch_size or processor.batch_size
            batch_time = (batch_time or processor.batch_time) if processor.atomic else None  # see the README
            if first:
                self.sizer = BatchSizer(batch_size, processor.min_batch_size, batch_time)
            else:
                self.sizer.retune(batch_size, batch_time)
            self.source.batch_size = self.sizer.size

    def groups(self, batches: Iterator[Batch], until: float | None = None) -> Iterator[Group]:
        """Yield the groups of batches, one per transaction, until the source has no batch left.

        A group ends early at ``until`` (a ``time.monotonic()`` value): the end of a background slice.
        """
        while True:
            started = time.monotonic()
            first = next(batches, None)
            if first is None:
                return
            group = Group(self, first, batches, started, math.inf if until is None else until)
            yield group
            if group.exhausted:
                return

    def record(self, items: int, seconds: float) -> None:
        """Note a batch done (the size it was asked for, not a last batch's remainder); size the next one."""
        asked = self.latest = self.sizer.size
        self.smallest = asked if self.smallest is None else min(self.smallest, asked)
        self.largest = asked if self.largest is None else max(self.largest, asked)
        self.source.batch_size = self.sizer.record(items, seconds)

    def rest(self) -> float:
        """After a commit: return the seconds to sleep, ``sleep_ratio`` times those worked since the last sleep."""
        return self.sleep_ratio * (time.monotonic() - self.working_since)

    def committed(self) -> None:
        """After a commit and its sleep: take the run's new tuning if it is time to look; work starts again."""
        if time.monotonic() - self.tuned_at >= self.tune_interval:
            self.tune(*self.read_tuning())
        self.working_since = time.monotonic()

    def commit_fields(self) -> dict[str, Any]:
        """Return the run's fields the checkpoint of a group writes: the batch sizes used, and the commits with it."""
        self.commits += 1
        return {
            "batch_size_latest": self.latest,
            "batch_size_min": self.smallest,
            "batch_size_max": self.largest,
            "commits": self.commits,
        }
