"""Skipping bad items: an item whose error is in the processor's ``skip_on`` is recorded, and the run goes on.

In an atomic batch, the batch runs in a savepoint. When it raises an error in ``skip_on``, the
savepoint is rolled back and the batch replayed item by item, each item in a savepoint of its
own: the good items commit with the batch's checkpoint, each bad one is rolled back and recorded
as a ``SkippedItem`` in the same transaction. A batch of ``process_batch()`` is replayed through
``process()`` when the processor defines one; otherwise the whole batch is recorded as skipped,
by the keys of its first and last items. Model instances are reloaded from the database before
they are replayed, so that nothing the rolled back attempt changed on them carries over.

In autocommit mode (``atomic = False``), an item that raises an error in ``skip_on`` is
recorded and skipped at once; a ``process_batch()`` batch is replayed as above, each item in a
transaction of its own (the items done before the error are done again: at least once).

An error in ``retry_on`` is retried, never skipped, even if it is in ``skip_on`` too. Past
``max_skipped`` items the run errors (TooManySkipped), and the batch that went over is rolled back.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import models, transaction
from django.db.models import F

from .exceptions import MESSAGE_LIMIT, TooManySkipped, error_class_name, error_message, storable
from .models import Run, SkippedItem
from .processor import Processor
from .sources import Batch

logger = logging.getLogger("maintenance_tasks.engine")

#: The columns of the skipped items' CSV file (the admin's download, ``maintenance_runs failures --csv``).
CSV_COLUMNS = ("item_key", "last_key", "items", "error_class", "error_message", "skipped_at")


class Skipping:
    """What a run does with the items its processor cannot process: nothing, without ``skip_on``."""

    def __init__(self, run: Run, processor: Processor, *, whole: bool, using: str | None = None) -> None:
        self.run, self.whole, self.using = run, whole, using  # using: the database the batches commit on
        self.skip_on, self.retry_on, self.max_skipped = processor.skip_on, processor.retry_on, processor.max_skipped
        # process_batch() is replayed through process(), if there is one; else its batch is skipped whole.
        self.process = processor.process if whole and type(processor).process is not Processor.process else None
        self.by_item = not whole or self.process is not None
        if self.skip_on:
            run.refresh_from_db(fields=["skipped_count"])  # what the attempts before this one skipped

    def skippable(self, error: BaseException) -> bool:
        """Return whether ``error`` skips its item: it is in ``skip_on`` and not in ``retry_on``."""
        return isinstance(error, self.skip_on) and not isinstance(error, self.retry_on)

    def savepoint(self) -> AbstractContextManager[Any]:
        """Return what an atomic batch runs in: a savepoint, to roll it back alone and replay it, when skipping."""
        return transaction.atomic(using=self.using) if self.skip_on else nullcontext()

    def replay(
        self,
        error: Exception,
        batch: Batch,
        handle: Callable[[Any], None],
        wrap: Callable[[], AbstractContextManager[Any]],
    ) -> None:
        """Replay a batch rolled back after ``error`` item by item (inside ``wrap()``), and record the bad items.

        Raise ``error`` again when it does not skip its item; raise TooManySkipped past ``max_skipped``.
        """
        if not self.skippable(error):
            raise error
        with wrap():
            skipped = self._replay(error, batch, handle)
        self._record(skipped)

    def guard(self, batch: Batch, handle: Callable[[Any], None]) -> Callable[[Any], None]:
        """Return ``handle`` for an autocommit batch, recording and skipping the items that raise an error in ``skip_on``."""
        if not self.skip_on:
            return handle
        if self.whole:

            def handle_batch(items: Any) -> None:
                try:
                    handle(items)
                except Exception as error:
                    if not self.skippable(error):
                        raise
                    self._record(self._replay(error, batch, handle))

            return handle_batch
        position = itertools.count()

        def handle_item(item: Any) -> None:
            index = next(position)
            try:
                handle(item)
            except Exception as error:
                if not self.skippable(error):
                    raise
                self._record([self._skipped(batch.cursor_at(index), error)])

        return handle_item

    def _replay(self, error: Exception, batch: Batch, handle: Callable[[Any], None]) -> list[SkippedItem]:
        """Process the batch's items one by one, each in a savepoint; return those that raised an error in ``skip_on``."""
        if not self.by_item:
            return [self._skipped(batch.cursor_at(0), error, last_key=batch.end_cursor, items=batch.size)]
        process = self.process or handle
        items = batch.items.all() if isinstance(batch.items, models.QuerySet) else batch.items
        skipped = []
        for index, item in enumerate(items):
            if isinstance(item, models.Model) and not self.whole:
                try:
                    item.refresh_from_db()  # undo what the rolled back attempt changed on it
                except ObjectDoesNotExist:
                    continue  # deleted meanwhile: nothing left to process
            try:
                with transaction.atomic(using=self.using):
                    process(item)
            except Exception as item_error:
                if not self.skippable(item_error):
                    raise
                skipped.append(self._skipped(batch.cursor_at(index), item_error))
        return skipped

    def _skipped(self, key: str, error: Exception, *, last_key: str = "", items: int = 1) -> SkippedItem:
        """Return the record of an item (or of ``items`` items up to ``last_key``) skipped after ``error``."""
        skipped = SkippedItem(
            run_id=self.run.pk,
            item_key=storable(key, MESSAGE_LIMIT),
            last_key=storable(last_key, MESSAGE_LIMIT),
            items=items,
            error_class=error_class_name(error),
            error_message=error_message(error),
        )
        where = f"{key}..{last_key}" if last_key else key
        logger.warning(
            "Run %s skipped %s: %s: %s", self.run.pk, where, skipped.error_class, skipped.error_message[:1000]
        )
        return skipped

    def _record(self, skipped: list[SkippedItem]) -> None:
        """Save skipped items and count them on the run; raise TooManySkipped past ``max_skipped``."""
        if not skipped:
            return
        count = self.run.skipped_count + sum(item.items for item in skipped)
        if self.max_skipped is not None and count > self.max_skipped:
            last = skipped[-1]
            raise TooManySkipped(
                f"Skipped {count:,} items, more than max_skipped ({self.max_skipped:,}): "
                f"last error at {last.item_key}: {last.error_class}: {last.error_message[:1000]}"
            )
        with transaction.atomic():
            SkippedItem.objects.bulk_create(skipped)
            Run.objects.filter(pk=self.run.pk).update(skipped_count=F("skipped_count") + count - self.run.skipped_count)
        self.run.skipped_count = count


def skipped_rows(run: Run) -> models.QuerySet[SkippedItem]:
    """Return the items ``run`` skipped, in the order it skipped them."""
    return SkippedItem.objects.filter(run=run).order_by("id")


def csv_lines(run: Run) -> Iterator[str]:
    """Yield the items ``run`` skipped as the lines of a CSV file (``CSV_COLUMNS``), in constant memory."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    values = (
        (item.item_key, item.last_key, item.items, item.error_class, item.error_message, item.created_at.isoformat())
        for item in skipped_rows(run).iterator(chunk_size=1000)
    )
    for row in itertools.chain([CSV_COLUMNS], values):
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def describe(run: Run) -> str:
    """Return how many items ``run`` skipped, and how to list them, as one line ("" if none)."""
    if not run.skipped_count:
        return ""
    count = run.skipped_count
    return f"Skipped {count:,} item{'s' * (count != 1)}; list them with: manage.py maintenance_runs failures {run.pk}"
