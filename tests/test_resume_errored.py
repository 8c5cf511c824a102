"""Resuming an errored run from its cursor, once the cause is fixed: Runner, command, admin, deploy hook.

The runs here are performed by the default ImmediateBackend, inside the call that enqueues them.
"""

from io import StringIO

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from maintenance_tasks import Runner, signals
from maintenance_tasks.exceptions import (
    ENQUEUE_FAILED,
    TOO_MANY_RECOVERIES,
    RunAlreadyActive,
    UnknownProcessor,
)
from maintenance_tasks.models import DeployRecord, DeployState, Run
from maintenance_tasks.retention import delete_if_still_old
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item, Seen

from .factories import RunFactory

pytestmark = pytest.mark.django_db(transaction=True)  # runs start when their enqueue commits
S = RunStatus
APP = "testproject.testapp.maintenance"
UNTIL_FIXED = f"{APP}.IncrementItemsUntilFixed"


def items(count):
    Item.objects.bulk_create(Item() for _ in range(count))
    return list(Item.objects.order_by("pk").values_list("pk", flat=True))


def times_processed():
    """Return how many items were processed how many times: ``{times: items}``."""
    rows = Item.objects.values("times_processed").annotate(n=Count("pk"))
    return {row["times_processed"]: row["n"] for row in rows}


def errored_run(pks, fail_index, **options):
    """Start a run that hits the bug at item ``pks[fail_index]``; return it, errored."""
    Seen.objects.create(value="bug")
    run = Runner.run(UNTIL_FIXED, {"fail_at": pks[fail_index]}, **options)
    run.refresh_from_db()
    assert (run.status, run.error_class) == (S.ERRORED, f"{APP}.Boom")
    return run


def fix_the_bug():
    Seen.objects.filter(value="bug").delete()


def test_an_errored_10000_row_run_resumed_after_the_fix_processes_each_row_exactly_once():
    pks = items(10_000)
    run = errored_run(pks, 6_789)
    assert (run.cursor, run.tick_count) == (f"[{pks[6_699]}]", 6_700)  # the failing batch was rolled back
    assert times_processed() == {1: 6_700, 0: 3_300}
    error = {field: getattr(run, field) for field in ("error_class", "error_message", "backtrace")}
    assert "hit the bug" in error["error_message"] and "Traceback" in error["backtrace"]

    fix_the_bug()
    Runner.resume(run)

    run.refresh_from_db()
    assert (run.status, run.tick_count, run.tick_total) == (S.SUCCEEDED, 10_000, 10_000)
    assert times_processed() == {1: 10_000}
    assert (run.error_class, run.error_message, run.backtrace) == ("", "", "")
    assert run.ended_at is not None
    resumed = run.events.get(action="resume")
    assert (resumed.from_status, resumed.to_status, resumed.source) == (S.ERRORED, S.ENQUEUED, "python")
    assert resumed.detail == {
        **resumed.detail,
        **error,
        "cursor": f"[{pks[6_699]}]",
        "tick_count": 6_700,
        "retries": 0,
        "recoveries": 0,
    }
    actions = [action for action in run.events.values_list("action", flat=True) if action != "slice_ended"]
    assert actions == ["created", "started", "errored", "resume", "started", "succeeded"]


def test_resuming_clears_ended_at_and_the_counters_of_a_run_errored_by_recoveries():
    """TooManyRecoveries: fixing what killed the executor, then resuming, is the point; the count starts again."""
    run = RunFactory(
        errored=True,
        error_class=TOO_MANY_RECOVERIES,
        error_message="Recovered 2 times in a row at the same cursor",
        cursor="[40]",
        tick_count=40,
        recoveries=3,
        recovered_cursor="[40]",
        retries=2,
        ended_at=timezone.now(),
    )
    Runner.resume(run, execute=False)
    run.refresh_from_db()
    assert (run.status, run.ended_at, run.recoveries, run.retries) == (S.ENQUEUED, None, 0, 0)
    assert (run.cursor, run.tick_count, run.error_class) == ("[40]", 40, "")
    assert Run.objects.active().get() == run  # active again: the one-active-run rule holds it
    detail = run.events.get(action="resume").detail
    assert (detail["error_class"], detail["recoveries"], detail["retries"]) == (TOO_MANY_RECOVERIES, 3, 2)


