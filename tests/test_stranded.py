"""Runs that nobody performs: a command killed before it claimed its run, a processor gone from the code.

``run_maintenance_task`` first saves its run (``Runner.create``, or ``Runner.resume`` moving it to
``enqueued``), then claims it (``running``). A ``kill -9`` in between leaves exactly what
``Runner.create`` leaves: an ``enqueued`` run with no job (``job_id`` empty) and no executor. The
tests make that state with ``Runner.create`` in the test process, the same code the command runs
first, rather than by trying to land a SIGKILL in a window of a few milliseconds.
"""

import signal

import pytest
from django.db import connection
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
