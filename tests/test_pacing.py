"""``sleep_ratio``: after each commit a run sleeps that many times the time it worked, and still
answers a stop, a pause or a cancel while it sleeps."""

import io
import time

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

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
        "run_maintenance_task", RESTING, "--arg", "per_item=0.01", MAINTENANCE_CHECKPOINT_INTERVAL="0.2"
    )  # a batch of 0.2 s, then a sleep of 20 s at least
    run = wait_for(lambda: Run.objects.filter(status=RunStatus.RUNNING, tick_count=20).first())
    getattr(Runner, request_name)(run)
    command.wait()
    run.refresh_from_db()
    # Answered during the first sleep: no second batch.
    assert (run.status, run.tick_count) == (ended, 20)
    assert Item.objects.filter(times_processed=1).count() == 20
    assert not Item.objects.filter(times_processed__gt=1).exists()


# -- a run's own sleep_ratio, and tuning it while it goes on -------------------------------------


@pytest.mark.django_db
def test_a_run_of_its_own_sleep_ratio_keeps_it_whatever_the_processor_says(items, settings):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": None}
    run = Runner.create(RESTING, {"per_item": 0.005}, sleep_ratio=0)  # 0 is a value: no sleep, not the processor's
    assert run.events.get(action="created").detail["sleep_ratio"] == 0
    # Without a sleep the second look for a stop follows the second commit.
    run = Engine(run, should_stop=StopAfter(2)).perform()
    run.refresh_from_db()
    assert (run.status, run.tick_count, run.sleep_ratio) == (RunStatus.INTERRUPTED, 40, 0.0)


@pytest.mark.django_db
def test_tune_sets_the_sleep_ratio_at_the_next_commit_and_audits_it(items, settings):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": None, "CHECKPOINT_INTERVAL": 0.001}
    run = Runner.create(RESTING, {"per_item": 0.005}, sleep_ratio=0)
    looks = []

    def should_stop():
        looks.append(1)
        if len(looks) == 1:  # after the first commit: sleep a hundred times as long from now on
            Run.objects.get(pk=run.pk).tune(sleep_ratio=100)
        return len(looks) == 3  # the third look: during the sleep after the second commit, if tuned

    run = Engine(run, should_stop=should_stop).perform()
    run.refresh_from_db()
    assert (run.status, run.tick_count, run.sleep_ratio) == (RunStatus.INTERRUPTED, 40, 100.0)
    assert run.events.get(action="tune").detail["sleep_ratio"] == [0.0, 100]


@pytest.mark.django_db
def test_a_bad_sleep_ratio_of_a_run_is_refused_with_nothing_saved(items):
    with pytest.raises(ValidationError) as raised:
        Runner.create(RESTING, sleep_ratio=-1)
    assert raised.value.message_dict == {"sleep_ratio": ["sleep_ratio must be a number from 0 to 100, not -1."]}
    assert not Run.objects.exists()
    run = Runner.create(RESTING)
    with pytest.raises(ValidationError, match="sleep_ratio must be a number from 0 to 100, not 101"):
        run.tune(sleep_ratio=101)
    assert not run.events.filter(action="tune").exists()


@pytest.mark.django_db
def test_run_maintenance_task_takes_a_sleep_ratio_and_refuses_a_bad_one(items, settings):
    settings.MAINTENANCE_TASKS = {"BATCH_TIME": None}
    call_command("run_maintenance_task", RESTING, "--sleep-ratio", "0", stdout=io.StringIO(), stderr=io.StringIO())
    run = Run.objects.get()
    assert (run.status, run.sleep_ratio, run.tick_count) == (RunStatus.SUCCEEDED, 0.0, 60)
    for bad, shown in (("-2", "-2.0"), ("often", "'often'")):
        with pytest.raises(CommandError, match=rf"^--sleep-ratio must be a number from 0 to 100, not {shown}\.$"):
            call_command("run_maintenance_task", RESTING, "--sleep-ratio", bad)
    assert Run.objects.count() == 1
