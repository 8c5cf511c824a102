"""The schedule admin: the form's errors name each bad field; next run times; the overdue badge."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from maintenance_tasks.models import Run, Schedule, ScheduleSource, Task
from maintenance_tasks.status import RunStatus

from .factories import RunFactory, TaskFactory
from .test_admin import INCREMENT, INDEX, processor_url, run_url

pytestmark = pytest.mark.django_db

ADD = reverse("admin:maintenance_tasks_schedule_add")
CHANGELIST = reverse("admin:maintenance_tasks_schedule_changelist")


def post(client, url=ADD, **fields):
    data = {"processor": INCREMENT, "config": "{}", "cron": "", "run_at_0": "", "run_at_1": "", "enabled": "on"}
    data.update(fields)
    return client.post(url, data)


def form_errors(response):
    assert response.status_code == 200, "the form was accepted"
    return {name: list(errors) for name, errors in response.context["adminform"].form.errors.items()}


def test_add_a_cron_schedule_with_a_config(admin_client):
    response = post(admin_client, cron="0  3 * * *", config='{"delay": 0.5}')
    assert response.status_code == 302
    schedule = Schedule.objects.get()
    assert (schedule.cron, schedule.source, schedule.enabled) == ("0 3 * * *", ScheduleSource.ADMIN, True)
    assert schedule.task.processor == INCREMENT
    assert schedule.task.config == {"delay": 0.5, "fail_at": None}  # canonical: defaults filled in
    assert schedule.next_run_at > timezone.now()
    assert timezone.localtime(schedule.next_run_at).strftime("%H:%M") == "03:00"

    page = admin_client.get(CHANGELIST).content.decode()
    assert timezone.localtime(schedule.next_run_at).strftime("%Y-%m-%d %H:%M") in page


def test_add_a_one_off_schedule(admin_client):
    when = timezone.localtime(timezone.now() + timedelta(days=2)).replace(second=0, microsecond=0)
    response = post(admin_client, run_at_0=when.strftime("%Y-%m-%d"), run_at_1=when.strftime("%H:%M:%S"))
    assert response.status_code == 302
    schedule = Schedule.objects.get()
    assert schedule.next_run_at == schedule.run_at == when


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"cron": "0 3 * *"}, "cron", "5 fields"),
        ({"cron": "99 3 * * *"}, "cron", "not a valid cron expression"),
        ({}, "cron", "Give a cron expression or a time to run at"),
        ({"run_at_0": "2020-01-01", "run_at_1": "03:00:00"}, "run_at", "in the past"),
        ({"cron": "0 3 * * *", "config": '{"delay": "slow"}'}, "config", "delay: Enter a number."),
        ({"cron": "0 3 * * *", "config": '{"speed": 1}'}, "config", "speed: Unknown parameter"),
        ({"cron": "0 3 * * *", "config": "{nope"}, "config", "Enter a valid JSON"),
        ({"cron": "0 3 * * *", "config": "[" * 5000}, "config", "Enter a valid JSON: nested too deep."),
        ({"cron": "0 3 * * *", "config": '{"delay": NaN}'}, "config", "delay: The value holds nan"),
        ({"cron": "0 3 * * *", "processor": "os.system"}, "processor", "Select a valid choice"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(admin_client, fields, field, fragment):
    errors = form_errors(post(admin_client, **fields))
    assert field in errors, errors
    assert any(fragment in message for message in errors[field]), errors
    assert not Schedule.objects.exists()


def test_pause_and_resume_a_schedule(admin_client):
    task = TaskFactory(processor=INCREMENT, config={"delay": 0.0, "fail_at": None})
    schedule = Schedule.objects.create(task=task, cron="0 3 * * *", next_run_at=timezone.now() - timedelta(days=3))
    change = reverse("admin:maintenance_tasks_schedule_change", args=[schedule.pk])
    response = post(admin_client, change, cron="0 3 * * *", config='{"delay": 0.0}', enabled="")
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.enabled is False
    assert "paused" in admin_client.get(CHANGELIST).content.decode()
    admin_client.post(CHANGELIST, {"action": "resume_schedules", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert schedule.enabled is True
    assert schedule.next_run_at > timezone.now()  # from now on: the days paused are not caught up


def test_a_code_schedule_can_be_paused_but_not_changed_or_removed(admin_client):
    task = TaskFactory(processor=INCREMENT, config={"delay": 0.0, "fail_at": None})
    schedule = Schedule.objects.create(
        task=task, cron="0 3 * * *", source=ScheduleSource.CODE, code_processor=INCREMENT, next_run_at=timezone.now()
    )
    change = reverse("admin:maintenance_tasks_schedule_change", args=[schedule.pk])
    response = post(admin_client, change, cron="* * * * *", config='{"delay": 9}', enabled="")
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.enabled, schedule.task_id) == ("0 3 * * *", False, task.pk)
    delete = reverse("admin:maintenance_tasks_schedule_delete", args=[schedule.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert Schedule.objects.filter(pk=schedule.pk).exists()


def test_the_task_page_shows_when_it_is_scheduled(admin_client):
    task = TaskFactory(processor=INCREMENT, config={"delay": 0.0, "fail_at": None})
    next_run = timezone.now() + timedelta(hours=5)
    Schedule.objects.create(task=task, cron="15 * * * *", next_run_at=next_run)
    page = admin_client.get(processor_url(INCREMENT)).content.decode()
    assert 'id="schedules"' in page
    assert "cron 15 * * * *" in page
    assert timezone.localtime(next_run).strftime("%Y-%m-%d %H:%M") in page


def test_an_overdue_run_has_a_badge_on_every_page(admin_client, settings):
    settings.MAINTENANCE_TASKS = {"OVERDUE_AFTER": 3600}
    task = TaskFactory(processor=INCREMENT, config={"delay": 0.0, "fail_at": None})
    run = RunFactory(task=task, running=True)
    for url in (INDEX, processor_url(INCREMENT), run_url(run)):
        assert 'class="mt-overdue"' not in admin_client.get(url).content.decode()
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(hours=2))
    for url in (INDEX, processor_url(INCREMENT), run_url(run)):
        assert 'class="mt-overdue"' in admin_client.get(url).content.decode(), url
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    assert 'class="mt-overdue"' not in admin_client.get(run_url(run)).content.decode()
    assert Task.objects.count() == 1


@pytest.mark.parametrize(
    ("cron", "last_run", "changed", "expected"),
    [
        ("0 3 * * *", True, [], "following"),
        ("", False, [], "run_at"),  # not run yet
        ("", True, ["enabled"], None),  # a one-off schedule that has run
        ("", True, ["run_at"], "run_at"),  # moved to another time: it runs again
    ],
)
def test_reschedule_sets_the_next_run(cron, last_run, changed, expected):
    now = timezone.now()
    run_at = None if cron else now + timedelta(days=1)
    schedule = Schedule(cron=cron, run_at=run_at, last_run_at=now - timedelta(days=1) if last_run else None)
    schedule.reschedule(now, changed)
    assert schedule.next_run_at == {"following": schedule.following(now), "run_at": run_at, None: None}[expected]


def test_resume_goes_on_from_now_without_catching_up():
    task = TaskFactory(processor=INCREMENT, config={"delay": 0.0, "fail_at": None})
    cron = Schedule.objects.create(
        task=task, cron="0 3 * * *", enabled=False, next_run_at=timezone.now() - timedelta(days=3)
    )
    due = timezone.now() - timedelta(hours=1)
    once = Schedule.objects.create(task=task, run_at=due, enabled=False, next_run_at=due)
    now = timezone.now()
    for schedule in (cron, once):
        schedule.resume(now)
        schedule.refresh_from_db()
    assert (cron.enabled, cron.next_run_at) == (True, cron.following(now))
    assert (once.enabled, once.next_run_at) == (True, due)  # a paused one-off that is due runs now


# -- the admin, permissions and what pages show (i12c) -------------------------------------------


def schedule_user(client, *perms):
    from .test_admin import make_user

    user = make_user("scheduler", "view_task", "view_schedule", *perms)
    client.force_login(user)
    return user


def test_adding_a_schedule_needs_the_permission_to_start_runs(client):
    schedule_user(client, "add_schedule", "change_schedule")
    assert client.get(ADD).status_code == 403
    when = timezone.localtime(timezone.now() + timedelta(minutes=1))
    response = post(client, run_at_0=when.strftime("%Y-%m-%d"), run_at_1=when.strftime("%H:%M:%S"))
    assert response.status_code == 403
    assert not Schedule.objects.exists() and not Run.objects.exists()


@pytest.mark.parametrize(
    "fields",
    [{"cron": "* * * * *"}, {"config": '{"delay": 9}'}, {"processor": f"{INCREMENT}Autocommit"}],
)
def test_changing_what_a_schedule_runs_needs_the_permission_to_start_runs(client, fields):
    schedule_user(client, "change_schedule")
    task = TaskFactory(processor=INCREMENT, config={"delay": 0.0, "fail_at": None})
    schedule = Schedule.objects.create(task=task, cron="0 3 * * *", next_run_at=timezone.now() + timedelta(hours=1))
    change = reverse("admin:maintenance_tasks_schedule_change", args=[schedule.pk])
    errors = form_errors(post(client, change, **{"cron": "0 3 * * *", "config": '{"delay": 0.0}', **fields}))
    assert "permission to start runs" in str(errors["__all__"])
    assert Schedule.objects.get(pk=schedule.pk).cron == "0 3 * * *"
    assert Schedule.objects.get(pk=schedule.pk).task_id == task.pk
    # Pausing needs only change_schedule, in the form or with the action.
    assert post(client, change, cron="0 3 * * *", config='{"delay": 0.0}', enabled="").status_code == 302
    assert Schedule.objects.get(pk=schedule.pk).enabled is False
    client.post(CHANGELIST, {"action": "resume_schedules", "_selected_action": [schedule.pk]})
    assert Schedule.objects.get(pk=schedule.pk).enabled is True
    assert Schedule.objects.get(pk=schedule.pk).changed_by == {}


def test_runs_a_schedule_starts_name_who_set_it(client, django_capture_on_commit_callbacks):
    from maintenance_tasks.actors import describe
    from maintenance_tasks.scheduling import scheduler_pass

    user = schedule_user(client, "add_schedule", "start_run")
    when = timezone.localtime(timezone.now() + timedelta(minutes=1))
    response = post(client, run_at_0=when.strftime("%Y-%m-%d"), run_at_1=when.strftime("%H:%M:%S"))
    assert response.status_code == 302
    schedule = Schedule.objects.get()
    assert schedule.changed_by["user"] == "scheduler" and schedule.changed_by["user_id"] == user.pk
    with django_capture_on_commit_callbacks(execute=True):
        (run,) = scheduler_pass(now=timezone.now() + timedelta(minutes=2)).started
    run.refresh_from_db()
    assert run.metadata["source"] == "schedule" and run.metadata["changed_by"]["user"] == "scheduler"
    assert f"schedule {schedule.pk}, set by admin user scheduler" in describe(run.metadata)
