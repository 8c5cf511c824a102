"""``maintenance_runs``: list, show, pause, resume, cancel and force runs from the shell, and
``run_maintenance_task --background`` / ``--wait`` in this process (real workers: test_operator_processes.py)."""

import getpass
import io
import json
import socket
import sys
from datetime import timedelta

import pytest
from django.core.management import ManagementUtility, base, call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from maintenance_tasks.jobs import perform_run
from maintenance_tasks.management.commands.run_maintenance_task import INTERRUPTED_GRACE, stopped
from maintenance_tasks.models import Run, RunEvent
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item

from .factories import RunFactory, TaskFactory
from .test_enqueue_failure import unreachable_rq  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db]

S = RunStatus
DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "heavy"]}}
INCREMENT = "testproject.testapp.maintenance.IncrementItems"
RECORD = "testproject.testapp.maintenance.RecordOnce"


def runs(*argv, **options):
    """Call ``maintenance_runs`` in this process; return what it printed."""
    out = io.StringIO()
    call_command("maintenance_runs", *argv, stdout=out, **options)
    return out.getvalue()


def runs_json(*argv):
    return json.loads(runs(*argv, "--json"))


def cli(capsys, monkeypatch, command, *argv):
    """Run a command as from a shell, in this process; return its exit status, stdout and stderr lines."""
    monkeypatch.setattr(sys, "argv", ["manage.py", command, *argv])
    # run_from_argv() closes the connections when it ends: the test's database must stay open.
    monkeypatch.setattr(base.connections, "close_all", lambda: None)
    try:
        ManagementUtility(["manage.py", command, *argv]).execute()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def refused(capsys, monkeypatch, *argv):
    """Run ``maintenance_runs`` from the shell; check it is refused in one line (exit 2); return the line."""
    code, out, err = cli(capsys, monkeypatch, "maintenance_runs", *argv)
    assert (code, out, len(err)) == (2, "", 1), (code, out, err)
    return err[0]


def assert_audited_from_this_shell(event, action, argv):
    assert (event.action, event.source, event.user) == (action, "cli", getpass.getuser())
    assert event.detail["host"] == socket.gethostname()
    assert event.detail["argv"] == argv


def three_runs():
    """An errored dry run, a running run half way, and the newest, a paused run of RecordOnce."""
    old = timezone.now() - timedelta(hours=1)
    errored = RunFactory(errored=True, dry_run=True, tick_count=3, started_at=old)
    running = RunFactory(running=True, task=TaskFactory(config={"delay": 0.5, "fail_at": None}), tick_count=300)
    running.tick_total = 600
    running.save()
    paused = RunFactory(paused=True, task=TaskFactory(processor=RECORD, config={}))
    return errored, running, paused


# -- list --------------------------------------------------------------------------------------


def test_list_shows_runs_newest_first_in_aligned_columns():
    errored, running, paused = three_runs()
    lines = runs("list").splitlines()
    assert lines[0].split() == ["ID", "PROCESSOR", "STATUS", "PROGRESS", "STARTED", "UPDATED", "NOTES"]
    assert [line.split()[0] for line in lines[1:]] == [str(paused.pk), str(running.pk), str(errored.pk)]
    for title in ("PROCESSOR", "STATUS", "PROGRESS", "STARTED", "UPDATED", "NOTES"):
        column = lines[0].index(title)
        cells = lines[1:] if title != "NOTES" else lines[3:]  # the other runs have no notes
        assert all(line[column - 2 : column] == "  " and line[column] != " " for line in cells), title
    assert lines[1].split()[1:4] == ["RecordOnce", "paused", "0"]
    assert "300/600 items (50.0%)" in lines[2]
    assert lines[3].split()[1:3] == ["IncrementItems", "errored"] and lines[3].endswith("dry run, ValueError")
    assert "\x1b" not in "".join(lines)  # no colours off a terminal


def test_list_filters_by_status_and_processor_and_limits():
    errored, running, paused = three_runs()

    def ids(*argv):
        return [run["id"] for run in runs_json("list", *argv)]

    assert ids("--status", "errored") == [errored.pk]
    assert ids("--status", "running,paused") == [paused.pk, running.pk]
    assert ids("--status", "paused", "--status", "errored") == [paused.pk, errored.pk]
    assert ids("--status", "active") == [paused.pk, running.pk]
    assert ids("--status", "completed") == [errored.pk]
    assert ids("--processor", "IncrementItems") == [running.pk, errored.pk]
    assert ids("--processor", RECORD) == [paused.pk]
    assert ids("--processor", "IncrementItems", "--status", "running") == [running.pk]
    assert ids("--processor", "IncrementItemsInBatches") == []  # in the code, never run
    assert ids("--limit", "2") == [paused.pk, running.pk]
    assert runs("list", "--status", "cancelled") == "No runs.\n"
    gone = RunFactory(succeeded=True, task=TaskFactory(processor="oldapp.maintenance.Removed", config={}))
    assert ids("--processor", "Removed") == [gone.pk]  # a processor gone from the code still has its runs
    assert runs("show", str(gone.pk)).startswith(f"Run {gone.pk} of Removed\n")


