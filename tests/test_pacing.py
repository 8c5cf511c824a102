"""``sleep_ratio``: after each commit a run sleeps that many times the time it worked, and still
answers a stop, a pause or a cancel while it sleeps."""

import time

import pytest

from maintenance_tasks.batching import sizing_problems
from maintenance_tasks.engine import Engine
from maintenance_tasks.models import Run
from maintenance_tasks.processor import Processor
from maintenance_tasks.runner import Runner
from maintenance_tasks.status import RunStatus
from testproject.testapp.maintenance import RestingBatches
from testproject.testapp.models import BatchLog, Item

from .conftest import wait_for
from .test_engine import APP, StopAfter

RESTING = APP + "RestingBatches"


@pytest.fixture
def items():
    return Item.objects.bulk_create(Item() for _ in range(60))


def test_sleep_ratio_is_checked():
    for bad in (-1, 101, "1", True, None, float("nan")):
        processor = type("Bad", (Processor,), {"sleep_ratio": bad})
        assert sizing_problems(processor) == [f"sleep_ratio must be a number from 0 to 100, not {bad!r}."]
        assert processor.definition_problems()[-1][0] == "maintenance_tasks.E041"
    for good in (0, 0.5, 100):
        assert sizing_problems(type("Good", (Processor,), {"sleep_ratio": good})) == []
    assert Processor.sleep_ratio == 0


@pytest.mark.django_db
def test_a_run_sleeps_sleep_ratio_times_each_transaction_after_it(items, settings, monkeypatch):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": None}  # one transaction per batch of 20
    monkeypatch.setattr(RestingBatches, "sleep_ratio", 2.0)
    run = Runner.create(RESTING, {"per_item": 0.005})  # at least 0.1 s a batch, three batches
    started = time.monotonic()
    run = Engine(run).perform()
    elapsed = time.monotonic() - started
    assert (run.status, run.tick_count, run.commits) == (RunStatus.SUCCEEDED, 60, 3)
    assert list(Item.objects.values_list("times_processed", flat=True).distinct()) == [1]
    # Each batch worked at least 0.1 s, and was followed by a sleep at least twice as long.
    work = sum(ended - started for started, ended in BatchLog.objects.values_list("started", "ended"))
    assert work >= 0.3
    assert elapsed >= 3 * work
    assert run.time_running >= 3 * work  # the sleeps count as the run's time


@pytest.mark.django_db
def test_a_stop_is_answered_while_the_run_sleeps(items, settings):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": None}
    run = Runner.create(RESTING, {"per_item": 0.005})  # a batch of 0.1 s, then a sleep of 10 s
    # The first look for a stop follows the first commit; the second is during the sleep.
    run = Engine(run, should_stop=StopAfter(2)).perform()
    run.refresh_from_db()
    assert (run.status, run.tick_count, run.commits) == (RunStatus.INTERRUPTED, 20, 1)  # not after a second batch


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("request_name", "ended"), [("pause", RunStatus.PAUSED), ("cancel", RunStatus.CANCELLED)])
def test_pause_and_cancel_from_another_process_are_answered_while_it_sleeps(items, manage, request_name, ended):
    command = manage(
        "run_maintenance_task", RESTING, "--arg", "per_item=0.005", MAINTENANCE_CHECKPOINT_INTERVAL="0.2"
    )  # a batch of 0.1 s, then a sleep of 10 s
    run = wait_for(lambda: Run.objects.filter(status=RunStatus.RUNNING, tick_count=20).first())
    getattr(Runner, request_name)(run)
    command.wait()
    run.refresh_from_db()
    # Answered during the first sleep: no second batch.
    assert (run.status, run.tick_count) == (ended, 20)
    assert Item.objects.filter(times_processed=1).count() == 20
    assert not Item.objects.filter(times_processed__gt=1).exists()
