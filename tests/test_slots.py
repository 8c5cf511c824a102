"""MAX_CONCURRENT_RUNS: runs beyond the cap wait enqueued, take turns, and start as slots free."""

import itertools
import signal

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Q
from django.test import override_settings
from django.utils import timezone
from django_tasks_db.models import DBTaskResult, get_date_max

from maintenance_tasks import Runner
from maintenance_tasks.checks import check_settings
from maintenance_tasks.jobs import perform_run, watchdog
from maintenance_tasks.models import JobChain, Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import BatchLog, Item

from .conftest import wait_for
from .factories import RunFactory, TaskFactory

S = RunStatus
DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "heavy"]}}
SHARDS = "testproject.testapp.maintenance.LogShardBatches"


def capped(cap, **settings):
    return override_settings(MAINTENANCE_TASKS={"SLICE_SECONDS": 1e-6, "MAX_CONCURRENT_RUNS": cap, **settings})


def next_slice():
    """Perform the oldest pending slice job that is due, as one worker taking jobs in order would."""
    due = Q(run_after=get_date_max()) | Q(run_after__lte=timezone.now())
    jobs = DBTaskResult.objects.filter(due, task_path=perform_run.module_path, status="READY")
    job = jobs.order_by("enqueued_at").first()
    if job is None:
        return None
    DBTaskResult.objects.filter(pk=job.pk).update(status="SUCCESSFUL")
    return perform_run.call(*job.args_kwargs["args"])


@pytest.mark.django_db(transaction=True)
def test_a_run_beyond_the_cap_waits_enqueued_and_starts_when_a_slot_frees():
    Item.objects.bulk_create(Item(value=0) for _ in range(5))
    busy = RunFactory(running=True, task=TaskFactory(config={"delay": 0.5}))  # executing elsewhere
    with override_settings(TASKS=DATABASE_TASKS), capped(1):
        run = Runner.run(SHARDS, {"shard": 0})
        assert next_slice() == "waiting"
        run.refresh_from_db()
        assert (run.status, run.attempt, run.tick_count) == (S.ENQUEUED, 0, 0)  # its attempt not consumed
        assert run.waiting_since is not None
        assert next_slice() is None  # nothing wakes it while the slot is taken

        busy.transition_to(S.SUCCEEDED)  # ended elsewhere, without a slice end to wake the line
        Runner.release_slot()
        run.refresh_from_db()
        assert run.waiting_since is None
        while next_slice() is not None:
            pass
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED
    assert BatchLog.objects.filter(shard=0).count() == 1


@pytest.mark.django_db(transaction=True)
def test_runs_beyond_the_cap_take_turns_slice_by_slice():
    Item.objects.bulk_create(Item(value=shard) for shard in range(3) for _ in range(30))
    with override_settings(TASKS=DATABASE_TASKS), capped(1):
        runs = [Runner.run(SHARDS, {"shard": shard}) for shard in range(3)]
        while next_slice() is not None:
            assert Run.objects.filter(status=S.RUNNING).count() == 0  # each slice left its slot
    assert {run.status for run in Run.objects.all()} == {S.SUCCEEDED}
    assert sorted(Item.objects.values_list("times_processed", flat=True)) == [1] * 90
    # Slices in the order they began: the runs took turns, none waited for another to end.
    order = [shard for (shard,) in BatchLog.objects.order_by("started").values_list("shard")]
    assert order == [0, 1, 2] * 3, order
    assert all(run.events.filter(action="started").count() >= 3 for run in runs)


@pytest.mark.django_db(transaction=True)
def test_a_run_waiting_out_a_retry_delay_takes_no_place_in_the_line(request):
    items = Item.objects.bulk_create(Item(value=0) for _ in range(20))
    busy = RunFactory(running=True, task=TaskFactory(config={"delay": 0.5}))  # holds the only slot
    config = {"marker": request.node.name, "fail_at": items[15].pk, "failures": 1}
    with override_settings(TASKS=DATABASE_TASKS), capped(1):
        flaky = Runner.run("testproject.testapp.maintenance.SlowRetryBatches", config)  # retries after 30-60 s
        shards = Runner.run(SHARDS, {"shard": 0})
        assert [next_slice(), next_slice()] == ["waiting", "waiting"]  # in line: flaky, then shards
        busy.transition_to(S.SUCCEEDED)
        Runner.release_slot()
        # flaky's first batch, shards' first batch, then flaky's second batch fails: a retry.
        assert [next_slice(), next_slice(), next_slice()] == [S.ENQUEUED] * 3
        flaky.refresh_from_db()
        assert (flaky.retries, flaky.tick_count, flaky.waiting_since) == (1, 10, None)
        # While flaky waits for retry_at, its deferred slice does not hold up shards, next in line.
        while next_slice() is not None:
            pass
        assert Run.objects.get(pk=shards.pk).status == S.SUCCEEDED
        flaky.refresh_from_db()
        assert flaky.status == S.ENQUEUED and flaky.retry_at > timezone.now()
        assert slice_jobs_due_later(flaky) == 1