def test_list_json_has_every_field():
    errored, running, paused = three_runs()
    data = runs_json("list")
    assert [run["id"] for run in data] == [paused.pk, running.pk, errored.pk]
    assert data[1] == {
        **data[1],
        "processor": INCREMENT,
        "name": "IncrementItems",
        "config": {"delay": 0.5, "fail_at": None},
        "status": "running",
        "tick_count": 300,
        "tick_total": 600,
        "progress": 0.5,
        "attempt": 1,
        "dry_run": False,
        "overdue": False,
    }
    assert set(data[1]) >= {"cursor", "rate", "eta_seconds", "started_at", "updated_at", "ended_at", "job_id"}
    assert (data[2]["error_class"], data[2]["error_message"], data[2]["dry_run"]) == ("ValueError", "boom", True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--status", "bogus"], "CommandError: Unknown status 'bogus': choose from enqueued, running, pausing,"),
        (["--processor", "Nope"], "CommandError: Unknown processor 'Nope'"),
        (["--limit", "0"], "CommandError: --limit must be a whole number, 1 or more, not '0'."),
        (["--limit", "many"], "CommandError: --limit must be a whole number, 1 or more, not 'many'."),
    ],
)
def test_list_refuses_bad_filters_in_one_line(capsys, monkeypatch, argv, message):
    assert refused(capsys, monkeypatch, "list", *argv).startswith(message)


# -- show --------------------------------------------------------------------------------------


def test_show_gives_what_an_operator_needs():
    _, running, _ = three_runs()
    running.cursor, running.time_running, running.job_id, running.status_line = "300", 3.0, "job-1", "at row 300"
    running.save()
    RunEvent.objects.log(running, "started", S.ENQUEUED, S.RUNNING, {"source": "engine"}, attempt=1)
    text = runs("show", str(running.pk))
    assert text.startswith(f"Run {running.pk} of IncrementItems\n")
    expected = [
        f"processor {INCREMENT}",
        'config {"delay": 0.5, "fail_at": null}',
        "status running",
        "progress 300/600 items (50.0%), 100 items/s, ETA 0:00:03",
        "cursor 300",
        "attempt 1 (0 retries)",
        "job id job-1",
        "status line at row 300",
        "time running 3.0s",
        "started by Python API, OS user tester",
    ]
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert all(line in lines for line in expected), text
    assert lines[-2:] == ["Last 1 events:", f"{timezone.now():%Y-%m-%d} " + lines[-1].split(" ", 1)[1]]
    assert lines[-1].split()[2:] == ["started", "enqueued->running", "executor"]


def test_show_errored_and_json_with_events():
    errored, _, _ = three_runs()
    errored.backtrace = "Traceback ...\nValueError: boom"
    errored.save()
    for action in ("created", "started", "errored"):
        RunEvent.objects.log(errored, action, "", "", {"source": "python", "user": "ops"})
    assert "error ValueError: boom" in [" ".join(line.split()) for line in runs("show", str(errored.pk)).splitlines()]
    data = runs_json("show", str(errored.pk), "--events", "2")
    assert (data["id"], data["status"], data["backtrace"]) == (errored.pk, "errored", errored.backtrace)
    assert [event["action"] for event in data["events"]] == ["started", "errored"]  # the last ones, oldest first
    assert data["events"][0]["user"] == "ops" and data["events"][0]["detail"] == {"source": "python", "user": "ops"}
    assert runs_json("show", str(errored.pk), "--events", "0")["events"] == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "999999"], "CommandError: There is no run 999999."),
        (["show", "abc"], "CommandError: A run id must be a whole number, 1 or more, not 'abc'."),
        (["show", str(2**70)], f"CommandError: There is no run {2**70}."),
        (["pause", "-3"], "CommandError: A run id must be a whole number, 1 or more, not '-3'."),
        (["resume", "999999", "--background"], "CommandError: There is no run 999999."),
    ],
)
def test_an_unknown_run_is_one_line_exit_2(capsys, monkeypatch, argv, message):
    assert refused(capsys, monkeypatch, *argv) == message


