"""The deploy hook: run_on_deploy processors, deploy_maintenance_tasks and its verbs.

These tests use the default ImmediateBackend: a run the hook enqueues is performed before the
hook goes on. test_deploy_processes.py runs concurrent hooks and db_worker in real processes.
"""

from datetime import timedelta
from io import StringIO

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from maintenance_tasks import Processor, Runner, deploy
from maintenance_tasks.models import DeployRecord, DeployState, Run, RunEvent, Schedule, Task
from maintenance_tasks.registry import registry
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Seen

from .factories import ItemFactory, RunFactory

pytestmark = pytest.mark.django_db(transaction=True)  # runs start when the hook commits
S = RunStatus
APP = "testproject.testapp.maintenance"
ONCE = f"{APP}.DeployOnce"
ALWAYS = f"{APP}.DeployAlways"
INCREMENT = f"{APP}.IncrementItems"


def hook(*args, **options):
    out = StringIO()
    call_command("deploy_maintenance_tasks", *args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def refused(*args):
    with pytest.raises(CommandError) as info:
        hook(*args)
    return info.value


def runs(path):
    return list(Run.objects.filter(task__processor=path).order_by("pk"))


def once_rows():
    return Seen.objects.filter(value__startswith="deploy-once:").count()


def fail_once_runs():
    Seen.objects.create(value="deploy:fail")


# -- the hook ---------------------------------------------------------------------------------


def test_a_first_deploy_starts_each_processor_and_a_second_only_the_always_one():
    out = hook()
    (once,) = runs(ONCE)
    assert f"DeployOnce (once): enqueued run {once.pk} (not run yet); now succeeded." in out
    assert "DeployAlways (always): enqueued run" in out
    assert "2 processors run on deploy: 2 enqueued, 0 resumed, 0 recovered." in out
    assert once_rows() == 3
    out = hook()
    assert f"DeployOnce (once): already done (run {once.pk} succeeded)." in out
    assert len(runs(ONCE)) == 1 and once_rows() == 3
    assert [run.status for run in runs(ALWAYS)] == [S.SUCCEEDED, S.SUCCEEDED]
    assert DeployRecord.objects.get(task=once.task).state == DeployState.DONE


def test_runs_record_the_deploy_as_who_started_them():
    hook("--deploy-id", "release-7")
    run = runs(ONCE)[0]
    assert run.metadata["source"] == "deploy" and run.metadata["deploy_id"] == "release-7"
    assert {"user", "host", "pid", "argv"} <= set(run.metadata)
    assert run.events.first().source == "deploy"


def test_hooks_of_one_deploy_id_start_an_always_processor_once():
    out = [hook("--deploy-id", "v42") for _ in range(3)]
    assert len(runs(ALWAYS)) == 1
    assert "DeployAlways (always): already started by this deploy" in out[2]
    hook("--deploy-id", "v43")
    assert len(runs(ALWAYS)) == 2


def test_the_deploy_id_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MAINTENANCE_DEPLOY_ID", "v1")
    hook()
    hook()
    assert len(runs(ALWAYS)) == 1
    monkeypatch.setenv("MAINTENANCE_DEPLOY_ID", "")  # empty: no deploy id
    hook()
    assert len(runs(ALWAYS)) == 2


def test_an_always_processor_with_an_active_run_is_not_started_again():
    active = Runner.create(ALWAYS, {})
    out = hook()
    assert f"DeployAlways (always): already active (run {active.pk} enqueued)." in out
    assert runs(ALWAYS) == [active]


def test_an_errored_run_once_is_retried_by_the_next_deploy_not_by_the_same_one():
    fail_once_runs()
    hook("--deploy-id", "d1")
    (errored,) = runs(ONCE)
    assert errored.status == S.ERRORED
    out = hook("--deploy-id", "d1")
    assert f"DeployOnce (once): held (run {errored.pk} errored during this deploy; the next deploy retries it)." in out
    assert len(runs(ONCE)) == 1
    Seen.objects.filter(value="deploy:fail").delete()
    out = hook("--deploy-id", "d2")
    retried = runs(ONCE)[1]
    assert f"enqueued run {retried.pk} (retry: run {errored.pk} errored); now succeeded." in out
    assert once_rows() == 3


def test_a_hook_started_before_the_run_errored_does_not_retry_it():
    started_at = timezone.now()  # a concurrent hook of the same deploy, without a deploy id
    fail_once_runs()
    hook()
    report = deploy.deploy(actor={"source": "deploy"}, started_at=started_at)
    outcome = next(outcome for outcome in report.outcomes if outcome.path == ONCE)
    assert outcome.result == deploy.DeployResult.HELD
    assert len(runs(ONCE)) == 1
    hook()  # a later deploy
    assert [run.status for run in runs(ONCE)] == [S.ERRORED, S.ERRORED]


def test_a_cancelled_run_once_is_held_until_reset():
    run = Runner.cancel(Runner.create(ONCE, {}))
    out = hook()
    assert f"DeployOnce (once): held (run {run.pk} was cancelled; --reset to run it again, or --skip)." in out
    assert runs(ONCE) == [run]
    assert hook("--reset", "DeployOnce") == f"{ONCE} reset: the next deploy starts it.\n"
    assert "DeployOnce (once): enqueued run" in hook()
    assert [r.status for r in runs(ONCE)] == [S.CANCELLED, S.SUCCEEDED]


def test_a_run_once_an_operator_already_ran_counts_as_done():
    run = Runner.run(ONCE, {})
    assert run.status == S.SUCCEEDED
    assert f"DeployOnce (once): already done (run {run.pk} succeeded)." in hook()
    assert runs(ONCE) == [run]


def test_a_run_an_operator_started_after_an_errored_one_counts():
    fail_once_runs()
    hook()
    Seen.objects.filter(value="deploy:fail").delete()
    manual = Runner.run(ONCE, {})
    assert f"DeployOnce (once): already done (run {manual.pk} succeeded)." in hook()
    assert [run.status for run in runs(ONCE)] == [S.ERRORED, S.SUCCEEDED]


def test_a_run_once_that_succeeded_stays_done_after_a_later_run_errored():
    hook()
    done = runs(ONCE)[0]
    fail_once_runs()
    Runner.run(ONCE, {})  # an operator runs it again, and it errors
    assert f"DeployOnce (once): already done (run {done.pk} succeeded)." in hook()
    assert [run.status for run in runs(ONCE)] == [S.SUCCEEDED, S.ERRORED]


def test_one_task_and_one_record_per_processor():
    hook()
    hook()
    assert Task.objects.filter(processor=ONCE).count() == 1
    assert DeployRecord.objects.filter(task__processor=ONCE).count() == 1


def test_interrupted_runs_are_resumed():
    ItemFactory.create_batch(5)
    run = RunFactory(interrupted=True, task__processor=INCREMENT)
    out = hook()
    assert f"resume run {run.pk} of {run.task} (interrupted)." in out
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED and run.tick_count == 5
    resume = run.events.get(action="resume")
    assert (resume.source, resume.from_status, resume.to_status) == ("deploy", S.INTERRUPTED, S.ENQUEUED)


def test_runs_whose_worker_died_are_recovered():
    ItemFactory.create_batch(3)
    run = RunFactory(running=True, task__processor=INCREMENT, heartbeat_at=timezone.now() - timedelta(hours=1))
    out = hook()
    assert f"recover run {run.pk} of {run.task} (its worker is silent)." in out
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED
    assert run.events.get(action="recovered").source == "deploy"


def test_a_paused_run_is_left_for_an_operator():
    run = Runner.pause(Runner.create(ONCE, {}))
    assert f"DeployOnce (once): already active (run {run.pk} paused)." in hook()
    run.refresh_from_db()
    assert run.status == S.PAUSED


def test_the_hook_syncs_the_schedules_processors_declare(monkeypatch):
    class Nightly(Processor):
        schedule = "0 3 * * *"
        __module__ = APP

        def process(self):
            pass

    monkeypatch.setattr(registry, "_processors", {**registry.processors(), f"{APP}.Nightly": Nightly})
    out = hook()
    assert f"schedule of {APP}.Nightly created (its processor's schedule changed).\n" in out
    assert Schedule.objects.get(code_processor=f"{APP}.Nightly").cron == "0 3 * * *"
    assert "schedule of" not in hook()
    Nightly.schedule = None
    assert f"schedule of {APP}.Nightly removed" in hook()
    assert not Schedule.objects.exists()


def test_nothing_is_printed_at_verbosity_0():
    assert hook(verbosity=0) == ""
    assert len(runs(ONCE)) == 1


# -- --dry-run, --todo, --status ------------------------------------------------------------


def database_rows():
    return [model.objects.count() for model in (Task, Run, RunEvent, DeployRecord)]


def test_dry_run_and_todo_say_what_would_happen_and_change_nothing():
    ItemFactory.create_batch(2)
    interrupted = RunFactory(interrupted=True, task__processor=INCREMENT)
    before = database_rows()
    out = hook("--dry-run")
    assert f"would resume run {interrupted.pk} of {interrupted.task} (interrupted)." in out
    assert "DeployOnce (once): would enqueue a run (not run yet)." in out
    assert "Dry run, nothing changed: 2 processors run on deploy: 2 enqueued, 1 resumed, 0 recovered." in out
    assert hook("--todo") == (
        f"resume run {interrupted.pk} of {interrupted.task}\n"
        f"start {ALWAYS} (always): runs on every deploy\n"
        f"start {ONCE} (once): not run yet\n"
    )
    assert database_rows() == before
    interrupted.refresh_from_db()
    assert interrupted.status == S.INTERRUPTED


def test_todo_after_a_deploy():
    hook("--deploy-id", "x")
    assert hook("--todo") == f"start {ALWAYS} (always): runs on every deploy\n"
    assert hook("--todo", "--deploy-id", "x") == "Nothing to start.\n"


def test_status_says_what_ran_when_and_how_it_ended():
    out = hook("--status")
    assert f"{ONCE} (once): to run on the next deploy; never run." in out
    assert f"{ALWAYS} (always): runs on every deploy; never run." in out
    hook()
    run = runs(ONCE)[0]
    out = hook("--status")
    assert f"{ONCE} (once): done; last run {run.pk} succeeded, started {run.started_at:%Y-%m-%d %H:%M:%S} UTC" in out
    assert "(deploy)." in out


def test_status_without_any_deploy_processor(monkeypatch):
    monkeypatch.setattr(registry, "_processors", {INCREMENT: registry.get(INCREMENT)})
    assert hook("--status") == "No processor runs on deploy (none sets run_on_deploy).\n"


# -- --skip, --reset ----------------------------------------------------------------------


def test_skip_marks_a_run_once_processor_done_without_running_it():
    assert hook("--skip", "DeployOnce") == f"{ONCE} marked as done without running it: deploys will not start it.\n"
    out = hook()
    assert "DeployOnce (once): skipped." in out
    assert runs(ONCE) == [] and once_rows() == 0
    status = hook("--status")
    assert f"{ONCE} (once): skipped; never run; skipped by " in status
    assert hook("--skip", ONCE) == f"{ONCE} was already skipped.\n"
    hook("--reset", ONCE)
    hook()
    assert [run.status for run in runs(ONCE)] == [S.SUCCEEDED]


def test_skip_of_a_done_processor_changes_nothing():
    hook()
    run = runs(ONCE)[0]
    assert hook("--skip", "DeployOnce") == f"{ONCE} is already done (run {run.pk} succeeded): nothing to skip.\n"
    assert DeployRecord.objects.get(task=run.task).state == DeployState.DONE


def test_reset_of_a_done_processor_runs_it_again():
    hook()
    out = hook("--reset", "DeployOnce")
    assert out == f"{ONCE} reset: the next deploy starts it.\n"
    assert f"{ONCE} (once): to run on the next deploy; never run; reset by " in hook("--status")
    assert f"start {ONCE} (once): reset\n" in hook("--todo")
    hook()
    assert [run.status for run in runs(ONCE)] == [S.SUCCEEDED, S.SUCCEEDED]
    assert once_rows() == 6


@pytest.mark.parametrize("verb", ["--skip", "--reset"])
@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "Nope",
            "Unknown processor 'Nope': only processors defined in an installed app's maintenance.py or maintenance/ package can be run.",
        ),
        ("os.system", "Unknown processor 'os.system'"),
        ("DeployAlways", f"{ALWAYS} is not a run-once processor (run_on_deploy = 'always')."),
        ("IncrementItems", f"{INCREMENT} is not a run-once processor (run_on_deploy = None)."),
    ],
)
def test_skip_and_reset_refuse_what_is_not_a_run_once_processor(verb, name, message):
    error = refused(verb, name)
    assert error.returncode == 2
    assert str(error).startswith(message)
    assert "\n" not in str(error)
    assert DeployRecord.objects.count() == 0


