"""Runs that nobody performs: a command killed before it claimed its run, a processor gone from the code.

``run_maintenance_task`` first saves its run (``Runner.create``, or ``Runner.resume`` moving it to
``enqueued``), then claims it (``running``). A ``kill -9`` in between leaves exactly what
``Runner.create`` leaves: an ``enqueued`` run with no job (``job_id`` empty) and no executor. The
tests make that state with ``Runner.create`` in the test process, the same code the command runs
first, rather than by trying to land a SIGKILL in a window of a few milliseconds.
"""

import signal
import threading

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from maintenance_tasks import Runner
from maintenance_tasks.jobs import perform_run
from maintenance_tasks.models import Run, Task
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item

from .conftest import wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

S = RunStatus
INCREMENT = "testproject.testapp.maintenance.IncrementItems"
WORKER_ENV = {"TASKS_BACKEND": "database", "MAINTENANCE_STALE_AFTER": "1", "DJANGO_DEBUG": "false"}


@pytest.fixture
def items():
    Item.objects.bulk_create(Item() for _ in range(50))


def counts():
    return list(Item.objects.order_by("pk").values_list("times_processed", flat=True))


def stranded_run():
    """Return an enqueued run with no job and no executor: what a command killed before its claim leaves."""
    run = Runner.create(INCREMENT, {"delay": 0.0}, metadata={"source": "cli"})
    assert (run.status, run.job_id, run.attempt) == (S.ENQUEUED, "", 0)
    return run


def test_resume_of_a_stranded_enqueued_run_needs_force_while_it_is_fresh(manage, items):
    """The CLI refuses a fresh stranded run without --force (its command may still be about to claim it),
    takes it over with --force, and processes each row once.

    Before: ``--resume`` accepted only paused and interrupted runs, so the run stayed ``enqueued``
    forever (and blocked its task: one active run per task).
    """
    run = stranded_run()
    code, out, err = manage("run_maintenance_task", "--resume", str(run.pk)).wait()
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert f"Run {run.pk} is enqueued (last change" in err and "force it" in err
    run.refresh_from_db()
    assert (run.status, run.attempt) == (S.ENQUEUED, 0)
    assert counts() == [0] * 50

    code, out, err = manage("run_maintenance_task", "--resume", str(run.pk), "--force").wait()
    assert code == 0, err
    run.refresh_from_db()
    assert (run.status, run.tick_count) == (S.SUCCEEDED, 50)
    assert counts() == [1] * 50
    actions = list(run.events.values_list("action", "source"))
    assert actions == [("created", "cli"), ("resume", "cli"), ("started", "engine"), (S.SUCCEEDED, "engine")]


def test_resume_of_a_stranded_enqueued_run_without_force_after_stale_after(manage, items):
    """Once nothing happened to it for STALE_AFTER, ``--resume`` takes the run without --force.

    Before: refused forever ("only paused or interrupted runs can be resumed").
    """
    run = stranded_run()
    wait_for(lambda: (timezone.now() - run.updated_at).total_seconds() > 1.5, timeout=10)
    code, out, err = manage("run_maintenance_task", "--resume", str(run.pk), MAINTENANCE_STALE_AFTER="1").wait()
    assert code == 0, err
    assert counts() == [1] * 50


def test_recover_enqueues_a_stranded_run_and_a_db_worker_finishes_it(manage, items):
    """After STALE_AFTER, ``recover_maintenance_runs`` (the watchdog's and the deploy hook's recovery) gives
    the stranded run a job; a db_worker performs it, each row once. Running it again does nothing more.

    Before: recovery looked only at runs with a stale heartbeat (running, pausing, cancelling); an
    enqueued run without a job was never enqueued again.
    """
    if connection.vendor == "mysql" and not connection.features.has_select_for_update_skip_locked:
        pytest.skip("db_worker needs SELECT ... SKIP LOCKED")
    run = stranded_run()
    code, out, err = manage("recover_maintenance_runs", **{**WORKER_ENV, "MAINTENANCE_STALE_AFTER": "600"}).wait()
    assert (code, out.strip()) == (0, "No stale runs (none silent for more than 600s)."), err  # still fresh

    wait_for(lambda: (timezone.now() - run.updated_at).total_seconds() > 1.5, timeout=10)
    code, out, err = manage("recover_maintenance_runs", **WORKER_ENV).wait()
    assert code == 0, err
    assert out.strip() == f"Run {run.pk}: enqueued -> enqueued ({run.task}).", out
    run.refresh_from_db()
    assert run.status == S.ENQUEUED and run.job_id
    job = DBTaskResult.objects.get(task_path=perform_run.module_path)
    assert (str(job.pk), job.args_kwargs["args"], job.status) == (run.job_id, [run.pk, 0], "READY")
    recovered = run.events.get(action="recovered")
    assert (recovered.from_status, recovered.to_status, recovered.source) == (S.ENQUEUED, S.ENQUEUED, "cli")

    # Its job waits: recovering again, even after STALE_AFTER, adds no second one.
    wait_for(lambda: (timezone.now() - Run.objects.get(pk=run.pk).updated_at).total_seconds() > 1.5, timeout=10)
    code, out, err = manage("recover_maintenance_runs", **WORKER_ENV).wait()
    assert (code, out.strip()) == (0, "No stale runs (none silent for more than 1s)."), err
    assert DBTaskResult.objects.filter(task_path=perform_run.module_path).count() == 1

    worker = manage("db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.05", "-v0", **WORKER_ENV)
    try:
        wait_for(lambda: Run.objects.get(pk=run.pk).status in (S.SUCCEEDED, S.ERRORED), timeout=60, interval=0.1)
    finally:
        worker.signal(signal.SIGTERM)
        worker.wait(timeout=60)
    run.refresh_from_db()
    assert (run.status, run.tick_count) == (S.SUCCEEDED, 50)
    assert counts() == [1] * 50