# -- changes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "trait", "ended"),
    [
        ("pause", "running", S.PAUSING),
        ("pause", "enqueued", S.PAUSED),
        ("cancel", "running", S.CANCELLING),
        ("cancel", "paused", S.CANCELLED),
    ],
)
def test_pause_and_cancel_go_through_the_runner_and_are_audited(capsys, monkeypatch, action, trait, ended):
    run = RunFactory(**({trait: True} if trait != "enqueued" else {}))
    old = run.status
    code, out, err = cli(capsys, monkeypatch, "maintenance_runs", action, str(run.pk))
    assert (code, err) == (0, [])
    later = " It stops after its current batch." if ended in (S.PAUSING, S.CANCELLING) else ""
    assert out == f"Run {run.pk} of IncrementItems: {old} -> {ended}.{later}\n"
    run.refresh_from_db()
    assert run.status == ended
    assert_audited_from_this_shell(run.events.get(), action, ["maintenance_runs", action, str(run.pk)])


def test_force_stops_a_stuck_run_and_refuses_one_that_is_not(capsys, monkeypatch):
    run = RunFactory(pausing=True)
    assert refused(capsys, monkeypatch, "force", str(run.pk)).startswith(
        f"CommandError: Run {run.pk} has been pausing for 0s: it can be forced only after STUCK_AFTER (300s)."
    )
    Run.objects.filter(pk=run.pk).update(updated_at=timezone.now() - timedelta(minutes=10))
    data = json.loads(cli(capsys, monkeypatch, "maintenance_runs", "force", str(run.pk), "--json")[1])
    assert (data["id"], data["status"], data["attempt"]) == (run.pk, "paused", 2)
    assert_audited_from_this_shell(run.events.get(), "force", ["maintenance_runs", "force", str(run.pk), "--json"])


@pytest.mark.parametrize(
    ("action", "trait"),
    [("pause", "succeeded"), ("cancel", "errored"), ("resume", "running"), ("force", "paused"), ("pause", "paused")],
)
def test_a_change_the_status_does_not_allow_is_one_line_exit_2_and_changes_nothing(capsys, monkeypatch, action, trait):
    run = RunFactory(**{trait: True})
    extra = ["--background"] if action == "resume" else []
    message = refused(capsys, monkeypatch, action, str(run.pk), *extra)
    assert message.startswith(f"CommandError: Run {run.pk} is {trait}"), message
    assert Run.objects.get(pk=run.pk).status == trait
    assert not run.events.exists()


# -- resume ------------------------------------------------------------------------------------


@override_settings(TASKS=DATABASE_TASKS)
@pytest.mark.parametrize("trait", ["paused", "interrupted"])
def test_resume_background_enqueues_for_the_workers(capsys, monkeypatch, django_capture_on_commit_callbacks, trait):
    run = RunFactory(**{trait: True})
    with django_capture_on_commit_callbacks(execute=True):
        code, out, err = cli(capsys, monkeypatch, "maintenance_runs", "resume", str(run.pk), "--background", "--json")
    assert (code, err) == (0, [])
    run.refresh_from_db()
    assert (run.status, json.loads(out)["status"]) == (S.ENQUEUED, "enqueued")
    job = DBTaskResult.objects.get(pk=run.job_id)
    assert (job.task_path, job.status, job.args_kwargs["args"]) == (perform_run.module_path, "READY", [run.pk, 1])
    argv = ["maintenance_runs", "resume", str(run.pk), "--background", "--json"]
    assert_audited_from_this_shell(run.events.get(), "resume", argv)


def test_resume_in_the_foreground_performs_it_here_with_the_exit_status_of_run_maintenance_task(capsys, monkeypatch):
    Item.objects.bulk_create(Item() for _ in range(25))
    run = RunFactory(paused=True, task=TaskFactory(config={"delay": 0.0, "fail_at": None}))
    code, out, err = cli(capsys, monkeypatch, "maintenance_runs", "resume", str(run.pk))
    assert (code, err) == (0, [])
    assert out.splitlines()[0] == f"Run {run.pk} of {run.task} started."
    assert "25/25 items (100.0%)" in out and "Succeeded in" in out
    assert list(Item.objects.values_list("times_processed", flat=True)) == [1] * 25
    assert_audited_from_this_shell(
        run.events.get(action="resume"), "resume", ["maintenance_runs", "resume", str(run.pk)]
    )

    fail_at = Item.objects.order_by("pk").values_list("pk", flat=True)[3]
    failing = RunFactory(interrupted=True, task=TaskFactory(config={"delay": 0.0, "fail_at": fail_at}))
    code, out, err = cli(capsys, monkeypatch, "maintenance_runs", "resume", str(failing.pk))
    assert code == 1
    assert err[-1].startswith(f"CommandError: Run {failing.pk} errored: testproject.testapp.maintenance.Boom")
    assert Run.objects.get(pk=failing.pk).status == S.ERRORED


