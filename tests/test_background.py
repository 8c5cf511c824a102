"""Runs performed by real ``db_worker`` processes: killed, stopped and fed duplicate jobs meanwhile.

Many runs share one table (one shard of it each). While workers perform them, one worker is
killed with SIGKILL in the middle of a slice, another one gets SIGTERM, and slices are enqueued
twice. In the end every run has succeeded, every row was updated exactly once, and the batches
of each run, logged in the batch's own transaction, never overlap in time.
"""

import itertools
import signal

import pytest
from django.db import connection
from django.db.models import Count, Sum
from django.test import override_settings
from django_tasks_db.models import DBTaskResult

from maintenance_tasks import Runner
from maintenance_tasks.jobs import perform_run
from maintenance_tasks.models import Run, RunEvent
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import BatchLog, Item

from .conftest import active_runs_lines, wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

S = RunStatus
ITEMS_PER_RUN = 600  # 60 batches of 0.05 s: about 3 s of work per run
SETTINGS = {"CHECKPOINT_INTERVAL": 0.1, "STALE_AFTER": 2.0, "SLICE_SECONDS": 0.3}
WORKER_ENV = {
    "TASKS_BACKEND": "database",
    "MAINTENANCE_CHECKPOINT_INTERVAL": "0.1",
    "MAINTENANCE_STALE_AFTER": "2",
    "MAINTENANCE_SLICE_SECONDS": "0.3",
    "DJANGO_DEBUG": "false",
}
# Workers per database: SQLite has one writer at a time.
WORKERS = {"postgresql": 4, "mysql": 2, "sqlite": 1}
# Two runs per worker keep the test short; tests/test_load.py enqueues 1,000 runs at once. (With a
# watchdog job per slice, many runs per worker used to flood the queue with watchdogs.)
RUNS = {vendor: 2 * workers for vendor, workers in WORKERS.items()}


class Pool:
    """db_worker processes, each with a known worker id."""

    def __init__(self, manage):
        self.manage = manage
        self.numbers = itertools.count()
        self.workers = {}

    def start(self):
        worker_id = f"worker-{next(self.numbers)}"
        self.workers[worker_id] = self.manage(
            "db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.05", "--worker-id", worker_id, "-v0",
            **WORKER_ENV,
        )  # fmt: skip
        return worker_id

    def stop_all(self):
        """Kill the workers still alive; return what every worker wrote on stderr."""
        errors = {}
        for worker_id, command in self.workers.items():
            if command.process.poll() is None:
                command.signal(signal.SIGKILL)
            errors[worker_id] = command.wait(timeout=30)[2]  # closes its pipes
        return errors

    def live(self):
        return {worker_id: command for worker_id, command in self.workers.items() if command.process.poll() is None}

    def at_work(self):
        """Return (worker id, run) for a live worker in the middle of a slice, if any."""
        jobs = DBTaskResult.objects.filter(task_path=perform_run.module_path, status="RUNNING")
        live = self.live()
        for job in jobs:
            worker_id = job.worker_ids[-1]
            run_id, attempt = job.args_kwargs["args"]
            # The job that claimed the run moved its token to attempt + 1 (a duplicate job did not).
            run = Run.objects.filter(pk=run_id, attempt=attempt + 1, status=S.RUNNING, tick_count__gt=0).first()
            if worker_id in live and run is not None:
                return worker_id, run
        return None


def hit_mid_slice(pool, stop, held):
    """Stop a worker (``stop``) in the middle of a slice; retry until ``held(run, worker)`` confirms it."""
    for _ in range(5):
        worker_id, run = wait_for(pool.at_work, timeout=60)
        command = pool.workers[worker_id]
        stop(command)
        pool.start()
        if held(run, command):
            return run, command
    raise AssertionError("could not stop a worker in the middle of a slice")


def describe_active(pool):
    lines = active_runs_lines()
    for job in DBTaskResult.objects.exclude(status="SUCCESSFUL").order_by("enqueued_at"):
        lines.append(f"  job {job.task_path} {job.args_kwargs['args']} {job.status} {job.run_after} {job.worker_ids}")
    for worker_id, err in pool.stop_all().items():
        lines.append(f"  {worker_id}: {err[-2000:]}")
    return "\n".join(lines)


def seed(runs):
    Item.objects.bulk_create(Item(value=shard) for shard in range(runs) for _ in range(ITEMS_PER_RUN))
    return [
        Runner.run("testproject.testapp.maintenance.LogShardBatches", {"shard": shard, "delay": 0.05})
        for shard in range(runs)
    ]


