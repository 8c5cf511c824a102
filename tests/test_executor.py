"""The background executor in this process: slices, duplicate jobs, recovery of stale runs."""

import datetime
import os
import signal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models.signals import post_save
from django.test import override_settings
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from maintenance_tasks import Runner
from maintenance_tasks.checks import check_processors, check_settings
from maintenance_tasks.exceptions import InvalidRouting
from maintenance_tasks.jobs import ensure_watchdog, perform_run, slice_job, watchdog
from maintenance_tasks.models import Run, RunEvent
from maintenance_tasks.registry import registry
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item, Seen

from .factories import RunFactory, TaskFactory

S = RunStatus
DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


def slices(**settings):
    return override_settings(MAINTENANCE_TASKS={"SLICE_SECONDS": 1e-6, **settings})


def slice_jobs(*args):
    return DBTaskResult.objects.filter(task_path="maintenance_tasks.jobs.perform_run", args_kwargs__args=list(args))


def actions(run):
    return list(run.events.values_list("action", flat=True))


@pytest.mark.django_db(transaction=True)
def test_immediate_backend_performs_every_slice_in_runner_run_without_recursion():
    with slices():
        run = Runner.run("testproject.testapp.maintenance.RecordStackDepth", {"n": 40})
    assert run.status == S.SUCCEEDED
    assert run.tick_count == 40
    assert actions(run).count("slice_ended") == 40  # one batch per slice, then one empty slice
    assert run.attempt == 41
    depths = [int(value) for value in Seen.objects.order_by("pk").values_list("value", flat=True)]
    # The first slice runs at the top; every later one one level down, in the loop: not deeper and deeper.
    assert len(set(depths[1:])) == 1, depths


@pytest.mark.django_db(transaction=True)
def test_a_slice_hands_the_run_back_and_a_duplicate_job_does_nothing():
    Item.objects.bulk_create(Item() for _ in range(30))
    with override_settings(TASKS=DATABASE_TASKS), slices():
        run = Runner.run("testproject.testapp.maintenance.IncrementItems")
        assert run.status == S.ENQUEUED
        jobs = DBTaskResult.objects.filter(task_path="maintenance_tasks.jobs.perform_run")
        assert [job.args_kwargs["args"] for job in jobs] == [[run.pk, 0]]

        assert perform_run.call(run.pk, 0) == S.ENQUEUED  # one batch of 10, then handed back
        run.refresh_from_db()
        assert (run.status, run.attempt, run.tick_count) == (S.ENQUEUED, 1, 10)
        assert perform_run.call(run.pk, 0) == S.ENQUEUED  # the same job again: its token is gone
        run.refresh_from_db()
        assert (run.attempt, run.tick_count) == (1, 10)
        assert sorted(job.args_kwargs["args"] for job in jobs.all()) == [[run.pk, 0], [run.pk, 1]]

        while run.status == S.ENQUEUED:
            perform_run.call(run.pk, run.attempt)
            run.refresh_from_db()
    assert run.status == S.SUCCEEDED
    assert sorted(Item.objects.values_list("times_processed", flat=True)) == [1] * 30
    # One watchdog chain watches over every run: one job, however many slices.
    assert DBTaskResult.objects.filter(task_path="maintenance_tasks.jobs.watchdog").count() == 1


@pytest.mark.django_db(transaction=True)
def test_pause_between_slices_is_at_once_and_resume_enqueues_a_slice():
    Item.objects.bulk_create(Item() for _ in range(20))
    with override_settings(TASKS=DATABASE_TASKS), slices():
        run = Runner.run("testproject.testapp.maintenance.IncrementItems")
        perform_run.call(run.pk, 0)
        Runner.pause(run)
        assert run.status == S.PAUSED
        assert perform_run.call(run.pk, 1) == S.PAUSED  # the pending slice finds it paused
        Runner.resume(run)
        run.refresh_from_db()
        assert run.status == S.ENQUEUED
        assert slice_jobs(run.pk, 1).count() == 2
        while run.status == S.ENQUEUED:
            perform_run.call(run.pk, run.attempt)
            run.refresh_from_db()
    assert run.status == S.SUCCEEDED
    assert sorted(Item.objects.values_list("times_processed", flat=True)) == [1] * 20


