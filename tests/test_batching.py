"""Transactions sized by time (``batch_time``): the controller's arithmetic, grouped commits, tuning."""

import pytest
from django.core.exceptions import ValidationError

from maintenance_tasks.batching import BatchSizer, describe, sizing_problems, tuning_errors
from maintenance_tasks.engine import Engine
from maintenance_tasks.exceptions import InvalidTransition
from maintenance_tasks.models import Run, RunEvent
from maintenance_tasks.processor import Processor
from maintenance_tasks.runner import Runner
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import BatchLog, Item

from .test_engine import APP, StopAfter

# -- the controller ----------------------------------------------------------------------------


def feed(sizer, seconds_per_item, batches):
    """Give the sizer ``batches`` batches at a steady ``seconds_per_item``; return the sizes it chose."""
    sizes = []
    for _ in range(batches):
        sizes.append(sizer.size)
        sizer.record(sizer.size, sizer.size * seconds_per_item)
    return sizes


def test_fast_batches_keep_the_full_batch_size():
    sizer = BatchSizer(100, 1, 0.5)
    assert feed(sizer, 0.0001, 20) == [100] * 20  # 0.01 s a batch: grouped by the engine, never larger


def test_a_steady_slow_load_settles_on_one_size_without_oscillating():
    sizer = BatchSizer(1000, 1, 0.5)
    sizes = feed(sizer, 0.002, 40)  # 2 ms an item: 250 items fit in 0.5 s
    assert sizes[0] == 1000 and sizes[1] == 250
    assert set(sizes[1:]) == {250}


def test_a_steady_load_with_noise_does_not_oscillate():
    sizer = BatchSizer(1000, 1, 0.5)
    sizes = []
    for i in range(60):
        sizes.append(sizer.size)
        noise = 1.04 if i % 2 else 0.96  # ±4% from one batch to the next
        sizer.record(sizer.size, sizer.size * 0.002 * noise)
    assert len(set(sizes[5:])) == 1, sizes
    assert 230 <= sizes[-1] <= 260


def test_a_slow_spell_shrinks_at_once_then_batches_grow_back_smoothly():
    sizer = BatchSizer(100, 2, 0.5)
    fast = feed(sizer, 0.001, 5)  # 0.1 s a batch
    slow = feed(sizer, 0.05, 5)  # 50 ms an item: 10 fit
    recovered = feed(sizer, 0.001, 10)
    assert fast == [100] * 5
    assert slow[0] == 100 and slow[1:] == [10] * 4  # the first slow batch shrinks the next ones to what fits
    assert recovered[0] == 10
    growth = [after / before for before, after in zip(recovered, recovered[1:], strict=False)]
    assert all(1 <= g <= 2 for g in growth), recovered  # at most doubling: no overshoot, no jump back
    assert recovered[-1] == 100


def test_sizes_stay_between_min_batch_size_and_batch_size():
    sizer = BatchSizer(50, 5, 0.1)
    assert feed(sizer, 1.0, 3) == [50, 5, 5]  # 1 s an item: nothing fits, min_batch_size it is
    assert feed(sizer, 0.0, 20)[-1] == 50  # the average halves each batch, the size at most doubles


def test_without_batch_time_the_size_never_changes():
    sizer = BatchSizer(100, 1, None)
    assert feed(sizer, 1.0, 3) == [100, 100, 100]


def test_bad_tuning_values_get_one_clear_message_each():
    assert tuning_errors(0, -1) == {
        "batch_size": "batch_size must be a whole number, 1 or more, not 0.",
        "batch_time": "batch_time must be a number of seconds, above 0 and at most 3600, not -1.",
    }
    assert set(tuning_errors(True, float("nan"))) == {"batch_size", "batch_time"}
    assert tuning_errors("10", "0.5").keys() == {"batch_size", "batch_time"}
    assert tuning_errors(10, 0.5) == tuning_errors() == {}


def test_processor_attributes_are_checked():
    bad = type("Bad", (Processor,), {"batch_time": 0, "min_batch_size": 0})
    assert sizing_problems(bad) == [
        "batch_time must be None or a number of seconds, above 0 and at most 3600, not 0.",
        "min_batch_size must be a whole number, 1 or more, not 0.",
    ]
    too_big = type("TooBig", (Processor,), {"batch_size": 10, "min_batch_size": 20})
    assert sizing_problems(too_big) == ["min_batch_size (20) must be at most batch_size (10)."]
    assert sizing_problems(type("Good", (Processor,), {"batch_time": None})) == []
    [(check_id, _)] = bad.definition_problems()[-1:]
    assert check_id == "maintenance_tasks.E041"


def test_batch_time_defaults_to_the_setting(settings):
    settings.MAINTENANCE_TASKS = {}
    assert Processor.batch_time == 0.5
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": None}
    assert Processor.batch_time is None
    assert type("Own", (Processor,), {"batch_time": 2.0}).batch_time == 2.0


# -- grouped commits in the engine -------------------------------------------------------------


@pytest.fixture
def items():
    return Item.objects.bulk_create(Item() for _ in range(200))


def perform(config=None, **options):
    run = Runner.create(APP + "PacedBatches", config, **options)
    return Engine(run).perform()


@pytest.mark.django_db
def test_fast_batches_commit_together_each_applied_once(items, settings):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": 3600}
    run = perform()
    assert run.status == RunStatus.SUCCEEDED
    assert run.tick_count == 200
    assert list(Item.objects.values_list("times_processed", flat=True).distinct()) == [1]
    assert list(BatchLog.objects.values_list("size", flat=True)) == [20] * 10  # never more than batch_size
    run.refresh_from_db()
    assert run.commits == 1  # ten batches, one transaction with its checkpoint
    assert (run.batch_size_latest, run.batch_size_min, run.batch_size_max) == (20, 20, 20)
    assert describe(run) == "batches of 20 items; 1 commit"


