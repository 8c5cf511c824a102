"""Real processes, real signals: kill -9, SIGINT, SIGTERM, requests from another process, races."""

import json
import os
import random
import signal
import sys
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from maintenance_tasks.models import Run, Task
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item
from tests.conftest import ROOT, child_env, deadline, kill_9_and_resume, on_sqlite, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

SLOW = ["--arg", "delay=0.002"]  # 600 items: about 1.5 s
SLOWER = ["--arg", "delay=0.01"]  # about 6 s: for tests that must stop it before the end


@pytest.fixture
def items():
    Item.objects.bulk_create(Item() for _ in range(600))


def running_run(command, min_count=1):
    def check():
        if command.process.poll() is not None:
            raise AssertionError(f"the command ended early: {command.wait()}")
        run = Run.objects.filter(status=RunStatus.RUNNING).first()
        return run if run and run.tick_count >= min_count else None

    return wait_for(check)


def counts():
    return list(Item.objects.order_by("pk").values_list("times_processed", flat=True))


@pytest.mark.parametrize("name", ["IncrementItems", "IncrementItemsInBatches"])
def test_kill_9_at_random_moments_then_resume_applies_each_batch_once(manage, items, name):
    seed = random.randrange(10**6)
    delay = ["--arg", "delay=0.02"] if name == "IncrementItemsInBatches" else SLOW
    command = manage("run_maintenance_task", name, *delay)
    run = kill_9_and_resume(manage, command, running_run(command), seed)
    assert run.status == RunStatus.SUCCEEDED
    assert run.tick_count == 600
    assert counts() == [1] * 600, f"seed {seed}: some batch was applied twice or not at all"


def test_resume_of_a_running_run_waits_for_a_stale_heartbeat(manage, items):
    command = manage("run_maintenance_task", "IncrementItems", *SLOW)
    run = running_run(command)
    command.kill()
    code, _, err = manage("run_maintenance_task", "--resume", str(run.pk)).wait()
    assert code == 2
    assert f"Run {run.pk} is running (last heartbeat" in err and "Traceback" not in err
    wait_for(lambda: timezone.now() - Run.objects.get(pk=run.pk).heartbeat_at > timedelta(seconds=0.3))
    code, out, err = manage("run_maintenance_task", "--resume", str(run.pk), MAINTENANCE_STALE_AFTER="0.2").wait()
    assert code == 0, err
    assert counts() == [1] * 600


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_after_the_batch_and_resume_goes_on(manage, items, signum):
    command = manage("run_maintenance_task", "IncrementItems", *SLOWER)
    run = running_run(command)
    command.signal(signum)
    code, out, err = command.wait()
    assert code == 3, err
    run.refresh_from_db()
    assert run.status == RunStatus.INTERRUPTED
    assert f"--resume {run.pk}" in err
    done = run.tick_count
    assert 0 < done < 600 and done % 10 == 0  # whole batches only
    assert counts() == [1] * done + [0] * (600 - done)
    code, out, err = manage("run_maintenance_task", "--resume", str(run.pk)).wait()
    assert code == 0, err
    assert counts() == [1] * 600


@pytest.mark.parametrize("name", ["IncrementItems", "IncrementItemsAutocommit"])
@pytest.mark.parametrize(("request_name", "ended"), [("pause", RunStatus.PAUSED), ("cancel", RunStatus.CANCELLED)])
def test_request_from_another_process_stops_the_foreground_run(manage, items, request_name, ended, name):
    command = manage("run_maintenance_task", name, *SLOWER)
    run = running_run(command)
    getattr(run, request_name)()
    code, out, err = command.wait()
    assert code == 3, err
    run.refresh_from_db()
    assert run.status == ended
    assert list(run.events.values_list("action", flat=True)) == ["created", "started", request_name, ended]
    if ended == RunStatus.PAUSED:
        code, out, err = manage("run_maintenance_task", "--resume", str(run.pk)).wait()
        assert code == 0, err
        assert counts() == [1] * 600