def slice_jobs_due_later(run):
    jobs = DBTaskResult.objects.filter(task_path=perform_run.module_path, status="READY", args_kwargs__args__0=run.pk)
    return jobs.filter(run_after__gt=timezone.now()).exclude(run_after=get_date_max()).count()


@pytest.mark.django_db(transaction=True)
def test_the_watchdog_lets_a_waiting_run_in_when_a_slot_frees_without_a_slice_end():
    busy = RunFactory(running=True, task=TaskFactory(config={"delay": 0.5}))  # holds the only slot
    with override_settings(TASKS=DATABASE_TASKS), capped(1):
        run = Runner.run(SHARDS, {"shard": 0})
        assert next_slice() == "waiting"
        token = JobChain.objects.get(name="watchdog").token
        DBTaskResult.objects.all().delete()
        assert watchdog.call(token) == "recovered 0"
        assert next_slice() is None  # still no slot: it waits in line, no job for it
        Run.objects.filter(pk=busy.pk).update(status=S.SUCCEEDED)  # the slot frees with nobody to say so
        assert watchdog.call(token + 1) == "recovered 0"
        run.refresh_from_db()
        assert run.waiting_since is None  # out of the line, with a slice
        assert next_slice() not in (None, "waiting")  # a slice claims it


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_max_concurrent_runs_must_be_none_or_a_positive_integer(value):
    with override_settings(MAINTENANCE_TASKS={"MAX_CONCURRENT_RUNS": value}):
        assert [error.id for error in check_settings()] == ["maintenance_tasks.E005"]


def test_max_concurrent_runs_none_or_positive_passes():
    for value in (None, 1, 8):
        with override_settings(MAINTENANCE_TASKS={"MAX_CONCURRENT_RUNS": value}):
            assert check_settings() == []


# -- real db_worker processes ------------------------------------------------------------------

WORKER_ENV = {
    "TASKS_BACKEND": "database",
    "MAINTENANCE_CHECKPOINT_INTERVAL": "0.1",
    "MAINTENANCE_STALE_AFTER": "3",
    "MAINTENANCE_SLICE_SECONDS": "0.2",
    "MAINTENANCE_MAX_CONCURRENT_RUNS": "2",
    "DJANGO_DEBUG": "false",
}


def most_at_once(intervals):
    """Return the most intervals (start, end, key) that overlap at one moment, counting keys once."""
    edges = sorted(itertools.chain.from_iterable(((start, 1, key), (end, -1, key)) for start, end, key in intervals))
    open_, most = {}, 0
    for _, step, key in edges:  # an end sorts before a start at the same instant
        open_[key] = open_.get(key, 0) + step
        most = max(most, sum(1 for n in open_.values() if n > 0))
    return most


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_db_workers_never_run_more_than_the_cap_at_once(manage):
    if connection.vendor == "mysql" and not connection.features.has_select_for_update_skip_locked:
        pytest.skip("db_worker needs SELECT ... SKIP LOCKED")
    if connection.vendor == "sqlite":
        pytest.skip("one writer at a time: SQLite never runs two batches at once anyway")
    Item.objects.bulk_create(Item(value=shard) for shard in range(6) for _ in range(40))
    with override_settings(TASKS=DATABASE_TASKS), capped(2, SLICE_SECONDS=0.2):
        runs = [Runner.run(SHARDS, {"shard": shard, "delay": 0.05}) for shard in range(6)]
    workers = [
        manage("db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.05", "--worker-id", f"w{n}", "-v0",
               **WORKER_ENV)
        for n in range(4)
    ]  # fmt: skip
    try:
        wait_for(lambda: not Run.objects.active().exists(), timeout=120, interval=0.25)
    finally:
        for worker in workers:
            worker.signal(signal.SIGKILL)
            worker.wait(timeout=30)
    assert {run.status for run in Run.objects.filter(pk__in=[run.pk for run in runs])} == {S.SUCCEEDED}
    assert sorted(set(Item.objects.values_list("times_processed", flat=True))) == [1]
    batches = list(BatchLog.objects.values_list("started", "ended", "shard"))
    assert most_at_once(batches) == 2  # the cap was reached, never passed
    assert Run.objects.filter(events__action="started").distinct().count() == 6


@pytest.mark.django_db(transaction=True)
def test_the_end_of_a_foreground_run_wakes_a_waiting_run():
    Item.objects.bulk_create(Item(value=shard) for shard in (0, 1) for _ in range(5))
    busy = RunFactory(running=True, task=TaskFactory(config={"delay": 0.5}))
    with override_settings(TASKS=DATABASE_TASKS), capped(1):
        waiting = Runner.run(SHARDS, {"shard": 0})
        assert next_slice() == "waiting"
        busy.transition_to(S.SUCCEEDED)  # ended without waking anyone
        call_command("run_maintenance_task", SHARDS, "--config", '{"shard": 1}', verbosity=0)
        waiting.refresh_from_db()
        assert waiting.waiting_since is None  # the command handed its slot on
        while next_slice() is not None:
            pass
    waiting.refresh_from_db()
    assert waiting.status == S.SUCCEEDED
