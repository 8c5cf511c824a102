"""Real processes: ``run_maintenance_task --wait`` following a run a real ``db_worker`` performs, and a
waiting command stopped by Ctrl-C or by ``maintenance_runs pause`` from another process."""

import getpass
import re
import signal
import socket

import pytest
from django.db import connection
from django_tasks_db.models import DBTaskResult

from maintenance_tasks.models import Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item

from .conftest import active_runs_lines
from .workers import Workers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

S = RunStatus
BACKGROUND = {"TASKS_BACKEND": "database", "MAINTENANCE_LOG_INTERVAL": "0.2", "DJANGO_DEBUG": "false"}


def handed_over(command):
    """Read the waiting command's first line (it is then waiting, its signal handler in place); return its run."""
    line = command.process.stdout.readline()
    run = Run.objects.select_related("task").get()
    assert line == f"Run {run.pk} of {run.task} handed to the workers (enqueued).\n", (line, command.wait())
    return run


def test_wait_follows_the_run_a_worker_performs_and_exits_with_its_outcome(manage, tmp_path):
    if connection.vendor == "mysql" and not connection.features.has_select_for_update_skip_locked:
        pytest.skip("db_worker needs SELECT ... SKIP LOCKED")
    Item.objects.bulk_create(Item() for _ in range(200))
    with Workers(tmp_path, **BACKGROUND) as workers:
        workers.start()
        command = manage("run_maintenance_task", "IncrementItems", "--arg", "delay=0.005", "--wait", **BACKGROUND)
        code, out, err = command.wait(timeout=180)
        assert code == 0, (out, err, workers.describe(), *active_runs_lines())
        run = Run.objects.get()
        lines = out.splitlines()
        assert lines[0].startswith(f"Run {run.pk} of {run.task} handed to the workers (")  # enqueued, or running
        assert any(re.fullmatch(rf"Run {run.pk}: [\d,]+/200 items \(.*", line) for line in lines[1:-1]), out
        assert lines[-1].startswith(f"Run {run.pk}: 200/200 items (100.0%)") and "Succeeded in" in lines[-1]
        assert run.status == S.SUCCEEDED
        assert set(Item.objects.values_list("times_processed", flat=True)) == {1}
        assert DBTaskResult.objects.get(pk=run.job_id).worker_ids == ["worker-0"]  # performed by the worker
        assert run.events.get(action="created").detail["host"] == socket.gethostname()

        fail_at = Item.objects.order_by("pk").values_list("pk", flat=True)[50]
        command = manage(
            "run_maintenance_task", "IncrementItems", "--arg", f"fail_at={fail_at}", "--wait", **BACKGROUND
        )
        code, out, err = command.wait(timeout=180)
        failed = Run.objects.latest("pk")
        assert code == 1, (out, err, workers.describe())
        assert failed.status == S.ERRORED
        assert err.strip().splitlines()[-1] == (
            f"CommandError: Run {failed.pk} errored: testproject.testapp.maintenance.Boom: item {fail_at} failed"
        )


def test_ctrl_c_stops_waiting_and_leaves_the_run_alone(manage):
    command = manage("run_maintenance_task", "RecordOnce", "--wait", **BACKGROUND)  # no worker: it stays enqueued
    run = handed_over(command)
    command.signal(signal.SIGINT)
    code, out, err = command.wait()
    assert code == 3
    assert err.strip().splitlines() == [
        f"CommandError: Stopped waiting; run {run.pk} goes on (enqueued). "
        f"Follow it with: manage.py maintenance_runs show {run.pk}"
    ]
    run.refresh_from_db()
    assert run.status == S.ENQUEUED
    assert list(run.events.values_list("action", flat=True)) == ["created"]


def test_a_pause_from_maintenance_runs_ends_the_wait_with_exit_3(manage):
    waiting = manage("run_maintenance_task", "RecordOnce", "--wait", **BACKGROUND)
    run = handed_over(waiting)
    pause = manage("maintenance_runs", "pause", str(run.pk))
    assert pause.wait() == (0, f"Run {run.pk} of RecordOnce: enqueued -> paused.\n", "")
    code, out, err = waiting.wait()
    assert code == 3
    assert err.strip().splitlines() == [
        f"CommandError: Run {run.pk} paused at 0 items. Resume with: manage.py run_maintenance_task --resume {run.pk}"
    ]
    event = run.events.get(action="pause")
    assert (event.source, event.user, event.from_status, event.to_status) == (
        "cli",
        getpass.getuser(),
        "enqueued",
        "paused",
    )
    assert event.detail["host"] == socket.gethostname() and event.detail["pid"] == pause.process.pid
    assert event.detail["argv"] == ["maintenance_runs", "pause", str(run.pk)]

    code, out, err = manage("maintenance_runs", "resume", str(run.pk), "--background", **BACKGROUND).wait()
    assert (code, err) == (0, "")
    assert out.startswith(f"Run {run.pk} of RecordOnce: resumed, handed to the workers (enqueued).")
    run.refresh_from_db()
    assert run.status == S.ENQUEUED and DBTaskResult.objects.get(pk=run.job_id).status == "READY"