def test_errored_run_exits_1_with_the_error(manage, items):
    first = Item.objects.order_by("pk").first()
    code, out, err = manage("run_maintenance_task", "IncrementItems", "--arg", f"fail_at={first.pk + 25}").wait()
    assert code == 1
    run = Run.objects.get()
    assert err.strip().splitlines()[-1] == (
        f"CommandError: Run {run.pk} errored: testproject.testapp.maintenance.Boom: item {first.pk + 25} failed"
    )
    assert run.status == RunStatus.ERRORED and run.tick_count == 20


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Nope"], "Unknown processor 'Nope'"),
        (["os.system"], "Unknown processor 'os.system'"),
        (["testproject.testapp.other.Hidden"], "Unknown processor"),
        (["testproject.testapp.models.Item"], "Unknown processor"),
        (["testproject.testapp"], "Unknown processor"),
        (["IncrementItems", "--config", "{bad"], "--config: Enter a JSON object: Expecting property name"),
        (["IncrementItems", "--config", "[1]"], "--config must be a JSON object, not list."),
        (["IncrementItems", "--force"], "--force goes only with --resume RUN_ID."),
        (["IncrementItems", "--arg", "delay=slow"], "delay: Enter a number."),
        (["IncrementItems", "--arg", "colour=red"], "colour: Unknown parameter"),
        (["EveryType"], "name: This parameter is required."),
        (["EveryType", "--arg", "name=forbidden"], "name: This name is forbidden."),
        (["--resume", "999999"], "There is no run 999999."),
        ([], "Name a processor"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(manage, args, message):
    code, out, err = manage("run_maintenance_task", *args).wait()
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err  # no traceback, no argparse usage block
    assert not Run.objects.exists() and not Task.objects.exists()


def test_resume_of_a_finished_run_is_refused(manage):
    code, _, err = manage("run_maintenance_task", "RecordOnce").wait()
    assert code == 0, err
    run = Run.objects.get()
    code, _, err = manage("run_maintenance_task", "--resume", str(run.pk)).wait()
    assert code == 2
    assert f"Run {run.pk} is succeeded: only paused, interrupted or errored runs can be resumed." in err


RACE = """
import os
from maintenance_tasks.runner import Runner
from maintenance_tasks.exceptions import RunAlreadyActive
try:
    run = Runner.create("testproject.testapp.maintenance.RecordList", {"words": [os.environ["ROUND"]]})
    print("created", run.pk)
except RunAlreadyActive as error:
    print("refused", error)
"""


def test_processes_racing_to_start_the_same_task_start_one_run(tmp_path):
    import subprocess

    for round_number in range(3):
        start = tmp_path / f"start-{round_number}"
        env = child_env(ROUND=str(round_number))
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.barrier", str(start), "shell", "-v0", "-c", RACE],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]

        def ready(start=start, processes=processes):
            ended = any(process.poll() is not None for process in processes)  # failed: its output tells why
            return ended or len(list(tmp_path.glob(f"{start.name}.ready.*"))) == len(processes)

        wait_for(ready, timeout=120)  # all four go at once, each set up and connected: no head start
        start.touch()
        outputs = [process.communicate(timeout=deadline(60)) for process in processes]
        results = [out.split()[0] if out else err for out, err in outputs]
        assert sorted(results) == ["created", "refused", "refused", "refused"], outputs
    assert Task.objects.count() == 3
    assert Run.objects.count() == 3
    assert json.dumps(sorted(Task.objects.values_list("config", flat=True), key=str))


def test_progress_lines_when_not_on_a_terminal(manage, items):
    code, out, err = manage("run_maintenance_task", "IncrementItems", *SLOW, MAINTENANCE_LOG_INTERVAL="0.2").wait()
    assert code == 0, err
    run = Run.objects.get()
    lines = out.strip().splitlines()
    assert (
        lines[0]
        == f'Run {run.pk} of testproject.testapp.maintenance.IncrementItems {{"delay":0.002,"fail_at":null}} started.'
    )
    assert any(line.startswith(f"Run {run.pk}: ") and "/600 items (" in line and "ETA" in line for line in lines[1:-1])
    assert lines[-1].startswith(f"Run {run.pk}: 600/600 items (100.0%)") and "Succeeded in" in lines[-1]
    assert os.environ.get("DATABASE_URL", "") == os.environ.get("DATABASE_URL", "")


# -- the admin, permissions and what pages show (i12c) -------------------------------------------


def test_sqlite_requests_from_another_process_wait_for_the_atomic_batch(manage, items):
    """Pause and cancel, round after round, while a foreground command holds the write lock batch after batch."""
    if not on_sqlite():
        pytest.skip("the write lock that requests must wait for is SQLite's")
    for round_ in range(10):
        # 600 items of 50 ms: the run cannot end (30 s) before a request gets the lock between two batches,
        # even on a busy machine (the request tries every millisecond, the run lets the lock go once per batch).
        command = manage("run_maintenance_task", "IncrementItems", "--arg", "delay=0.05")
        run = running_run(command)
        request = "pause" if round_ % 2 == 0 else "cancel"
        getattr(run, request)()  # raises OperationalError("database is locked") without IMMEDIATE transactions
        code, out, err = command.wait()
        assert code == 3, err
        assert "database is locked" not in err
        run.refresh_from_db()
        assert run.status == (RunStatus.PAUSED if request == "pause" else RunStatus.CANCELLED), round_
        if run.status == RunStatus.PAUSED:
            run.cancel()  # nothing runs it: at once, so that the next round may start the task again
        assert wait_for(lambda: not Run.objects.active().exists())


def test_a_foreground_run_taken_over_elsewhere_says_so_and_does_not_offer_resume(manage, items):
    command = manage("run_maintenance_task", "IncrementItemsAutocommit", *SLOWER, MAINTENANCE_CHECKPOINT_INTERVAL="0.1")
    run = running_run(command)
    # Another executor takes it over: a new attempt token, still running.
    Run.objects.filter(pk=run.pk).update(attempt=F("attempt") + 1)
    code, out, err = command.wait()
    assert code == 3, err
    assert f"Run {run.pk} was taken over by another executor (now running)" in err
    assert "--resume" not in err
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
