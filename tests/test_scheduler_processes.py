"""Several schedulers in real processes on one database: each due run starts exactly once."""

import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from maintenance_tasks.models import Run, Schedule

from .conftest import ROOT, child_env, deadline, wait_for
from .factories import TaskFactory

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

INCREMENT = "testproject.testapp.maintenance.IncrementItems"
SCHEDULERS = 3
SCHEDULES = 60
# Runs are only enqueued: no worker performs them.
ENV = {"TASKS_BACKEND": "database", "DJANGO_DEBUG": "false"}


def due_schedules(count, **fields):
    schedules = []
    for i in range(count):
        task = TaskFactory(processor=INCREMENT, config={"delay": float(i), "fail_at": None})
        schedules.append(Schedule.objects.create(task=task, **fields))
    return schedules


def assert_each_started_once(schedules):
    per_schedule = dict(
        Run.objects.values_list("metadata__schedule").annotate(n=Count("id")).values_list("metadata__schedule", "n")
    )
    assert per_schedule == {schedule.pk: 1 for schedule in schedules}
    for schedule in Schedule.objects.all():
        assert schedule.last_run is not None


def test_racing_passes_start_each_due_run_exactly_once(tmp_path):
    schedules = due_schedules(SCHEDULES, cron="*/5 * * * *", next_run_at=timezone.now() - timedelta(minutes=1))
    barrier = tmp_path / "go"
    racers = []
    for i in range(SCHEDULERS):
        ready = tmp_path / f"ready-{i}"
        racers.append(
            (
                ready,
                subprocess.Popen(
                    [sys.executable, "tests/scheduler_racer.py", str(ready), str(barrier)],
                    cwd=ROOT,
                    # Each run is performed in the racer and ends at once (no items), so that
                    # the one-active-run constraint cannot hide a due time started twice.
                    env=child_env(TASKS_BACKEND="immediate", DJANGO_DEBUG="false"),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    try:
        wait_for(lambda: all(ready.exists() for ready, _ in racers), timeout=60)
        barrier.touch()  # all at once
        outputs = [process.communicate(timeout=deadline(120)) for _, process in racers]
    finally:
        for _, process in racers:
            if process.poll() is None:
                process.kill()
                process.communicate()
    for (_, process), (_out, err) in zip(racers, outputs, strict=True):
        assert process.returncode == 0, err
    assert_each_started_once(schedules)
    assert set(Run.objects.values_list("status", flat=True)) == {"succeeded"}
    by_process = Counter(Run.objects.values_list("metadata__pid", flat=True))
    print(f"runs started per scheduler process: {sorted(by_process.values())}")  # noqa: T201


def test_scheduler_loops_start_each_run_once_and_exit_on_sigterm(manage):
    due = timezone.now() + timedelta(seconds=3)
    schedules = due_schedules(20, run_at=due, next_run_at=due)
    loops = [manage("maintenance_scheduler", MAINTENANCE_SCHEDULER_INTERVAL="0.5", **ENV) for _ in range(SCHEDULERS)]
    wait_for(lambda: not Schedule.objects.filter(last_run__isnull=True).exists(), timeout=90, interval=0.2)
    for loop in loops:
        loop.signal(signal.SIGTERM)
    for loop in loops:
        returncode, out, err = loop.wait(timeout=30)
        assert returncode == 0, err
        assert "Scheduler stopped." in out
    assert_each_started_once(schedules)
    assert not Schedule.objects.exclude(next_run_at=None).exists()


def test_once_starts_due_runs_and_reports_them(manage):
    [schedule] = due_schedules(1, cron="0 3 * * *", next_run_at=timezone.now() - timedelta(seconds=1))
    returncode, out, err = manage("maintenance_scheduler", "--once", **ENV).wait()
    assert returncode == 0, err
    run = Run.objects.get()
    assert f"Started run {run.pk} of {schedule.task}." in out
    assert run.metadata["source"] == "schedule"


def test_a_worker_runs_the_scheduler_with_no_extra_process(manage):
    from django.test import override_settings
    from django_tasks_db.models import DBTaskResult

    from maintenance_tasks.scheduling import ensure_scheduler, scheduler_job

    if connection.vendor == "mysql" and not connection.features.has_select_for_update_skip_locked:
        pytest.skip("db_worker needs SELECT ... SKIP LOCKED")
    worker_env = {**ENV, "MAINTENANCE_SCHEDULER_INTERVAL": "0.5"}
    with override_settings(TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}):
        assert ensure_scheduler() is True
    passes = DBTaskResult.objects.filter(task_path=scheduler_job.module_path)
    manage("db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.05", "-v0", **worker_env)
    # The schedules come once the chain's first pass is over, so that a later pass, enqueued by
    # that one, starts them. (Due before the worker was up, the first pass would start them and
    # their runs could end before the second pass ran.)
    wait_for(lambda: passes.filter(status="SUCCESSFUL").exists(), timeout=60, interval=0.1)
    due = timezone.now() + timedelta(seconds=1)
    schedules = due_schedules(3, run_at=due, next_run_at=due)
    queued = []

    def all_ran():
        queued.append(passes.filter(status="READY").count())
        return not Run.objects.exclude(status="succeeded").exists() and Run.objects.count() == len(schedules)

    wait_for(all_ran, timeout=90, interval=0.1)
    assert_each_started_once(schedules)
    assert max(queued) == 1  # one job of the chain queued at a time
    done = passes.filter(status="SUCCESSFUL").count()
    assert done >= 2  # it went on by itself