def test_a_run_errored_because_its_job_was_refused_is_resumed_and_runs():
    pks = items(30)
    run = RunFactory(errored=True, error_class=ENQUEUE_FAILED, error_message="The tasks backend refused the job")
    started = []

    def note(sender, run, **kwargs):
        started.append(run.pk)

    signals.run_started.connect(note)
    try:
        Runner.resume(run)
    finally:
        signals.run_started.disconnect(note)
    run.refresh_from_db()
    assert (run.status, run.tick_count) == (S.SUCCEEDED, len(pks))
    assert times_processed() == {1: 30}
    assert started == [run.pk]  # it never ran: its first claim is its start


def test_resuming_an_errored_run_announces_run_resumed():
    run = RunFactory(errored=True)
    heard = []

    def note(sender, run, **kwargs):
        heard.append((run.pk, run.status))

    signals.run_resumed.connect(note)
    try:
        Runner.resume(run, execute=False)
    finally:
        signals.run_resumed.disconnect(note)
    assert heard == [(run.pk, S.ENQUEUED)]


def test_an_errored_dry_run_is_resumed_as_a_dry_run():
    pks = items(250)
    run = errored_run(pks, 120, dry_run=True)
    fix_the_bug()
    Runner.resume(run)
    run.refresh_from_db()
    assert (run.status, run.dry_run, run.tick_count) == (S.SUCCEEDED, True, 250)
    assert times_processed() == {0: 250}  # every batch rolled back, before and after the error
    assert run.dry_run_report["batches"] == 3


def test_resuming_is_refused_while_another_run_of_the_task_is_active():
    pks = items(20)
    run = errored_run(pks, 5)
    fix_the_bug()
    other = Runner.create(UNTIL_FIXED, {"fail_at": pks[5]})
    before = list(run.events.values_list("action", flat=True))
    with pytest.raises(RunAlreadyActive, match=rf"already has an active run \(run {other.pk}\)"):
        Runner.resume(run)
    run.refresh_from_db()
    assert (run.status, run.error_class) == (S.ERRORED, f"{APP}.Boom")  # as it was, error and all
    assert run.ended_at is not None
    assert list(run.events.values_list("action", flat=True)) == before
    assert Run.objects.active().get() == other


def test_an_errored_run_of_a_processor_gone_from_the_code_is_not_resumed():
    run = RunFactory(errored=True, task__processor="gone.maintenance.Removed")
    with pytest.raises(UnknownProcessor):
        Runner.resume(run)
    run.refresh_from_db()
    assert (run.status, run.error_class) == (S.ERRORED, "ValueError")
    assert not run.events.exists()


def test_pruning_keeps_an_errored_run_resumed_after_it_was_listed():
    old, resumed = RunFactory(errored=True), RunFactory(errored=True, task__config={"delay": 1.0, "fail_at": None})
    listed = Run.objects.filter(status=S.ERRORED)
    ids = tuple(listed.values_list("pk", flat=True))
    Runner.resume(resumed, execute=False)  # between the pruner's listing and its delete
    assert delete_if_still_old(listed, ids) == 1
    assert list(Run.objects.values_list("pk", "status")) == [(resumed.pk, S.ENQUEUED)]
    assert not Run.objects.filter(pk=old.pk).exists()


# -- the foreground command --------------------------------------------------------------------


def test_the_command_resumes_an_errored_run_in_the_foreground():
    pks = items(300)
    run = errored_run(pks, 150)
    fix_the_bug()
    out = StringIO()
    call_command("run_maintenance_task", "--resume", str(run.pk), stdout=out, stderr=StringIO())
    assert f"Run {run.pk} of " in out.getvalue() and "Succeeded" in out.getvalue()
    run.refresh_from_db()
    assert (run.status, run.tick_count) == (S.SUCCEEDED, 300)
    assert times_processed() == {1: 300}
    assert run.events.get(action="resume").source == "cli"


