"""Checkpoints and batch bounds, as the engine writes and builds them on each database."""

import pytest
from django.db.models import F
from django.utils import timezone

from maintenance_tasks.engine import Engine
from maintenance_tasks.exceptions import StaleAttempt
from maintenance_tasks.models import Run
from maintenance_tasks.runner import Runner
from maintenance_tasks.sources import open_source
from maintenance_tasks.status import RunStatus
from testproject.testapp.maintenance import IncrementItemsInBatches, IncrementRankedItems
from testproject.testapp.models import Item, RankedItem

from .test_engine import APP, StopAfter, perform, times

pytestmark = pytest.mark.django_db


@pytest.fixture
def items():
    return Item.objects.bulk_create(Item() for _ in range(25))


class Snapshots:
    """A should_stop callback that reads the stored run after each batch, as another process would."""

    def __init__(self):
        self.rows = []

    def __call__(self):
        self.rows.append(
            Run.objects.values("cursor", "tick_count", "time_running", "heartbeat_at", "updated_at").get(
                status=RunStatus.RUNNING
            )
        )
        return False


@pytest.mark.parametrize("name", ["IncrementItems", "IncrementItemsInBatches"])
def test_each_checkpoint_stores_the_batch_cursor_count_and_times(items, name):
    before = timezone.now()
    snapshots = Snapshots()
    run = perform(name, should_stop=snapshots)
    after = timezone.now()
    assert run.status == RunStatus.SUCCEEDED
    assert [(row["cursor"], row["tick_count"]) for row in snapshots.rows] == [
        (f"[{items[9].pk}]", 10),
        (f"[{items[19].pk}]", 20),
        (f"[{items[24].pk}]", 25),
    ]
    times_running = [row["time_running"] for row in snapshots.rows]
    assert 0 < times_running[0] <= times_running[1] <= times_running[2] <= run.time_running
    for row in snapshots.rows:
        # Aware datetimes, stored in the right time zone and with their microseconds
        # (the heartbeat thread may have written a later heartbeat since).
        assert before <= row["updated_at"] <= row["heartbeat_at"] <= after
    updates = [row["updated_at"] for row in snapshots.rows]
    assert updates == sorted(updates)


def test_a_stale_executor_cannot_commit_its_process_batch(items):
    def take_over():
        Run.objects.filter(status=RunStatus.RUNNING).update(attempt=F("attempt") + 1)

    run = perform("IncrementItemsInBatches", should_stop=StopAfter(1, take_over))
    stored = Run.objects.get(pk=run.pk)
    assert times() == [1] * 10 + [0] * 15  # the UPDATE of the second batch was rolled back
    assert (stored.status, stored.tick_count, stored.cursor, stored.attempt) == (
        RunStatus.RUNNING,
        10,
        f"[{items[9].pk}]",
        2,
    )


def test_a_stale_autocommit_executor_cannot_move_the_cursor(items, settings):
    settings.MAINTENANCE_TASKS = {"CHECKPOINT_INTERVAL": 0}  # a checkpoint after every item

    def take_over():
        Run.objects.filter(status=RunStatus.RUNNING).update(attempt=F("attempt") + 1, cursor="theirs")

    run = perform("IncrementItemsAutocommit", should_stop=StopAfter(3, take_over))
    stored = Run.objects.get(pk=run.pk)
    assert times().count(1) == 3  # items commit on their own: at least once
    assert (stored.status, stored.cursor, stored.attempt) == (RunStatus.RUNNING, "theirs", 2)


def test_the_guarded_update_changes_nothing_without_the_token_or_the_status(items):
    run = Runner.create(APP + "IncrementItems")
    run.transition_to(RunStatus.RUNNING, attempt=1, action="start")
    engine = Engine(run)
    engine.writer.token = 2
    assert not engine.writer.update_if_running({"cursor": "[1]", "tick_count": 1})
    engine.writer.token = 1
    Run.objects.filter(pk=run.pk).update(status=RunStatus.PAUSING)
    assert not engine.writer.update_if_running({"cursor": "[1]", "tick_count": 1})
    assert Run.objects.values_list("cursor", "tick_count").get(pk=run.pk) == (None, 0)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    assert engine.writer.update_if_running({"cursor": "[1]", "tick_count": 1})
    assert Run.objects.values_list("cursor", "tick_count").get(pk=run.pk) == ("[1]", 1)
    with pytest.raises(StaleAttempt):
        engine.writer.token = 3
        engine._write(cursor="[2]")


def test_whole_batches_are_exactly_the_rows_between_two_keys(items):
    source = open_source(IncrementItemsInBatches())
    batches = list(source.batches(None, whole=True))
    pks = [item.pk for item in items]
    assert [list(batch.items.values_list("pk", flat=True)) for batch in batches] == [pks[:10], pks[10:20], pks[20:]]
    resumed = list(source.batches(batches[0].end_cursor, whole=True))
    assert [list(batch.items.values_list("pk", flat=True)) for batch in resumed] == [pks[10:20], pks[20:]]


def test_whole_batches_over_cursor_columns():
    RankedItem.objects.bulk_create(RankedItem(group=g, position=p) for g in (3, 1, 2) for p in (2, 1, 3))
    key = ("group", "position")
    ordered = list(RankedItem.objects.order_by(*key).values_list(*key))
    source = open_source(IncrementRankedItems())
    batches = list(source.batches(None, whole=True))  # 4 per batch
    assert [list(batch.items.values_list(*key)) for batch in batches] == [ordered[:4], ordered[4:8], ordered[8:]]
    resumed = list(source.batches(batches[0].end_cursor, whole=True))
    assert [list(batch.items.values_list(*key)) for batch in resumed] == [ordered[4:8], ordered[8:]]


def test_cursor_columns_with_process_batch_resume():
    RankedItem.objects.bulk_create(RankedItem(group=g, position=p) for g in (3, 1, 2) for p in (2, 1, 3))
    run = perform("IncrementRankedItemsInBatches", should_stop=StopAfter(2))
    assert run.status == RunStatus.INTERRUPTED and run.tick_count == 8
    assert run.cursor == "[3,2]"
    Runner.resume(run, execute=False)
    run = Engine(run).perform()
    assert run.status == RunStatus.SUCCEEDED and run.tick_count == 9
    assert times(RankedItem) == [1] * 9


@pytest.mark.parametrize(("name", "done"), [("IncrementItemsAutocommit", 1), ("IncrementItems", 10)])
def test_a_slice_ends_after_the_item_or_batch_that_crosses_it(items, name, done):
    run = perform(name, slice_seconds=1e-9)
    assert run.status == RunStatus.ENQUEUED
    assert (run.tick_count, run.cursor) == (done, f"[{items[done - 1].pk}]")
    assert times() == [1] * done + [0] * (25 - done)
    assert Run.objects.values_list("tick_count", "cursor").get(pk=run.pk) == (done, run.cursor)


def test_autocommit_asks_should_stop_once_per_item(items, settings):
    settings.MAINTENANCE_TASKS = {"CHECKPOINT_INTERVAL": 0}  # and checkpoints after every item
    calls = StopAfter(10**6)
    run = perform("IncrementItemsAutocommit", should_stop=calls)
    assert run.status == RunStatus.SUCCEEDED and run.tick_count == 25
    assert calls.calls == 25