@pytest.mark.parametrize("verb", ["--skip", "--reset"])
def test_skip_and_reset_refuse_an_ambiguous_name(verb, monkeypatch):
    processors = dict(registry.processors())
    processors[f"{APP}.Other"] = type("DeployOnce", (Processor,), {"__module__": APP, "run_on_deploy": "once"})
    monkeypatch.setattr(registry, "_processors", processors)
    error = refused(verb, "DeployOnce")
    assert error.returncode == 2 and "'DeployOnce' is ambiguous" in str(error)


@pytest.mark.parametrize("verb", ["--skip", "--reset"])
def test_skip_and_reset_refuse_while_a_run_is_active(verb):
    run = Runner.create(ONCE, {})
    error = refused(verb, "DeployOnce")
    assert error.returncode == 2
    assert str(error) == f"{ONCE} has an active run {run.pk} (enqueued): " + (
        "cancel it first, then skip." if verb == "--skip" else "it cannot be reset now."
    )


# -- --wait -----------------------------------------------------------------------------------


def test_wait_succeeds_when_every_run_succeeded():
    out = hook("--wait")
    assert out.endswith("All 2 runs of this deploy succeeded.\n")


def test_wait_exits_1_when_a_run_errored():
    fail_once_runs()
    error = refused("--wait")
    run = runs(ONCE)[0]
    assert error.returncode == 1
    assert str(error) == f"Errored: run {run.pk} of {run.task}: testproject.testapp.maintenance.Boom: told to fail"