def test_the_command_says_which_run_is_active_when_it_refuses():
    pks = items(20)
    run = errored_run(pks, 5)
    other = Runner.create(UNTIL_FIXED, {"fail_at": pks[5]})
    with pytest.raises(CommandError) as refused:
        call_command("run_maintenance_task", "--resume", str(run.pk), stdout=StringIO(), stderr=StringIO())
    assert refused.value.returncode == 2
    assert str(refused.value) == f"{run.task} already has an active run (run {other.pk})."
    assert Run.objects.get(pk=run.pk).status == S.ERRORED


# -- the deploy hook ----------------------------------------------------------------------------


def test_a_run_once_task_whose_errored_run_was_resumed_and_succeeded_is_done():
    Seen.objects.create(value="deploy:fail")
    call_command("deploy_maintenance_tasks", stdout=StringIO(), stderr=StringIO())
    (run,) = Run.objects.filter(task__processor=f"{APP}.DeployOnce")
    assert run.status == S.ERRORED

    Runner.resume(run, execute=False)  # resumed, not performed yet: the hook sees it active
    out = StringIO()
    call_command("deploy_maintenance_tasks", stdout=out, stderr=StringIO())
    assert f"DeployOnce (once): already active (run {run.pk} enqueued)." in out.getvalue()

    Seen.objects.filter(value="deploy:fail").delete()
    Runner.resume(run, force=True)  # enqueued by this test alone: nothing else would perform it
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED
    out = StringIO()
    call_command("deploy_maintenance_tasks", stdout=out, stderr=StringIO())
    assert f"DeployOnce (once): already done (run {run.pk} succeeded)." in out.getvalue()
    assert Run.objects.filter(task__processor=f"{APP}.DeployOnce").count() == 1
    assert DeployRecord.objects.get(task=run.task).state == DeployState.DONE


# -- the admin ----------------------------------------------------------------------------------


def staff(client, *perms):
    user = User.objects.create_user("alice", is_staff=True)
    for perm in ("view_run", *perms):
        user.user_permissions.add(Permission.objects.get(codename=perm, content_type__app_label="maintenance_tasks"))
    client.force_login(user)
    return user


def run_url(run, action="change"):
    return reverse(f"admin:maintenance_tasks_run_{action}", args=[run.pk])


def resume_form_shown(html):
    return 'data-action="resume">' in html


def test_the_admin_resumes_an_errored_run_and_keeps_its_error_in_the_audit_trail(client):
    staff(client, "pause_run")
    pks = items(250)
    run = errored_run(pks, 210)
    html = client.get(run_url(run)).content.decode()
    assert resume_form_shown(html)
    assert "hit the bug" in html  # the run's error, shown as the run's

    fix_the_bug()
    response = client.post(run_url(run, "resume"), {"next": run_url(run)}, follow=True)
    assert [str(message) for message in response.context["messages"]] == [f"Resume run {run.pk}: Errored → Succeeded."]
    run.refresh_from_db()
    assert (run.status, run.error_class) == (S.SUCCEEDED, "")
    assert times_processed() == {1: 250}
    html = response.content.decode()
    assert not resume_form_shown(html)
    assert '<details class="mt-event-error">' in html  # the error, now in the audit trail
    assert f"<code>{APP}.Boom</code>: the batch of item {pks[210]} hit the bug" in html
    assert f"At cursor [{pks[199]}], after 200 items." in html
    assert run.events.get(action="resume").user == "alice"


def test_resuming_an_errored_run_needs_the_pause_permission(client):
    staff(client, "cancel_run", "start_run")
    run = RunFactory(errored=True)
    assert not resume_form_shown(client.get(run_url(run)).content.decode())
    assert client.post(run_url(run, "resume")).status_code == 403
    assert Run.objects.get(pk=run.pk).status == S.ERRORED


def test_the_admin_says_why_it_cannot_resume_while_another_run_is_active(client):
    staff(client, "pause_run")
    run = RunFactory(errored=True)
    other = RunFactory(paused=True, task=run.task)
    response = client.post(run_url(run, "resume"), follow=True)
    assert [str(message) for message in response.context["messages"]] == [
        f"{run.task} already has an active run (run {other.pk})."
    ]
    assert Run.objects.get(pk=run.pk).status == S.ERRORED