@pytest.mark.django_db
def test_without_batch_time_each_batch_commits_on_its_own(items, settings):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": None}
    run = perform()
    run.refresh_from_db()
    assert (run.status, run.tick_count, run.commits) == (RunStatus.SUCCEEDED, 200, 10)


@pytest.mark.django_db
def test_slow_batches_shrink_and_grow_back(items, settings):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": 0.2}
    first = items[0].pk
    # Items 40 to 79 take 50 ms each: four fit in 0.2 s. The others take nothing.
    run = perform({"slow_from": first + 40, "slow_until": first + 80, "slow_per_item": 0.05})
    assert run.status == RunStatus.SUCCEEDED and run.tick_count == 200
    assert list(Item.objects.values_list("times_processed", flat=True).distinct()) == [1]
    sizes = list(BatchLog.objects.order_by("first_pk").values_list("size", flat=True))
    assert sizes[:2] == [20, 20]
    assert min(sizes) <= 5, sizes
    smallest = sizes.index(min(sizes))
    assert sizes[smallest:].count(20) >= 2, sizes  # grown back; the very last batch is what is left
    run.refresh_from_db()
    assert run.batch_size_min <= 5 and run.batch_size_max == 20 and run.batch_size_latest == 20


@pytest.mark.django_db
def test_a_dry_run_rolls_back_every_grouped_batch(items, settings):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": 3600}
    run = perform(dry_run=True)
    assert run.status == RunStatus.SUCCEEDED and run.tick_count == 200
    assert list(Item.objects.values_list("times_processed", flat=True).distinct()) == [0]
    assert not BatchLog.objects.exists()
    run.refresh_from_db()
    assert run.dry_run_report["batches"] == 10 and run.commits == 1


@pytest.mark.django_db
def test_an_error_rolls_back_the_whole_group_and_the_cursor_stays_at_the_last_commit(items, settings):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": 3600}
    run = Runner.create(APP + "IncrementItems", {"fail_at": items[55].pk})
    run = Engine(run).perform()
    assert run.status == RunStatus.ERRORED
    assert run.cursor is None and run.tick_count == 0  # the group of batches before the error rolled back too
    assert list(Item.objects.values_list("times_processed", flat=True).distinct()) == [0]


@pytest.mark.django_db
def test_a_run_stops_at_the_next_commit(items, settings):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": 0.1}
    run = Runner.create(APP + "PacedBatches", {"per_item": 0.002})  # 40 ms a batch: groups of three or so
    run = Engine(run, should_stop=StopAfter(1)).perform()
    run.refresh_from_db()
    assert run.status == RunStatus.INTERRUPTED and run.commits == 1
    assert 20 < run.tick_count < 200 and run.tick_count % 20 == 0  # several batches, then the stop
    assert Item.objects.filter(times_processed=1).count() == run.tick_count
    assert not Item.objects.exclude(times_processed__in=[0, 1]).exists()


# -- per-run values and tuning -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_keeps_its_own_batch_size_and_batch_time(items, settings):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": None}
    run = perform(batch_size=7, batch_time=3600)
    run.refresh_from_db()
    assert (run.batch_size, run.batch_time, run.commits, run.tick_count) == (7, 3600, 1, 200)
    assert set(BatchLog.objects.values_list("size", flat=True)) == {7, 200 % 7}
    assert RunEvent.objects.get(run=run, action="created").detail["batch_size"] == 7


@pytest.mark.django_db
def test_bad_per_run_values_are_refused_with_nothing_saved(items):
    with pytest.raises(ValidationError) as raised:
        Runner.create(APP + "PacedBatches", batch_size=0, batch_time=0)
    assert raised.value.message_dict == {
        "batch_size": ["batch_size must be a whole number, 1 or more, not 0."],
        "batch_time": ["batch_time must be a number of seconds, above 0 and at most 3600, not 0."],
    }
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_tune_is_taken_at_the_next_commit_and_audited(items, settings):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": None, "CHECKPOINT_INTERVAL": 0.001}
    run = Runner.create(APP + "PacedBatches")

    def tune():
        Run.objects.get(pk=run.pk).tune(batch_size=5)

    run = Engine(run, should_stop=StopAfter(2, action=tune)).perform()
    assert run.status == RunStatus.SUCCEEDED and run.tick_count == 200
    sizes = list(BatchLog.objects.order_by("first_pk").values_list("size", flat=True))
    assert sizes[:2] == [20, 20] and set(sizes[2:]) == {5}, sizes
    assert list(Item.objects.values_list("times_processed", flat=True).distinct()) == [1]
    event = RunEvent.objects.get(run=run, action="tune")
    assert event.detail["batch_size"] == [None, 5] and event.from_status == event.to_status == RunStatus.RUNNING


@pytest.mark.django_db
def test_tune_refuses_bad_values_and_ended_runs(items):
    run = perform()
    with pytest.raises(ValidationError, match="batch_time must be a number of seconds"):
        run.tune(batch_time=-2)
    with pytest.raises(InvalidTransition, match="is succeeded: cannot tune it"):
        run.tune(batch_size=5)
    assert not RunEvent.objects.filter(action="tune").exists()


@pytest.mark.django_db
def test_a_group_ends_with_its_background_slice(items, settings):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": 3600}
    run = Runner.create(APP + "PacedBatches")
    run = Engine(run, slice_seconds=0.0).perform()
    run.refresh_from_db()
    assert (run.status, run.tick_count, run.commits) == (RunStatus.ENQUEUED, 20, 1)  # one batch, then handed back
    assert Item.objects.filter(times_processed=1).count() == 20