def test_runs_go_on_through_kill_sigterm_and_duplicate_jobs(manage):
    vendor = connection.vendor
    if vendor == "mysql" and not connection.features.has_select_for_update_skip_locked:
        pytest.skip("db_worker needs SELECT ... SKIP LOCKED")
    pool = Pool(manage)
    with override_settings(TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}):
        with override_settings(MAINTENANCE_TASKS=SETTINGS):
            runs = seed(RUNS[vendor])
        assert {run.status for run in runs} == {S.ENQUEUED}
        for _ in range(WORKERS[vendor]):
            pool.start()

        # kill -9 a worker in the middle of a slice; a new one takes its place. The run is
        # left running with the dead worker's attempt (and its job row left RUNNING).
        def still_held(run, command):
            return Run.objects.filter(pk=run.pk, status=S.RUNNING, attempt=run.attempt).exists()

        def kill(command):
            command.signal(signal.SIGKILL)
            command.wait(timeout=30)

        killed_run, _ = hit_mid_slice(pool, kill, still_held)

        # A slice enqueued twice: the same token twice, and an old token.
        for run in Run.objects.filter(status__in=[S.ENQUEUED, S.RUNNING]).exclude(pk=killed_run.pk)[:3]:
            perform_run.enqueue(run.pk, run.attempt)
            perform_run.enqueue(run.pk, max(0, run.attempt - 1))

        # SIGTERM to a worker in the middle of a slice: it gives the run back and exits at once.
        def sigterm(command):
            command.signal(signal.SIGTERM)
            returncode, out, err = command.wait(timeout=60)
            assert returncode == 0, err

        def given_back(run, command):
            return RunEvent.objects.filter(run=run, action="requeue", detail__pid=command.process.pid).exists()

        stopped_run, stopped = hit_mid_slice(pool, sigterm, given_back)

        try:
            wait_for(lambda: not Run.objects.active().exists(), timeout=120, interval=0.25)
        except AssertionError:
            pytest.fail(describe_active(pool))
        pool.stop_all()

    statuses = dict(Run.objects.values_list("status").annotate(n=Count("id")))
    assert statuses == {S.SUCCEEDED: len(runs)}
    # Every row updated exactly once: no batch applied twice, none skipped.
    assert dict(Item.objects.values_list("times_processed").annotate(n=Count("id"))) == {1: len(runs) * ITEMS_PER_RUN}
    logged = BatchLog.objects.values("shard").annotate(items=Sum("size"), batches=Count("id"))
    assert {row["shard"]: row["items"] for row in logged} == dict.fromkeys(range(len(runs)), ITEMS_PER_RUN)
    assert not BatchLog.objects.values("shard", "first_pk").annotate(n=Count("id")).filter(n__gt=1).exists()
    # No two executors worked on one run at the same time: its committed batches never overlap.
    for shard in range(len(runs)):
        batches = list(BatchLog.objects.filter(shard=shard).order_by("started").values_list("started", "ended", "pid"))
        for (_, end, pid), (start, _, next_pid) in itertools.pairwise(batches):
            assert end <= start, f"shard {shard}: a batch of process {next_pid} began before one of {pid} ended"

    # The killed worker's run was taken over after STALE_AFTER, with a new attempt.
    recovered = RunEvent.objects.get(run=killed_run, action="recovered")
    assert recovered.from_status == S.RUNNING and recovered.source == "watchdog"
    # The stopped worker's run was interrupted, then given back to the queue by that worker.
    actions = list(RunEvent.objects.filter(run=stopped_run).values_list("action", "detail__pid"))
    assert ("requeue", stopped.process.pid) in actions
    assert actions[actions.index(("requeue", stopped.process.pid)) - 1][0] == "interrupted"
    # Slices took turns: runs were sliced, so every run took several attempts.
    assert all(run.attempt > 1 for run in Run.objects.all())


def test_a_heavy_queue_worker_performs_heavy_runs_and_a_default_worker_does_not(manage):
    if connection.vendor == "mysql" and not connection.features.has_select_for_update_skip_locked:
        pytest.skip("db_worker needs SELECT ... SKIP LOCKED")
    Item.objects.bulk_create(Item(value=shard) for shard in range(4) for _ in range(30))
    tasks = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "heavy"]}}
    with override_settings(TASKS=tasks, MAINTENANCE_TASKS=SETTINGS):
        heavy = [Runner.run("testproject.testapp.maintenance.HeavyShardBatches", {"shard": n}) for n in (0, 1)]
        light = [Runner.run("testproject.testapp.maintenance.LogShardBatches", {"shard": n}) for n in (2, 3)]
    workers = {
        queue: manage(
            "db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.05", "--queue-name", queue,
            "--worker-id", f"{queue}-worker", "-v0", **WORKER_ENV,
        )
        for queue in ("default", "heavy")
    }  # fmt: skip
    try:
        wait_for(lambda: not Run.objects.active().exists(), timeout=90, interval=0.25)
    finally:
        for command in workers.values():
            command.signal(signal.SIGKILL)
            command.wait(timeout=30)
    assert set(Run.objects.values_list("status", flat=True)) == {S.SUCCEEDED}
    for runs, queue in ((heavy, "heavy"), (light, "default")):
        for run in runs:
            jobs = DBTaskResult.objects.filter(task_path=perform_run.module_path, args_kwargs__args__0=run.pk)
            assert {(job.queue_name, tuple(job.worker_ids)) for job in jobs} == {(queue, (f"{queue}-worker",))}
            pids = set(BatchLog.objects.filter(shard=run.task.config["shard"]).values_list("pid", flat=True))
            assert pids == {workers[queue].process.pid}