def test_resume_json_without_background_is_refused(capsys, monkeypatch):
    run = RunFactory(paused=True)
    message = refused(capsys, monkeypatch, "resume", str(run.pk), "--json")
    assert message == "CommandError: --json goes with --background: a resume in this process prints progress."
    assert Run.objects.get(pk=run.pk).status == S.PAUSED


# -- run_maintenance_task --background / --wait, in this process ---------------------------------


@override_settings(TASKS=DATABASE_TASKS)
def test_background_returns_at_once_with_the_run_enqueued(capsys, monkeypatch, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        code, out, err = cli(capsys, monkeypatch, "run_maintenance_task", "IncrementItems", "--background")
    assert (code, err) == (0, [])
    run = Run.objects.get()
    assert out == (
        f"Run {run.pk} of {run.task} handed to the workers (enqueued). "
        f"Follow it with: manage.py maintenance_runs show {run.pk}\n"
    )
    assert (run.status, run.attempt, run.metadata["source"], run.metadata["host"]) == (
        S.ENQUEUED,
        0,
        "cli",
        socket.gethostname(),
    )
    assert DBTaskResult.objects.get(pk=run.job_id).status == "READY"

    run.cancel()
    with django_capture_on_commit_callbacks(execute=True):
        code, out, err = cli(capsys, monkeypatch, "run_maintenance_task", "RecordOnce", "--background", "-v0")
    assert (code, out, err) == (0, f"{Run.objects.get(task__processor=RECORD).pk}\n", [])


def test_background_refuses_bad_input_like_the_foreground(capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, "run_maintenance_task", "IncrementItems", "--arg", "delay=x", "--wait")
    assert (code, out) == (2, "")
    assert err == ["CommandError: Invalid config for IncrementItems: delay: Enter a number."]
    assert not Run.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_background_exits_1_when_the_backend_refuses_the_job(capsys, monkeypatch, unreachable_rq):  # noqa: F811
    code, out, err = cli(capsys, monkeypatch, "run_maintenance_task", "RecordOnce", "--background")
    run = Run.objects.get()
    assert (code, out, run.status) == (1, "", S.ERRORED)
    assert err[-1].startswith(f"CommandError: Run {run.pk} of {RECORD} could not be enqueued (it is errored): ")


@pytest.mark.django_db(transaction=True)  # the ImmediateBackend performs the run once Runner.run commits
def test_wait_exits_with_the_outcome_of_the_run():
    """With the ImmediateBackend the run is performed inside ``Runner.run``: waiting ends at once."""
    Item.objects.bulk_create(Item() for _ in range(20))
    fail_at = Item.objects.order_by("pk").values_list("pk", flat=True)[5]
    out = io.StringIO()
    call_command("run_maintenance_task", "IncrementItems", "--wait", stdout=out)
    run = Run.objects.get()
    assert out.getvalue().splitlines() == [
        f"Run {run.pk} of {run.task} handed to the workers (succeeded).",
        f"Run {run.pk}: batches of 10 items; 2 commits.",
        f"Run {run.pk}: 20/20 items (100.0%), {run.rate:,.0f} items/s. Succeeded in {run.time_running:.1f}s.",
    ]
    with pytest.raises(CommandError) as error:
        call_command("run_maintenance_task", "IncrementItems", "--arg", f"fail_at={fail_at}", "--wait", verbosity=0)
    failed = Run.objects.latest("pk")
    assert (error.value.returncode, failed.status) == (1, S.ERRORED)
    assert str(error.value).startswith(f"Run {failed.pk} errored: testproject.testapp.maintenance.Boom")


def test_wait_takes_a_run_left_interrupted_as_stopped_only_after_a_grace_period():
    """A worker that shuts down hands its interrupted run back to the queue at once: that is not the end."""
    run = RunFactory.build(interrupted=True, updated_at=timezone.now())
    assert not stopped(run)
    run.updated_at = timezone.now() - timedelta(seconds=INTERRUPTED_GRACE)
    assert stopped(run)
    assert [stopped(RunFactory.build(**{trait: True})) for trait in ("running", "pausing", "paused", "cancelled")] == [
        False,
        False,
        True,
        True,
    ]