@pytest.mark.django_db(transaction=True)
def test_recover_takes_over_stale_runs_only_and_is_idempotent():
    Item.objects.bulk_create(Item() for _ in range(5))
    old = timezone.now() - datetime.timedelta(seconds=120)
    stale_running = RunFactory(running=True, heartbeat_at=old, attempt=3)
    stale_pausing = RunFactory(pausing=True, heartbeat_at=old, task=TaskFactory(config={"delay": 0.5}))
    stale_cancelling = RunFactory(cancelling=True, heartbeat_at=old, task=TaskFactory(config={"delay": 0.25}))
    fresh = RunFactory(running=True, task=TaskFactory(config={"delay": 0.125}))
    with override_settings(TASKS=DATABASE_TASKS):
        recovered = Runner.recover()
    assert sorted(run.pk for run in recovered) == sorted([stale_running.pk, stale_pausing.pk, stale_cancelling.pk])
    for run in (stale_running, stale_pausing, stale_cancelling, fresh):
        run.refresh_from_db()
    assert (stale_running.status, stale_running.attempt) == (S.ENQUEUED, 4)
    assert (stale_pausing.status, stale_pausing.attempt) == (S.PAUSED, 1)
    assert stale_cancelling.status == S.CANCELLED
    assert fresh.status == S.RUNNING
    event = stale_running.events.get(action="recovered")
    assert (event.from_status, event.to_status, event.detail["stale_attempt"]) == (S.RUNNING, S.ENQUEUED, 3)
    assert slice_jobs(stale_running.pk, 4).count() == 1

    with override_settings(TASKS=DATABASE_TASKS):
        assert Runner.recover() == []
        assert perform_run.call(stale_running.pk, 4) == S.SUCCEEDED  # goes on from its cursor
    assert sorted(Item.objects.values_list("times_processed", flat=True)) == [1] * 5


@pytest.mark.django_db(transaction=True)
def test_the_old_executor_cannot_write_after_recovery():
    run = RunFactory(running=True, attempt=2, heartbeat_at=timezone.now() - datetime.timedelta(seconds=120))
    Runner.recover()  # ImmediateBackend: the new slice runs here and finishes the (empty) run
    run.refresh_from_db()
    assert (run.status, run.attempt) == (S.SUCCEEDED, 4)
    assert not Run.objects.filter(pk=run.pk, attempt=2).update(cursor="x")  # what a token-guarded write sees


@pytest.mark.django_db(transaction=True)
def test_recover_command_reports_what_it_did():
    old = timezone.now() - datetime.timedelta(seconds=120)
    run = RunFactory(pausing=True, heartbeat_at=old)
    out = StringIO()
    call_command("recover_maintenance_runs", stdout=out)
    assert f"Run {run.pk}: pausing -> paused" in out.getvalue()
    out = StringIO()
    call_command("recover_maintenance_runs", stdout=out)
    assert "No stale runs" in out.getvalue()
    assert actions(run) == ["recovered"]
    assert run.events.get().source == "cli"


@pytest.mark.django_db(transaction=True)
def test_one_watchdog_chain_recovers_runs_and_renews_itself():
    old = timezone.now() - datetime.timedelta(seconds=120)
    other = RunFactory(cancelling=True, heartbeat_at=old)
    run = RunFactory(running=True, attempt=5, task=TaskFactory(config={"delay": 0.5}))
    watchdogs = DBTaskResult.objects.filter(task_path="maintenance_tasks.jobs.watchdog")
    with override_settings(TASKS=DATABASE_TASKS):
        assert ensure_watchdog() is True
        assert ensure_watchdog() is False  # alive: no second chain
        [token] = [job.args_kwargs["args"][0] for job in watchdogs.all()]
        assert watchdog.call(token) == "recovered 1"
        other.refresh_from_db()
        assert other.status == S.CANCELLED
        later = watchdogs.get(args_kwargs__args=[token + 1])  # the next one, half of STALE_AFTER later
        assert 0 < (later.run_after - later.enqueued_at).total_seconds() <= 31
        assert watchdog.call(token) == "superseded"  # a duplicate does nothing, enqueues nothing
        assert sorted(job.args_kwargs["args"] for job in watchdogs.all()) == [[token], [token + 1]]

        # A run left enqueued for STALE_AFTER whose job is gone gets a slice again...
        Run.objects.filter(pk=run.pk).update(status=S.ENQUEUED, updated_at=old)
        DBTaskResult.objects.all().delete()
        assert watchdog.call(token + 1) == "recovered 1"
        [job] = slice_jobs(run.pk, 5)
        run.refresh_from_db()
        assert run.job_id == str(job.pk)
        # ... but not while that job waits for a worker.
        Run.objects.filter(pk=run.pk).update(updated_at=old)
        assert watchdog.call(token + 2) == "recovered 0"
        assert slice_jobs(run.pk, 5).count() == 1

        # With no active run left, the chain stops; the next enqueued run starts it again.
        Run.objects.filter(pk=run.pk).update(status=S.CANCELLED)
        assert watchdog.call(token + 3) == "recovered 0; no active run: the chain stops"
        assert ensure_watchdog() is True


@pytest.mark.parametrize("value", [0, -1, "60", True])
def test_slice_seconds_must_be_a_positive_number(value):
    with override_settings(MAINTENANCE_TASKS={"SLICE_SECONDS": value}):
        assert [error.id for error in check_settings()] == ["maintenance_tasks.E003"]


# -- routing: queue_name and priority ----------------------------------------------------------

HEAVY = "testproject.testapp.maintenance.HeavyShardBatches"
HEAVY_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "heavy"]}}