def test_resume_of_a_paused_run_whose_processor_is_gone_exits_2_and_leaves_it_paused(manage):
    """A paused run whose processor was removed from the code (a deploy that dropped it) is refused with
    exit 2 and one line naming the processor; the run stays paused, so it can go on once the code is back.

    Before: the run was moved to enqueued and claimed, then errored for good ("Unknown processor").
    """
    gone = "testproject.testapp.maintenance.RemovedLastRelease"
    task = Task.objects.for_config(gone, {})
    run = Run.objects.create(task=task, status=S.PAUSED, attempt=1, cursor="[7]", tick_count=7)
    code, out, err = manage("run_maintenance_task", "--resume", str(run.pk)).wait()
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert gone in err and "Traceback" not in err
    run.refresh_from_db()
    assert (run.status, run.attempt, run.cursor, run.error_class) == (S.PAUSED, 1, "[7]", "")
    assert not run.events.exists()


def blocked_claims() -> list:
    """Return the server's ids of the sessions of this test database whose UPDATE of a run waits on a lock."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND wait_event_type = 'Lock' AND query LIKE 'UPDATE \"maintenance_tasks_run\"%%'"
            )
        else:
            cursor.execute(
                "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()"
                " AND info LIKE 'UPDATE `maintenance_tasks_run`%%'"
            )
        return [session for (session,) in cursor.fetchall()]


def end_blocked_claims() -> None:
    """End the sessions whose UPDATE of a run waits on a lock (only in this test database)."""
    with connection.cursor() as cursor:
        for session in blocked_claims():
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_terminate_backend(%s)", [session])
            else:
                cursor.execute(f"KILL {int(session)}")


def test_a_run_whose_db_worker_died_before_claiming_it_is_recovered(manage, tmp_path, items):
    """A db_worker SIGKILLed after it took the run's job but before it claimed the run: the job stays
    RUNNING forever (django-tasks-db never ends the jobs of dead workers) and the run ``enqueued``.
    After STALE_AFTER, recovery takes that job for dead and enqueues another one; a new worker
    finishes the run, each row once.

    The test holds the run's row lock (from a thread, on its own connection) so that the worker's
    claim waits on it, kills the worker then, and ends its session (the server would otherwise
    perform the dead client's claim once the lock is released): the exact state, made by real
    processes.

    Before: a job RUNNING counted as waiting for ever, so recovery never enqueued another one and
    ``--resume`` refused the run without ``--force``: the run stayed ``enqueued`` for good.
    """
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has one writer: the worker could not even take its job while the lock is held")
    if connection.vendor == "mysql" and not connection.features.has_select_for_update_skip_locked:
        pytest.skip("db_worker needs SELECT ... SKIP LOCKED")
    from django.test import override_settings

    from .workers import Workers

    with override_settings(TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}):
        run = Runner.run(INCREMENT, {"delay": 0.0})
    locked, release = threading.Event(), threading.Event()

    def hold_the_row():
        try:
            with transaction.atomic():
                Run.objects.select_for_update().get(pk=run.pk)
                locked.set()
                release.wait(120)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    try:
        assert locked.wait(30)
        with Workers(tmp_path, **WORKER_ENV) as workers:
            worker = workers.start()
            wait_for(lambda: DBTaskResult.objects.filter(pk=run.job_id, status="RUNNING").exists(), timeout=60)
            wait_for(blocked_claims, timeout=60)
            worker.stop()  # SIGKILL, while its claim waits for the row lock
            # The server would still perform the dead client's UPDATE once the lock is released.
            end_blocked_claims()
            wait_for(lambda: not blocked_claims(), timeout=30)
    finally:
        release.set()
        holder.join(60)
    run.refresh_from_db()
    assert (run.status, run.attempt) == (S.ENQUEUED, 0)
    assert DBTaskResult.objects.get(pk=run.job_id).status == "RUNNING"

    wait_for(lambda: (timezone.now() - run.updated_at).total_seconds() > 1.5, timeout=10)
    code, out, err = manage("recover_maintenance_runs", **WORKER_ENV).wait()
    assert (code, out.strip()) == (0, f"Run {run.pk}: enqueued -> enqueued ({run.task})."), err
    with Workers(tmp_path, **WORKER_ENV) as workers:
        workers.start()
        wait_for(lambda: Run.objects.get(pk=run.pk).status in (S.SUCCEEDED, S.ERRORED), timeout=60, interval=0.1)
    run.refresh_from_db()
    assert (run.status, run.tick_count) == (S.SUCCEEDED, 50)
    assert counts() == [1] * 50
