"""Runs performed by real ``rqworker`` processes on Redis: killed, stopped and fed duplicate jobs meanwhile.

The RQ counterpart of test_background.py, with PostgreSQL as the database. Workers are
started as django-tasks-rq's docs say (``--job-class django_tasks_rq.Job``, with the scheduler
that performs deferred jobs: the watchdog). One worker (with its work horse) is killed with
SIGKILL in the middle of a slice, another gets SIGTERM, and slices are enqueued twice. In the
end every run has succeeded, every row was updated exactly once, and the batches of each run
never overlap in time. Redis database 13 is this test's own.
"""

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Count, Sum
from django.test import override_settings

from maintenance_tasks import Runner
from maintenance_tasks.jobs import perform_run
from maintenance_tasks.models import Run, RunEvent
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import BatchLog, Item

from .conftest import ROOT, active_runs_lines, child_env, deadline, wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

S = RunStatus
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
QUEUES = ["default", "heavy"]
# Two runs per worker, each about 3 s of work, as in test_background.py.
WORKERS = 2
RUNS, ITEMS_PER_RUN, DELAY = 2 * WORKERS, 600, 0.05
SETTINGS = {"CHECKPOINT_INTERVAL": 0.1, "STALE_AFTER": 2.0, "SLICE_SECONDS": 0.3}
WORKER_ENV = {
    "TASKS_BACKEND": "rq",
    "REDIS_URL": REDIS_URL,
    "MAINTENANCE_CHECKPOINT_INTERVAL": "0.1",
    "MAINTENANCE_STALE_AFTER": "2",
    "MAINTENANCE_SLICE_SECONDS": "0.3",
    "DJANGO_DEBUG": "false",
}
RQ_SETTINGS = {
    "TASKS": {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": QUEUES}},
    "RQ_QUEUES": {name: {"URL": REDIS_URL} for name in QUEUES},
}


def redis_connection():
    import redis

    return redis.Redis.from_url(REDIS_URL)


@pytest.fixture
def redis_db():
    if connection.vendor != "postgresql":
        pytest.skip("the RQ process test runs with PostgreSQL as the database (as in CI)")
    import redis

    client = redis_connection()
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.skip(f"no Redis at {REDIS_URL}: {error}")
    client.flushdb()
    yield client
    client.flushdb()


class Worker:
    """An ``rqworker`` process with its log in a file (a pipe nobody reads would block it)."""

    def __init__(self, name: str, *options: str, **env: str) -> None:
        self.name = name
        self.log_path = ROOT / "var" / f"test-rq-{name}.log"
        self.log = self.log_path.open("w")
        args = ["rqworker", "--job-class", "django_tasks_rq.Job", "--with-scheduler", "--name", name, *options, *QUEUES]
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=child_env(**{**WORKER_ENV, **env}),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def horses(self) -> list[int]:
        """Return the pids of the work horses this worker forked (each in a process group of its own)."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL the worker and its work horse at once, as when its machine dies."""
        for pid in [self.process.pid, *self.horses()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=deadline(30))

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text()


class Pool:
    def __init__(self) -> None:
        self.numbers = itertools.count()
        self.workers: dict[str, Worker] = {}

    def start(self, *options: str, **env: str) -> Worker:
        worker = Worker(f"rq-test-{os.getpid()}-{next(self.numbers)}", *options, **env)
        self.workers[worker.name] = worker
        return worker

    def stop_all(self) -> None:
        for worker in self.workers.values():
            if worker.alive():
                worker.kill()
            worker.log.close()

    def scheduler_holders(self) -> set[str]:
        """Return the workers that have run RQ's scheduler (it performs deferred jobs: the watchdog).

        Killing it would leave deferred jobs waiting for RQ's fallback (minutes): the test kills others.
        """
        return {name for name, worker in self.workers.items() if "Acquired scheduler lock" in worker.output()}

    def at_work(self):
        """Return (worker, run) for a live worker, not the scheduler, in the middle of a slice."""
        from rq import Worker as RQWorker
        from rq.job import Job

        client = redis_connection()
        holders = self.scheduler_holders()
        for rq_worker in RQWorker.all(connection=client):
            worker = self.workers.get(rq_worker.name)
            job_id = rq_worker.get_current_job_id()
            if worker is None or not worker.alive() or worker.name in holders or not job_id:
                continue
            job = Job.fetch(job_id, connection=client)
            if job.func_name != perform_run.module_path:
                continue
            # The job that claimed the run moved its token to attempt + 1 (a duplicate job did not).
            run_id, attempt = job.args
            run = Run.objects.filter(pk=run_id, attempt=attempt + 1, status=S.RUNNING, tick_count__gt=0).first()
            if run is not None:
                return worker, run
        return None


def describe_active(pool):
    lines = active_runs_lines()
    for worker in pool.workers.values():
        lines.append(f"  {worker.name} (alive: {worker.alive()}): {worker.output()[-3000:]}")
    return "\n".join(lines)


def test_rq_workers_go_on_through_kill_sigterm_and_duplicate_jobs(redis_db):
    Item.objects.bulk_create(Item(value=shard) for shard in range(RUNS) for _ in range(ITEMS_PER_RUN))
    pool = Pool()
    try:
        with override_settings(**RQ_SETTINGS, MAINTENANCE_TASKS=SETTINGS):
            runs = [
                Runner.run("testproject.testapp.maintenance.LogShardBatches", {"shard": shard, "delay": DELAY})
                for shard in range(RUNS)
            ]
            assert {run.status for run in runs} == {S.ENQUEUED}
            for _ in range(WORKERS):
                pool.start()

            # kill -9 of a worker and its work horse in the middle of a slice; a new worker takes its place.
            for _ in range(5):
                worker, killed_run = wait_for(pool.at_work, timeout=60)
                worker.kill()
                pool.start()
                if Run.objects.filter(pk=killed_run.pk, status=S.RUNNING, attempt=killed_run.attempt).exists():
                    break
            else:
                pytest.fail("could not kill a worker in the middle of a slice")

            # A slice enqueued twice: the same token twice, and an old token.
            for run in Run.objects.filter(status__in=[S.ENQUEUED, S.RUNNING]).exclude(pk=killed_run.pk)[:3]:
                perform_run.enqueue(run.pk, run.attempt)
                perform_run.enqueue(run.pk, max(0, run.attempt - 1))

            # SIGTERM to a worker in the middle of a slice: rqworker waits for its job (the slice) and exits.
            worker, stopped_run = wait_for(pool.at_work, timeout=60)
            worker.process.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            assert worker.process.wait(timeout=deadline(60)) == 0, worker.output()
            print(f"rqworker: SIGTERM to exit with a slice in progress: {time.monotonic() - sent:.2f}s")  # noqa: T201
            pool.start()

            try:
                wait_for(lambda: not Run.objects.active().exists(), timeout=120, interval=0.25)
            except AssertionError:
                pytest.fail(describe_active(pool))
    finally:
        pool.stop_all()

    statuses = dict(Run.objects.values_list("status").annotate(n=Count("id")))
    assert statuses == {S.SUCCEEDED: RUNS}
    # Every row updated exactly once: no batch applied twice, none skipped.
    assert dict(Item.objects.values_list("times_processed").annotate(n=Count("id"))) == {1: RUNS * ITEMS_PER_RUN}
    logged = BatchLog.objects.values("shard").annotate(items=Sum("size"))
    assert {row["shard"]: row["items"] for row in logged} == dict.fromkeys(range(RUNS), ITEMS_PER_RUN)
    assert not BatchLog.objects.values("shard", "first_pk").annotate(n=Count("id")).filter(n__gt=1).exists()
    # No two executors worked on one run at the same time: its committed batches never overlap.
    for shard in range(RUNS):
        batches = list(BatchLog.objects.filter(shard=shard).order_by("started").values_list("started", "ended", "pid"))
        for (_, end, pid), (start, _, next_pid) in itertools.pairwise(batches):
            assert end <= start, f"shard {shard}: a batch of process {next_pid} began before one of {pid} ended"
    # The killed worker's run was taken over by the watchdog (a deferred job) after STALE_AFTER.
    recovered = RunEvent.objects.get(run=killed_run, action="recovered")
    assert recovered.from_status == S.RUNNING and recovered.source == "watchdog"
    # The stopped worker finished its slice first: the run went on, never left running.
    assert not RunEvent.objects.filter(run=stopped_run, action="recovered").exists()
    assert all(run.attempt > 1 for run in Run.objects.all())


def test_an_rq_heroku_worker_stops_the_slice_after_its_batch_on_sigterm(redis_db):
    """With ``--worker-class rq.worker.HerokuWorker``, SIGTERM does not wait for the slice to end.

    The worker sends its work horse SIGRTMIN; the slice stops after its batch, the run is
    interrupted and given back to the queue, and another worker goes on with it.
    """
    Item.objects.bulk_create(Item(value=0) for _ in range(60))
    pool = Pool()
    env = {"MAINTENANCE_SLICE_SECONDS": "600"}  # a slice would outlast any grace period
    try:
        with override_settings(**RQ_SETTINGS, MAINTENANCE_TASKS={**SETTINGS, "SLICE_SECONDS": 600}):
            run = Runner.run("testproject.testapp.maintenance.LogShardBatches", {"shard": 0, "delay": 0.2})
            worker = pool.start("--worker-class", "rq.worker.HerokuWorker", **env)
            wait_for(lambda: Run.objects.filter(pk=run.pk, status=S.RUNNING, tick_count__gt=0).exists(), timeout=60)
            horses = worker.horses()
            worker.process.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            assert worker.process.wait(timeout=deadline(60)) == 0, worker.output()
            print(f"rqworker (HerokuWorker): SIGTERM to exit with a slice in progress: {time.monotonic() - sent:.2f}s")  # noqa: T201
            # The horse (a child of the worker, beside its scheduler) gave it back itself, not waiting for the slice.
            assert [action for action, _ in run.events.values_list("action", "detail__pid")] == [
                "created", "started", "interrupted", "requeue",
            ]  # fmt: skip
            assert run.events.get(action="requeue").detail["pid"] in horses
            pool.start(**env)
            wait_for(lambda: Run.objects.filter(pk=run.pk, status=S.SUCCEEDED).exists(), timeout=60)
    finally:
        pool.stop_all()
    assert set(Item.objects.values_list("times_processed", flat=True)) == {1}