@pytest.mark.django_db(transaction=True)
def test_a_processor_routes_its_slices_to_its_queue_with_its_priority():
    Item.objects.bulk_create(Item(value=0) for _ in range(20))
    with override_settings(TASKS=HEAVY_TASKS), slices():
        run = Runner.run(HEAVY, {"shard": 0})
        assert perform_run.call(run.pk, 0) == S.ENQUEUED  # the next slice is routed the same way
        Runner.run("testproject.testapp.maintenance.LogShardBatches", {"shard": 1})
    jobs = DBTaskResult.objects.filter(task_path=perform_run.module_path)
    routes = {(job.args_kwargs["args"][0], job.args_kwargs["args"][1], job.queue_name, job.priority) for job in jobs}
    assert routes == {(run.pk, 0, "heavy", 10), (run.pk, 1, "heavy", 10), (run.pk + 1, 0, "default", 0)}


@pytest.mark.django_db(transaction=True)
def test_an_undeclared_queue_is_refused_before_anything_is_saved():
    with override_settings(TASKS=DATABASE_TASKS), pytest.raises(InvalidRouting) as caught:
        Runner.run(HEAVY, {"shard": 0})
    assert str(caught.value).startswith(f"{HEAVY} routes its runs to queue 'heavy' with priority 10")
    assert "declared queues: default" in str(caught.value)
    assert not Run.objects.exists() and not DBTaskResult.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_resume_to_an_undeclared_queue_is_refused_and_the_run_stays_paused():
    run = RunFactory(paused=True, task=TaskFactory(processor=HEAVY, config={"shard": 0, "delay": 0.0}))
    with override_settings(TASKS=DATABASE_TASKS), pytest.raises(InvalidRouting):
        Runner.resume(run)
    run.refresh_from_db()
    assert run.status == S.PAUSED


def test_an_undeclared_queue_is_a_system_check_error():
    with override_settings(TASKS=DATABASE_TASKS):
        errors = [error for error in check_processors() if error.id == "maintenance_tasks.E006"]
    assert len(errors) == 1
    assert errors[0].obj.__name__ == "HeavyShardBatches"
    assert f"{HEAVY} routes its runs to queue 'heavy'" in errors[0].msg
    with override_settings(TASKS=HEAVY_TASKS):
        assert not [error for error in check_processors() if error.id == "maintenance_tasks.E006"]


def test_priority_is_left_out_on_a_backend_without_priorities():
    with override_settings(TASKS={"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default", "heavy"]}}):
        routed = slice_job(registry.get(HEAVY))
    assert (routed.queue_name, routed.priority) == ("heavy", 0)


# -- retries in the background -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_retry_is_deferred_to_retry_at_and_an_early_job_does_nothing(request):
    items = Item.objects.bulk_create(Item() for _ in range(20))
    config = {"marker": request.node.name, "fail_at": items[15].pk, "failures": 1}
    with override_settings(TASKS=DATABASE_TASKS):
        run = Runner.run("testproject.testapp.maintenance.SlowRetryBatches", config)
        before = timezone.now()
        assert perform_run.call(run.pk, 0) == S.ENQUEUED  # the second batch failed
        run.refresh_from_db()
        assert (run.retries, run.attempt, run.tick_count) == (1, 1, 10)
        assert 30 <= (run.retry_at - before).total_seconds() <= 61  # retry_backoff 60, jitter in the upper half
        assert slice_jobs(run.pk, 1).get().run_after == run.retry_at
        event = run.events.get(action="retry")
        assert (event.from_status, event.to_status, event.detail["retry"]) == (S.RUNNING, S.ENQUEUED, 1)

        assert perform_run.call(run.pk, 1) == "retry later"  # a job that comes early does nothing
        old = timezone.now() - datetime.timedelta(hours=1)
        Run.objects.filter(pk=run.pk).update(updated_at=old)
        assert Runner.recover() == []  # not lost: it waits for retry_at

        Run.objects.filter(pk=run.pk).update(retry_at=old)
        assert perform_run.call(run.pk, 1) == S.SUCCEEDED  # from its cursor
    run.refresh_from_db()
    assert run.retry_at is None
    assert sorted(Item.objects.values_list("times_processed", flat=True)) == [1] * 20


@pytest.mark.django_db(transaction=True)
def test_a_signal_between_in_process_slices_leaves_the_run_interrupted_not_stranded():
    Item.objects.bulk_create(Item() for _ in range(30))

    def sigterm_after_slice(sender, instance, created, **kwargs):
        if instance.action == "slice_ended":  # the slice is over; the next one is pending in the loop
            os.kill(os.getpid(), signal.SIGTERM)

    post_save.connect(sigterm_after_slice, sender=RunEvent)
    try:
        with slices():
            run = Runner.run("testproject.testapp.maintenance.IncrementItems")
    finally:
        post_save.disconnect(sigterm_after_slice, sender=RunEvent)
    assert (run.status, run.tick_count) == (S.INTERRUPTED, 10)
    assert actions(run)[-2:] == ["slice_ended", "interrupted"]
    with slices():
        Runner.resume(run)
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED
    assert sorted(Item.objects.values_list("times_processed", flat=True)) == [1] * 30
