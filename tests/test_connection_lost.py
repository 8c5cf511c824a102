"""Runs whose database connection is lost (PostgreSQL: the server terminates their backends).

The child (``run_maintenance_task`` or ``db_worker``) connects with its own ``application_name``, so the test terminates
that process's connections only, and only in this test database (other suites share the server).
"""

import os

import pytest
from django.db import connection
from django.test import override_settings

from maintenance_tasks import Runner
from maintenance_tasks.models import Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item

from .conftest import subprocess_database_url, wait_for
from .test_background import SETTINGS, WORKER_ENV
from .workers import Workers

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

S = RunStatus
ITEMS = 600
IN_PROGRESS = [S.ENQUEUED, S.RUNNING]


def terminate(application_name: str) -> int:
    """Terminate the backends of this test database opened by ``application_name``; return how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = %s",
            [application_name],
        )
        return sum(1 for (done,) in cursor.fetchall() if done)


@pytest.mark.parametrize("name", ["IncrementItems", "IncrementItemsAutocommit"])
def test_lost_connection_leaves_the_run_interrupted_and_resume_finishes_it(manage, name):
    """Exit 3 with one line saying the connection was lost and how to resume; the run is ``interrupted``.

    Before (up to fe98360, found by this test): the engine took the error for the processor's own.
    In an atomic batch, Django drops the connection when the rollback fails and at once opens a
    new one, on which the run was left ``errored`` for good (exit 1, ``OperationalError:
    terminating connection due to administrator command``): a run that only needed resuming
    could not be resumed. In autocommit, the engine logged the run as errored (a traceback on
    stderr) before its write failed.
    """
    if connection.vendor != "postgresql":
        pytest.skip("terminating a backend is PostgreSQL's (pg_terminate_backend)")
    Item.objects.bulk_create(Item() for _ in range(ITEMS))
    application_name = f"wtrobust-lost-{os.getpid()}-{name}"
    url = f"{subprocess_database_url()}?application_name={application_name}"
    command = manage("run_maintenance_task", name, "--arg", "delay=0.01", DATABASE_URL=url)

    def running():
        if command.process.poll() is not None:
            raise AssertionError(f"the command ended early: {command.wait()}")
        return Run.objects.filter(status=S.RUNNING, tick_count__gte=20).first()

    run = wait_for(running, timeout=60)
    assert terminate(application_name) >= 1
    code, out, err = command.wait(timeout=60)
    assert code == 3, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("CommandError: Lost the database connection ("), err
    assert lines[0].endswith(
        f"Run {run.pk} is interrupted; resume with: manage.py run_maintenance_task --resume {run.pk}"
    ), err
    run.refresh_from_db()
    assert (run.status, run.error_class) == (S.INTERRUPTED, "")
    assert run.events.filter(action="connection_lost", to_status=S.INTERRUPTED).exists()
    done = run.tick_count
    assert 0 < done < ITEMS

    code, out, err = manage("run_maintenance_task", "--resume", str(run.pk)).wait()
    assert code == 0, err
    run.refresh_from_db()
    assert (run.status, run.tick_count) == (S.SUCCEEDED, ITEMS)
    times = list(Item.objects.order_by("pk").values_list("times_processed", flat=True))
    if name == "IncrementItems":
        assert times == [1] * ITEMS  # atomic batches: the one in progress was rolled back, done once after
    else:
        # Autocommit: items since the last checkpoint may be done again (at least once), none skipped.
        assert min(times) == 1 and max(times) <= 2, times


def test_lost_connection_is_retried_when_the_processor_retries_on_database_errors(manage):
    """A processor whose ``retry_on`` holds OperationalError keeps that choice: the foreground command goes
    on from its cursor on a new connection after the delay, and the run succeeds, each row once."""
    if connection.vendor != "postgresql":
        pytest.skip("terminating a backend is PostgreSQL's (pg_terminate_backend)")
    Item.objects.bulk_create(Item() for _ in range(ITEMS))
    application_name = f"wtrobust-retry-{os.getpid()}"
    url = f"{subprocess_database_url()}?application_name={application_name}"
    command = manage("run_maintenance_task", "IncrementItemsRetryingOutages", "--arg", "delay=0.005", DATABASE_URL=url)
    wait_for(lambda: Run.objects.filter(status=S.RUNNING, tick_count__gte=20).exists(), timeout=60)
    assert terminate(application_name) >= 1
    code, out, err = command.wait(timeout=120)
    assert code == 0, (out, err)
    run = Run.objects.get()
    assert (run.status, run.tick_count, run.retries) == (S.SUCCEEDED, ITEMS, 1)
    [retry] = run.events.filter(action="retry")
    assert retry.detail["error_class"] == "django.db.utils.OperationalError"
    assert list(Item.objects.values_list("times_processed", flat=True).distinct()) == [1]


@pytest.mark.parametrize("name", ["IncrementItems", "IncrementItemsAutocommit"])
def test_lost_connection_of_a_db_worker_the_run_is_recovered_and_the_worker_goes_on(manage, tmp_path, name):
    """The server terminates a db_worker's connections in the middle of a slice: the run is not errored;
    the watchdog recovers it after STALE_AFTER and the same worker, still alive, finishes it.

    Before (up to fe98360, found by this test): an atomic run was left ``errored`` (as in the
    foreground). In autocommit mode the connection stayed broken after the slice, db_worker failed
    to record the job and died of it, and with no other worker the run stayed ``running`` forever.
    """
    if connection.vendor != "postgresql":
        pytest.skip("terminating a backend is PostgreSQL's (pg_terminate_backend)")
    Item.objects.bulk_create(Item() for _ in range(ITEMS))
    application_name = f"wtrobust-worker-{os.getpid()}-{name}"
    url = f"{subprocess_database_url()}?application_name={application_name}"
    with override_settings(
        TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}, MAINTENANCE_TASKS=SETTINGS
    ):
        run = Runner.run(f"testproject.testapp.maintenance.{name}", {"delay": 0.005})
    env = {**WORKER_ENV, "MAINTENANCE_SLICE_SECONDS": "60", "DATABASE_URL": url}
    with Workers(tmp_path, **env) as workers:
        worker = workers.start()
        wait_for(lambda: Run.objects.filter(pk=run.pk, status=S.RUNNING, tick_count__gte=20).exists(), timeout=60)
        assert terminate(application_name) >= 1
        try:
            wait_for(lambda: Run.objects.get(pk=run.pk).status not in IN_PROGRESS, timeout=120, interval=0.2)
        except AssertionError:
            pytest.fail(workers.describe())
        assert worker.alive(), workers.describe()
    run.refresh_from_db()
    assert (run.status, run.tick_count, run.error_class) == (S.SUCCEEDED, ITEMS, "")
    recovered = run.events.get(action="recovered")
    assert (recovered.from_status, recovered.to_status, recovered.source) == (S.RUNNING, S.ENQUEUED, "watchdog")
    times = list(Item.objects.order_by("pk").values_list("times_processed", flat=True))
    if name == "IncrementItems":
        assert times == [1] * ITEMS
    else:
        assert min(times) == 1 and max(times) <= 2, times
