"""The scheduler driven by an injected clock: cron, run_at, DST, skipping, missed slots, overdue runs, retention."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from maintenance_tasks import Processor
from maintenance_tasks.cron import cron_error, next_cron
from maintenance_tasks.models import DeployRecord, JobChain, Run, Schedule, SchedulerState, ScheduleSource, Task
from maintenance_tasks.overdue import flag_overdue_runs, overdue_for
from maintenance_tasks.registry import path_of, registry
from maintenance_tasks.retention import prune_runs
from maintenance_tasks.scheduling import scheduler_pass, sync_code_schedules
from maintenance_tasks.signals import run_overdue
from maintenance_tasks.status import RunStatus

from .factories import RunFactory, TaskFactory

pytestmark = pytest.mark.django_db

S = RunStatus
INCREMENT = "testproject.testapp.maintenance.IncrementItems"
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def make_schedule(now=T0, **fields):
    task = TaskFactory(processor=INCREMENT, config={"delay": 0.0, "fail_at": None})
    schedule = Schedule(task=task, **fields)
    schedule.next_run_at = schedule.first_due(now)
    schedule.save()
    return schedule


def runs_of(schedule):
    return list(Run.objects.filter(metadata__schedule=schedule.pk).order_by("pk"))


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("", "Enter a cron expression"),
        ("0 3 * *", "5 fields"),
        ("0 0 3 * * *", "5 fields"),
        ("61 3 * * *", "not a valid cron expression"),
        ("0 3 * * mon-banana", "not a valid cron expression"),
    ],
)
def test_a_bad_cron_expression_is_refused_naming_the_field(expression, fragment):
    assert fragment in cron_error(expression)
    schedule = Schedule(task=TaskFactory(), cron=expression)
    with pytest.raises(ValidationError) as caught:
        schedule.full_clean()
    assert list(caught.value.message_dict) == ["cron"]


def test_a_run_at_in_the_past_is_refused_naming_the_field():
    schedule = Schedule(task=TaskFactory(), run_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(ValidationError) as caught:
        schedule.full_clean()
    assert caught.value.message_dict == {"run_at": ["This time is in the past."]}


def test_cron_and_run_at_together_are_refused():
    schedule = Schedule(task=TaskFactory(), cron="0 3 * * *", run_at=timezone.now() + timedelta(days=1))
    with pytest.raises(ValidationError) as caught:
        schedule.full_clean()
    assert list(caught.value.message_dict) == ["run_at"]


def test_a_one_off_schedule_that_has_run_can_still_be_edited():
    schedule = make_schedule(now=timezone.now(), run_at=timezone.now() + timedelta(seconds=5))
    schedule = Schedule.objects.get(pk=schedule.pk)
    schedule.run_at = schedule.run_at  # unchanged, even once it is past
    schedule.enabled = False
    schedule.full_clean()


# -- cron, run_at, DST --------------------------------------------------------------------------


def test_cron_starts_one_run_per_due_time():
    schedule = make_schedule(cron="0 3 * * *")
    assert schedule.next_run_at == datetime(2026, 6, 2, 3, 0, tzinfo=UTC)
    assert scheduler_pass(datetime(2026, 6, 2, 2, 59, tzinfo=UTC)).started == []
    started = scheduler_pass(datetime(2026, 6, 2, 3, 0, 30, tzinfo=UTC)).started
    assert [run.metadata["source"] for run in started] == ["schedule"]
    assert started[0].metadata["due"] == "2026-06-02T03:00:00+00:00"
    assert scheduler_pass(datetime(2026, 6, 2, 3, 1, tzinfo=UTC)).started == []  # the same due time: not again
    schedule.refresh_from_db()
    assert schedule.next_run_at == datetime(2026, 6, 3, 3, 0, tzinfo=UTC)
    assert schedule.last_run == started[0]
    assert schedule.last_run_at == datetime(2026, 6, 2, 3, 0, 30, tzinfo=UTC)


def test_run_at_starts_one_run_then_nothing():
    schedule = make_schedule(run_at=T0 + timedelta(hours=1))
    assert scheduler_pass(T0).started == []
    [run] = scheduler_pass(T0 + timedelta(hours=1)).started
    assert run.status == S.ENQUEUED and run.metadata["schedule"] == schedule.pk
    schedule.refresh_from_db()
    assert schedule.next_run_at is None
    Run.objects.filter(pk=run.pk).update(status=S.SUCCEEDED)
    assert scheduler_pass(T0 + timedelta(days=30)).started == []


def test_a_paused_schedule_starts_nothing():
    make_schedule(cron="* * * * *", enabled=False)
    assert scheduler_pass(T0 + timedelta(days=1)).started == []


def test_cron_follows_the_time_zone_across_daylight_saving_time(settings):
    settings.TIME_ZONE = "Europe/Paris"  # clocks go forward on 2026-03-29 at 02:00, back on 2026-10-25 at 03:00
    start = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    schedule = make_schedule(now=start, cron="0 3 * * *")
    due_times = []
    now = start
    for _ in range(4):
        now = Schedule.objects.get(pk=schedule.pk).next_run_at
        [run] = scheduler_pass(now).started
        Run.objects.filter(pk=run.pk).update(status=S.SUCCEEDED)
        due_times.append(datetime.fromisoformat(run.metadata["due"]))
    # 03:00 in Paris each day: 02:00 UTC in winter time, 01:00 UTC in summer time.
    assert [t.astimezone(UTC).hour for t in due_times] == [2, 1, 1, 1]
    assert {timezone.localtime(t).hour for t in due_times} == {3}
    # A time the clock skips runs at the first time after it.
    assert next_cron("30 2 * * *", datetime(2026, 3, 28, 12, tzinfo=UTC)) == datetime(2026, 3, 29, 1, tzinfo=UTC)


# -- several due times, active runs -----------------------------------------------------------


def test_missed_due_times_produce_one_run():
    schedule = make_schedule(cron="*/5 * * * *")
    later = T0 + timedelta(hours=10)  # 120 due times missed
    assert len(scheduler_pass(later).started) == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at == later + timedelta(minutes=5)
    assert len(runs_of(schedule)) == 1


def test_a_schedule_whose_run_is_still_active_is_skipped_not_piled_up():
    schedule = make_schedule(cron="*/5 * * * *")
    [first] = scheduler_pass(T0 + timedelta(minutes=5)).started
    result = scheduler_pass(T0 + timedelta(minutes=10))
    assert result.started == [] and result.skipped == [schedule]
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0 + timedelta(minutes=15)  # the skipped due time is gone
    Run.objects.filter(pk=first.pk).update(status=S.SUCCEEDED)
    assert len(scheduler_pass(T0 + timedelta(minutes=15)).started) == 1
    assert len(runs_of(schedule)) == 2


def test_a_schedule_of_a_processor_gone_from_the_code_starts_nothing(caplog):
    task = Task.objects.create(processor="testproject.testapp.maintenance.Gone", config={}, config_digest="x")
    Schedule.objects.create(task=task, cron="* * * * *", next_run_at=T0)
    assert scheduler_pass(T0).started == []
    assert "Unknown processor" in caplog.text


# -- code schedules -----------------------------------------------------------------------------


@pytest.fixture
def nightly():
    class Nightly(Processor):
        schedule = "0 3 * * *"
        __module__ = "testproject.testapp.maintenance"

        def process(self):
            pass

    registry._processors = {**registry.processors(), path_of(Nightly): Nightly}
    return Nightly


def test_code_schedules_are_created_updated_and_removed(nightly):
    path = path_of(nightly)
    assert sync_code_schedules(T0).created == [path]
    schedule = Schedule.objects.get(code_processor=path)
    assert (schedule.cron, schedule.source, schedule.task.processor) == ("0 3 * * *", ScheduleSource.CODE, path)
    assert schedule.next_run_at == datetime(2026, 6, 2, 3, 0, tzinfo=UTC)
    assert sync_code_schedules(T0).created == []  # nothing changes: nothing done

    Schedule.objects.filter(pk=schedule.pk).update(enabled=False)  # paused in the admin
    nightly.schedule = "30 4 * * 1"
    assert sync_code_schedules(T0).updated == [path]
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.enabled) == ("30 4 * * 1", False)  # still paused

    nightly.schedule = None
    assert sync_code_schedules(T0).removed == [path]
    assert not Schedule.objects.exists()


def test_a_bad_schedule_in_code_is_a_system_check_error(nightly):
    from django.core import checks

    nightly.schedule = "0 3 * *"
    messages = [m for m in checks.run_checks() if m.id == "maintenance_tasks.E010"]
    assert len(messages) == 1 and "5 fields" in messages[0].msg
    assert sync_code_schedules(T0).created == []  # and it is not scheduled


# -- overdue runs ---------------------------------------------------------------------------------


def test_an_overdue_run_is_flagged_once_with_a_signal_and_a_warning(settings, caplog):
    settings.MAINTENANCE_TASKS = {"OVERDUE_AFTER": 3600}
    run = RunFactory(running=True)
    Run.objects.filter(pk=run.pk).update(started_at=T0)
    received = []

    def receiver(sender, run, active_for, **kwargs):
        received.append((run.pk, active_for))

    run_overdue.connect(receiver)
    try:
        assert scheduler_pass(T0 + timedelta(minutes=59)).overdue == []
        assert [r.pk for r in scheduler_pass(T0 + timedelta(minutes=61)).overdue] == [run.pk]
        assert scheduler_pass(T0 + timedelta(hours=5)).overdue == []  # once per run
        assert flag_overdue_runs(T0 + timedelta(hours=6)) == []
    finally:
        run_overdue.disconnect(receiver)
    assert received == [(run.pk, timedelta(minutes=61))]
    assert f"Run {run.pk} of" in caplog.text and "is overdue" in caplog.text
    run.refresh_from_db()
    assert run.overdue_flagged_at == T0 + timedelta(minutes=61)


def test_expected_duration_of_the_processor_wins_over_the_setting(settings):
    from testproject.testapp.maintenance import IncrementItems

    settings.MAINTENANCE_TASKS = {"OVERDUE_AFTER": 3600}
    run = RunFactory(running=True)
    Run.objects.filter(pk=run.pk).update(started_at=T0)
    run.refresh_from_db()
    IncrementItems.expected_duration = timedelta(minutes=5)
    try:
        assert overdue_for(run, T0 + timedelta(minutes=6)) == timedelta(minutes=6)
        assert [r.pk for r in flag_overdue_runs(T0 + timedelta(minutes=6))] == [run.pk]
    finally:
        IncrementItems.expected_duration = None
    assert overdue_for(run, T0 + timedelta(minutes=6)) is None


def test_paused_and_ended_runs_are_never_overdue():
    for trait in ("paused", "interrupted", "succeeded"):
        run = RunFactory(**{trait: True}, task=TaskFactory(processor=INCREMENT, config={"delay": len(trait)}))
        assert overdue_for(run, T0 + timedelta(days=365)) is None


# -- retention ----------------------------------------------------------------------------------


def ended(task, status, days_ago, now=T0):
    run = RunFactory(task=task, status=status)
    Run.objects.filter(pk=run.pk).update(ended_at=now - timedelta(days=days_ago))
    return run


def test_prune_deletes_old_runs_by_status_and_keeps_each_tasks_latest(settings):
    settings.MAINTENANCE_TASKS = {"RETENTION": {"succeeded": 10, "errored": 100, "cancelled": None}}
    task = TaskFactory(processor=INCREMENT, config={})
    other = TaskFactory(processor=INCREMENT, config={"delay": 1})
    old_ok = ended(task, S.SUCCEEDED, 20)
    recent_ok = ended(task, S.SUCCEEDED, 5)
    old_error = ended(task, S.ERRORED, 50)
    ancient_error = ended(task, S.ERRORED, 200)
    old_cancelled = ended(task, S.CANCELLED, 1000)
    latest = ended(task, S.SUCCEEDED, 30)  # the task's latest run, however old
    only = ended(other, S.SUCCEEDED, 500)  # another task's only run
    active = RunFactory(task=TaskFactory(processor=INCREMENT, config={"delay": 2}), paused=True)

    assert prune_runs(T0, dry_run=True) == {"succeeded": 1, "errored": 1}
    assert Run.objects.count() == 8
    assert prune_runs(T0) == {"succeeded": 1, "errored": 1}
    kept = set(Run.objects.values_list("pk", flat=True))
    assert kept == {recent_ok.pk, old_error.pk, old_cancelled.pk, latest.pk, only.pk, active.pk}
    assert old_ok.pk not in kept and ancient_error.pk not in kept


def test_prune_keeps_the_run_the_deploy_hook_counts(settings):
    settings.MAINTENANCE_TASKS = {"RETENTION": {"succeeded": 10}}
    task = TaskFactory(processor=INCREMENT, config={})
    counted = ended(task, S.SUCCEEDED, 40)
    other = ended(task, S.SUCCEEDED, 30)
    ended(task, S.ERRORED, 20)  # a later manual run: the task's latest
    DeployRecord.objects.create(task=task, run=counted)
    assert prune_runs(T0)["succeeded"] == 1
    assert Run.objects.filter(pk=counted.pk).exists() and not Run.objects.filter(pk=other.pk).exists()


def test_the_scheduler_prunes_once_a_day(settings):
    settings.MAINTENANCE_TASKS = {"RETENTION": {"succeeded": 1}}
    task = TaskFactory(processor=INCREMENT, config={})
    ended(task, S.SUCCEEDED, 3)
    ended(task, S.SUCCEEDED, 0)
    assert scheduler_pass(T0).pruned == {"succeeded": 1, "cancelled": 0, "errored": 0}
    assert scheduler_pass(T0 + timedelta(hours=23)).pruned is None
    assert scheduler_pass(T0 + timedelta(hours=25)).pruned == {"succeeded": 0, "cancelled": 0, "errored": 0}
    assert SchedulerState.objects.get().last_pruned_at == T0 + timedelta(hours=25)


# -- the self-re-enqueuing scheduler job ----------------------------------------------------------


@pytest.fixture
def database_backend(settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


def queued_passes():
    from django_tasks_db.models import DBTaskResult

    from maintenance_tasks.scheduling import scheduler_job

    jobs = DBTaskResult.objects.filter(task_path=scheduler_job.module_path, status="READY")
    return sorted(job.args_kwargs["args"][0] for job in jobs)


def test_the_scheduler_job_chain_keeps_one_live_job(database_backend):
    from maintenance_tasks.scheduling import ensure_scheduler, scheduler_job

    assert ensure_scheduler() is True
    assert ensure_scheduler() is False  # alive: no second chain
    [token] = queued_passes()
    make_schedule(now=timezone.now(), cron="0 3 * * *")

    assert scheduler_job.call(token).startswith("started 0")
    assert queued_passes() == [token, token + 1]  # the job just performed is still READY: we called it
    assert scheduler_job.call(token) == "superseded"  # a duplicate does nothing, enqueues nothing
    assert queued_passes() == [token, token + 1]
    chain = JobChain.objects.get(name="scheduler")
    assert chain.token == token + 1
    assert chain.next_run_at <= timezone.now() + timedelta(seconds=60)

    # A chain whose job was lost is replaced once its pass is long overdue; the old one stops.
    JobChain.objects.filter(name="scheduler").update(next_run_at=timezone.now() - timedelta(hours=1))
    assert ensure_scheduler() is True
    assert scheduler_job.call(token + 1) == "superseded"
    assert queued_passes() == [token, token + 1, token + 2]


def test_the_scheduler_chain_goes_on_after_a_pass_that_fails(database_backend, monkeypatch, caplog):
    from maintenance_tasks import scheduling

    assert scheduling.ensure_scheduler() is True
    [token] = queued_passes()

    def broken(now=None):
        raise RuntimeError("the database hiccuped")

    monkeypatch.setattr(scheduling, "scheduler_pass", broken)
    assert scheduling.scheduler_job.call(token).startswith("started 0")
    assert queued_passes() == [token, token + 1]  # the next pass is enqueued all the same
    assert "The scheduler pass failed" in caplog.text


def test_no_chain_with_a_backend_that_runs_jobs_in_process():
    from maintenance_tasks.scheduling import ensure_scheduler

    assert ensure_scheduler() is False  # the immediate backend would never return


def test_migrate_syncs_code_schedules(nightly):
    from django.apps import apps
    from django.db.models.signals import post_migrate

    config = apps.get_app_config("maintenance_tasks")
    post_migrate.send(
        sender=config, app_config=config, using="default", verbosity=0, interactive=False, apps=apps, plan=[]
    )
    assert Schedule.objects.get().code_processor == path_of(nightly)


def test_prune_command_with_and_without_dry_run(settings):
    from io import StringIO

    from django.core.management import call_command

    settings.MAINTENANCE_TASKS = {"RETENTION": {"succeeded": 10, "errored": None}}
    task = TaskFactory(processor=INCREMENT, config={})
    old = ended(task, S.SUCCEEDED, 20, now=timezone.now())
    ended(task, S.SUCCEEDED, 15, now=timezone.now())  # the latest: kept
    out = StringIO()
    call_command("prune_maintenance_runs", "--dry-run", stdout=out)
    assert "succeeded: would delete 1 run(s) ended more than 10 days ago." in out.getvalue()
    assert "errored: kept forever." in out.getvalue()
    assert Run.objects.filter(pk=old.pk).exists()
    out = StringIO()
    call_command("prune_maintenance_runs", stdout=out)
    assert "Deleted 1 run(s) in all." in out.getvalue()
    assert not Run.objects.filter(pk=old.pk).exists()
    assert Run.objects.count() == 1