def test_wait_exits_3_when_a_run_is_paused():
    run = Runner.pause(Runner.create(ONCE, {}))
    error = refused("--wait")
    assert error.returncode == 3
    assert str(error) == f"Stopped before the end: run {run.pk} paused."


def test_wait_of_a_late_hook_reports_the_runs_its_deploy_started():
    fail_once_runs()
    hook("--deploy-id", "d1")
    error = refused("--wait", "--deploy-id", "d1")  # held: errored during this deploy
    assert error.returncode == 1
    Seen.objects.filter(value="deploy:fail").delete()
    hook("--deploy-id", "d2")
    assert hook("--wait", "--deploy-id", "d2").endswith("All 2 runs of this deploy succeeded.\n")


def test_wait_with_nothing_to_wait_for(monkeypatch):
    monkeypatch.setattr(registry, "_processors", {ONCE: registry.get(ONCE)})
    hook("--skip", "DeployOnce")
    assert hook("--wait").endswith("Nothing to wait for: this deploy started no run and found none active.\n")


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--wait", "--status"], "--wait only goes with the hook itself, not with another verb."),
        (["--wait", "--dry-run"], "--wait only goes with the hook itself, not with another verb."),
        (["--timeout", "5"], "--timeout only goes with --wait."),
    ],
)
def test_bad_combinations_exit_2(args, message):
    error = refused(*args)
    assert (error.returncode, str(error)) == (2, message)
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--wait", "--timeout", "0"], "argument --timeout: must be a positive number of seconds, not '0'"),
        (["--wait", "--timeout", "soon"], "argument --timeout: not a number of seconds: 'soon'"),
        (["--deploy-id", "x" * 101], "argument --deploy-id: must be 1 to 100 characters"),
        (["--deploy-id", " "], "argument --deploy-id: must be 1 to 100 characters, not ''"),
        (["--status", "--todo"], "argument --todo: not allowed with argument --status"),
        (["--skip"], "argument --skip: expected one argument"),
    ],
)
def test_bad_arguments_are_named(args, message):
    error = refused(*args)
    assert message in str(error)
    assert Run.objects.count() == 0


