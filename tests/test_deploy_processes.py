"""Concurrent deploy hooks in real processes: a rolling deploy starts each run-once processor once.

Three ``manage.py deploy_maintenance_tasks`` processes are released at one instant (each waits
at a barrier, connected, until the test creates a start file). With the ImmediateBackend the
hooks perform the runs themselves, so a hook that got the lock second often finds the run
already over: the case where a second start would be easy to miss. With the database backend
and a db_worker, ``--wait`` returns once the runs end, with their exit status.
"""

import subprocess
import sys
import threading

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from maintenance_tasks import deploy
from maintenance_tasks.models import DeployRecord, DeployState, Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Seen

from .conftest import ROOT, child_env, deadline, wait_for
from .factories import RunFactory

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

S = RunStatus
HOOKS = 3
ONCE = "testproject.testapp.maintenance.DeployOnce"
ALWAYS = "testproject.testapp.maintenance.DeployAlways"
WORKER_ENV = {
    "TASKS_BACKEND": "database",
    "MAINTENANCE_CHECKPOINT_INTERVAL": "0.1",
    "MAINTENANCE_STALE_AFTER": "5",
    "MAINTENANCE_SLICE_SECONDS": "0.5",
    "DJANGO_DEBUG": "false",
}


@pytest.fixture
def hooks(tmp_path):
    """Start ``HOOKS`` deploy hooks at one instant; return their (exit status, stdout, stderr)."""
    started: list[subprocess.Popen] = []
    rounds = iter(range(1000))

    def run(*args: str, **env: str) -> list[tuple[int, str, str]]:
        start = tmp_path / f"start-{next(rounds)}"
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.barrier", str(start), "deploy_maintenance_tasks", *args],
                cwd=ROOT,
                env=child_env(**env),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(HOOKS)
        ]
        started.extend(processes)

        def ready():
            for process in processes:
                if process.poll() is not None:
                    raise AssertionError(f"a hook ended before the barrier: {process.communicate()}")
            return len(list(tmp_path.glob(f"{start.name}.ready.*"))) == HOOKS

        wait_for(ready, timeout=120)
        start.touch()
        results = []
        for process in processes:
            out, err = process.communicate(timeout=deadline(180))
            results.append((process.returncode, out, err))
        return results

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=deadline(30))


def runs(path):
    return list(Run.objects.filter(task__processor=path).order_by("pk"))


def explain(results):
    return "\n".join(f"exit {code}\n{out}\n{err[-3000:]}" for code, out, err in results)


def test_concurrent_hooks_start_each_run_once_processor_once(hooks):
    """Rounds of three hooks: a first deploy, then after --reset, with and without a shared deploy id.

    Without the lock on the deploy record, about one round in three starts it twice.
    """
    previous = 0
    for round_, deploy_id in enumerate(["", "release-2", "", "release-4", "release-5", ""]):
        if round_:
            deploy.reset(ONCE, actor={"source": "test"})
        args = ["--deploy-id", deploy_id] if deploy_id else []
        results = hooks(*args)
        assert [code for code, _, _ in results] == [0] * HOOKS, explain(results)
        once = runs(ONCE)
        assert len(once) == round_ + 1, explain(results)
        assert all(run.status == S.SUCCEEDED for run in once), explain(results)
        assert Seen.objects.filter(value__startswith="deploy-once:").count() == 3 * (round_ + 1)
        # One hook started it; the others found it active or already done.
        lines = [line for _, out, _ in results for line in out.splitlines() if line.startswith("DeployOnce")]
        started = [line for line in lines if "enqueued run" in line]
        assert len(started) == 1, lines
        assert all("already active" in line or "already done" in line for line in lines if line not in started)
        always = [run for run in runs(ALWAYS) if run.pk > previous]
        if deploy_id:  # hooks sharing a deploy id start an "always" processor once
            assert len(always) == 1, explain(results)
        else:  # without one: once per hook that found no active run, so 1 to 3
            assert 1 <= len(always) <= HOOKS
        previous = Run.objects.order_by("pk").last().pk
    assert DeployRecord.objects.filter(task__processor=ONCE).count() == 1


def needs_db_worker():
    if connection.vendor == "mysql" and not connection.features.has_select_for_update_skip_locked:
        pytest.skip("db_worker needs SELECT ... SKIP LOCKED")


def test_concurrent_hooks_wait_for_the_runs_of_a_db_worker(hooks, manage):
    needs_db_worker()
    worker = manage("db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.05", "-v0", **WORKER_ENV)
    results = hooks("--wait", "--deploy-id", "release-1", **WORKER_ENV)
    assert [code for code, _, _ in results] == [0] * HOOKS, explain(results)
    # Each hook waited for both runs: the ones it started or found active, or (late) its deploy's.
    assert all(out.endswith("All 2 runs of this deploy succeeded.\n") for _, out, _ in results), explain(results)
    assert [run.status for run in runs(ONCE)] == [S.SUCCEEDED]
    assert [run.status for run in runs(ALWAYS)] == [S.SUCCEEDED]

    # A run-once processor that errors fails --wait on every host, and is started once.
    Seen.objects.create(value="deploy:fail")
    deploy.reset(ONCE, actor={"source": "test"})
    results = hooks("--wait", "--deploy-id", "release-2", **WORKER_ENV)
    assert [code for code, _, _ in results] == [1] * HOOKS, explain(results)
    errored = runs(ONCE)[1]
    assert [run.status for run in runs(ONCE)] == [S.SUCCEEDED, S.ERRORED]
    assert all(f"Errored: run {errored.pk} of {errored.task}: " in err for _, _, err in results), explain(results)
    assert worker.process.poll() is None


def waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # the view is a snapshot per transaction
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        else:  # MariaDB lists lock waits late in innodb_trx; the process list shows the query at once
            cursor.execute(
                "SELECT count(*) FROM information_schema.processlist "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID() AND info LIKE '%%FOR UPDATE'"
            )
        return cursor.fetchone()[0] > 0


def test_a_hook_waits_for_the_one_deciding_and_then_sees_its_run_succeeded():
    """A hook that reads while another commits a run that already succeeded must not start a second one."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serializes writers at BEGIN IMMEDIATE; the concurrent hooks above cover it")
    record = deploy.get_record(ONCE)
    outcomes = []

    def second_hook():
        try:
            outcomes.append(deploy.claim(ONCE, "once", actor={"source": "deploy"}, deploy_id="", started_at=now))
        finally:
            connections["default"].close()

    now = timezone.now()
    second = threading.Thread(target=second_hook)
    with transaction.atomic():  # the first hook, in the middle of its claim
        DeployRecord.objects.select_for_update().get(pk=record.pk)
        run = RunFactory(succeeded=True, task=record.task)  # it started the run, which is already over
        DeployRecord.objects.filter(pk=record.pk).update(run=run, state=DeployState.STARTED)
        second.start()
        wait_for(lambda: waiting_for_a_lock() or not second.is_alive())
    second.join(timeout=deadline(60))
    assert [(outcome.result, outcome.run) for outcome in outcomes] == [(deploy.DeployResult.DONE, run)]
    assert runs(ONCE) == [run]
