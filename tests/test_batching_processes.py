"""``batch_time`` in real processes: kill -9 in the middle of a group, pause and SIGTERM at the next commit, CLI flags."""

import signal

import pytest

from maintenance_tasks.models import Run, RunEvent, Task
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import BatchLog, Item
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

#: The app's default batch_time, for the child processes (the test settings turn it off).
DEFAULT = {"MAINTENANCE_BATCH_TIME": "0.5"}
SLOW = ["--arg", "per_item=0.005"]  # 600 items in batches of 20: 0.1 s a batch, about 3 s in all
SLOWER = ["--arg", "per_item=0.02"]  # about 12 s: for tests that must stop it before the end


@pytest.fixture
def items():
    return Item.objects.bulk_create(Item() for _ in range(600))


def counts():
    return list(Item.objects.order_by("pk").values_list("times_processed", flat=True))


def committed(min_count=1):
    """Wait for the foreground run to have committed at least ``min_count`` items; return it."""
    return wait_for(lambda: Run.objects.filter(status=RunStatus.RUNNING, tick_count__gte=min_count).first())


def test_kill_9_inside_a_group_loses_the_whole_group_and_resume_applies_each_item_once(manage, items, tmp_path):
    marker = tmp_path / "kill"
    marker.write_text("")
    # One group of batches an hour long: everything up to the kill is in one open transaction.
    args = ["--arg", f"kill_at={items[250].pk}", "--arg", f"marker={marker}", "--batch-time", "3600"]
    code, out, err = manage("run_maintenance_task", "PacedBatches", *args).wait()
    assert code == -signal.SIGKILL, err
    run = Run.objects.get()
    assert (run.status, run.cursor, run.tick_count, run.commits) == (RunStatus.RUNNING, None, 0, 0)
    assert counts() == [0] * 600 and not BatchLog.objects.exists()  # twelve batches rolled back together
    code, out, err = manage("run_maintenance_task", "--resume", str(run.pk), "--force").wait()
    assert code == 0, err
    run.refresh_from_db()
    assert (run.status, run.tick_count, run.commits) == (RunStatus.SUCCEEDED, 600, 1)
    assert counts() == [1] * 600
    assert BatchLog.objects.count() == 30
    assert "batches of 20 items; 1 commit" in out


def test_kill_9_at_random_moments_of_a_grouped_run_then_resume_applies_each_item_once(manage, items):
    command = manage("run_maintenance_task", "PacedBatches", *SLOW, **DEFAULT)
    run = committed()
    for _ in range(3):
        command.kill()
        run.refresh_from_db()
        if run.status == RunStatus.SUCCEEDED:
            break
        done = run.tick_count
        assert done % 20 == 0 and counts() == [1] * done + [0] * (600 - done)  # the groups committed, nothing else
        command = manage("run_maintenance_task", "--resume", str(run.pk), "--force", **DEFAULT)
        committed(done + 1)
    code, out, err = command.wait()
    assert code == 0, err
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and counts() == [1] * 600
    assert 1 < run.commits < 30  # fewer commits than batches: groups of about 0.5 s


def test_pause_from_another_process_is_noticed_at_the_next_commit(manage, items):
    command = manage("run_maintenance_task", "PacedBatches", *SLOWER, **DEFAULT)
    run = committed()
    run.pause()
    code, out, err = command.wait()
    assert code == 3, err
    run.refresh_from_db()
    assert run.status == RunStatus.PAUSED
    assert 0 < run.tick_count < 600 and run.tick_count % 20 == 0
    assert counts() == [1] * run.tick_count + [0] * (600 - run.tick_count)
    code, out, err = manage("run_maintenance_task", "--resume", str(run.pk), **DEFAULT).wait()
    assert code == 0, err
    assert counts() == [1] * 600


def test_sigterm_stops_a_grouped_run_at_the_next_commit(manage, items):
    command = manage("run_maintenance_task", "PacedBatches", *SLOWER, **DEFAULT)
    run = committed()
    command.signal(signal.SIGTERM)
    code, out, err = command.wait()
    assert code == 3, err
    run.refresh_from_db()
    assert run.status == RunStatus.INTERRUPTED and 0 < run.tick_count < 600
    assert counts() == [1] * run.tick_count + [0] * (600 - run.tick_count)


def test_cli_flags_give_the_run_its_own_values_and_report_the_batches(manage, items):
    code, out, err = manage("run_maintenance_task", "PacedBatches", "--batch-size", "50", "--batch-time", "3600").wait()
    assert code == 0, err
    run = Run.objects.get()
    assert (run.batch_size, run.batch_time, run.commits, run.tick_count) == (50, 3600.0, 1, 600)
    assert set(BatchLog.objects.values_list("size", flat=True)) == {50}
    assert f"Run {run.pk}: batches of 50 items; 1 commit." in out


def test_resume_with_flags_tunes_the_run(manage, items):
    command = manage("run_maintenance_task", "PacedBatches", *SLOWER, **DEFAULT)
    run = committed()
    run.pause()
    assert command.wait()[0] == 3
    code, out, err = manage("run_maintenance_task", "--resume", str(run.pk), "--batch-size", "4").wait()
    assert code == 0, err
    run.refresh_from_db()
    assert (run.batch_size, run.batch_time, run.batch_size_latest) == (4, None, 4)
    assert RunEvent.objects.get(run=run, action="tune").detail["batch_size"] == [None, 4]
    assert counts() == [1] * 600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be a whole number, 1 or more, not 0."),
        (["--batch-size", "ten"], "--batch-size must be a whole number, 1 or more, not 'ten'."),
        (["--batch-time", "-1"], "--batch-time must be a number of seconds, above 0 and at most 3600, not -1.0."),
        (["--batch-time", "nan"], "--batch-time must be a number of seconds, above 0 and at most 3600, not nan."),
    ],
)
def test_bad_flags_exit_2_with_one_clear_line(manage, args, message):
    code, out, err = manage("run_maintenance_task", "PacedBatches", *args).wait()
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert not Run.objects.exists() and not Task.objects.exists()