def test_a_bad_deploy_id_in_the_environment_is_named(monkeypatch):
    monkeypatch.setenv("MAINTENANCE_DEPLOY_ID", "x" * 101)
    error = refused()
    assert error.returncode == 2 and str(error).startswith("$MAINTENANCE_DEPLOY_ID must be 1 to 100 characters")


# -- system checks ------------------------------------------------------------------------------


def deploy_check_messages(monkeypatch, **classes):
    processors = dict(registry.processors())
    for name, attributes in classes.items():
        processors[f"{APP}.{name}"] = type(name, (Processor,), {"__module__": APP, **attributes})
    monkeypatch.setattr(registry, "_processors", processors)
    return [
        message
        for message in checks.run_checks(tags=[checks.Tags.compatibility])
        if message.id in ("maintenance_tasks.E008", "maintenance_tasks.E009")
    ]


def test_deploy_processors_of_the_test_project_pass_the_checks(monkeypatch):
    assert deploy_check_messages(monkeypatch) == []


@pytest.mark.parametrize("value", ["sometimes", True, "ONCE", 1])
def test_an_unknown_run_on_deploy_value_is_reported(monkeypatch, value):
    (message,) = deploy_check_messages(monkeypatch, Odd={"run_on_deploy": value})
    assert message.id == "maintenance_tasks.E008"
    assert message.msg == f'{APP}.Odd.run_on_deploy must be None, "once" or "always", not {value!r}.'


def test_a_deploy_processor_needing_parameters_is_reported(monkeypatch):
    (message,) = deploy_check_messages(
        monkeypatch, NeedsName={"run_on_deploy": "once", "__annotations__": {"name": str}}
    )
    assert message.id == "maintenance_tasks.E009"
    assert message.msg == (
        f"{APP}.NeedsName runs on deploy, so it runs with its default parameters, "
        "but they are not valid: name: This parameter is required."
    )
