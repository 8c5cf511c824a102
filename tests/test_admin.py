"""The admin pages and actions, through Django's test client."""

import datetime
import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from maintenance_tasks import Processor
from maintenance_tasks.models import Run, RunEvent, Schedule, Task
from maintenance_tasks.progress import describe as progress_describe
from maintenance_tasks.registry import path_of, registry
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item, Seen

from .factories import ItemFactory, RunFactory, TaskFactory

pytestmark = pytest.mark.django_db

S = RunStatus
APP = "testproject.testapp.maintenance"
EVERY = f"{APP}.EveryType"
INCREMENT = f"{APP}.IncrementItems"
INDEX = "/admin/maintenance_tasks/task/"


def processor_url(path):
    return reverse("admin:maintenance_tasks_processor", args=[path])


def run_url(run, action="change"):
    return reverse(f"admin:maintenance_tasks_run_{action}", args=[run.pk])


def make_user(username, *perms):
    user = User.objects.create_user(username, is_staff=True)  # no password: tests log in directly
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm, content_type__app_label="maintenance_tasks"))
    return user


ALL_PERMS = ("view_task", "view_run", "start_run", "pause_run", "cancel_run")


@pytest.fixture
def operator(client):
    """A staff user holding every maintenance permission (not a superuser)."""
    user = make_user("alice", *ALL_PERMS)
    client.force_login(user)
    return user


@pytest.fixture
def viewer(client):
    """A staff user who may only look."""
    user = make_user("victor", "view_task", "view_run")
    client.force_login(user)
    return user


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def visible_actions(html):
    """Return the run actions whose forms are shown (not hidden) in a page."""
    return sorted(match.group(1) for match in re.finditer(r'<form [^>]*data-action="(\w+)"(?![^>]*hidden)[^>]*>', html))


EVERY_POST = {
    "param-name": "nightly",
    "param-limit": "25",
    "param-ratio": "0.75",
    "param-dry_run": "on",
    "param-amount": "2.50",
    "param-since": "2024-03-04",
    "param-at": "2024-03-05T06:07",
    "param-tags": "a\nb",
    "param-ids": "1, 2",
    "param-options": '{"x": 1}',
    "param-color": "green",
    "param-mode": "fast",
    "_start": "Start",
}


# -- index ------------------------------------------------------------------------------------


def test_index_groups_every_processor(operator, client):
    RunFactory(running=True, task__processor=INCREMENT)
    RunFactory(succeeded=True, task__processor=f"{APP}.RecordOnce", task__config={})
    response = client.get(INDEX)
    assert response.status_code == 200
    groups = {key: [row.path for row in rows] for key, _, rows in response.context["groups"]}
    assert groups["active"] == [INCREMENT]
    assert groups["completed"] == [f"{APP}.RecordOnce"]
    assert set(groups["new"]) == set(registry.processors()) - {INCREMENT, f"{APP}.RecordOnce"}
    html = response.content.decode()
    assert "Take a parameter of every supported type." in html  # first docstring line
    assert 'class="breadcrumbs"' in html
    assert "mt-status-running" in html


def test_index_search_by_name(operator, client):
    response = client.get(INDEX, {"q": "everytyp"})
    rows = [row.path for _, _, group in response.context["groups"] for row in group]
    assert rows == [EVERY]
    response = client.get(INDEX, {"q": "nothing-like-this"})
    assert "No task matches your search." in response.content.decode()


def test_index_shows_processor_missing_from_code(operator, client):
    gone = f"{APP}.RemovedLongAgo"
    RunFactory(succeeded=True, task__processor=gone, task__config={})
    response = client.get(INDEX)
    row = next(row for _, _, rows in response.context["groups"] for row in rows if row.path == gone)
    assert row.missing and row.group == "completed"
    assert "missing from the code" in response.content.decode()


@pytest.fixture
def hundred_processors():
    """Replace the discovered processors with 100 generated ones."""
    found = {}
    for i in range(100):
        cls = type(
            f"Generated{i:03d}",
            (Processor,),
            {"__module__": APP, "__doc__": f"Generated task {i}.", "collection": lambda self: Item.objects.all()},
        )
        found[path_of(cls)] = cls
    registry._processors = dict(sorted(found.items()))
    return list(registry._processors)


def index_queries(client):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(INDEX)
    assert response.status_code == 200
    return len(queries), response


def test_index_costs_a_fixed_number_of_queries(operator, client, hundred_processors, django_assert_max_num_queries):
    client.get(INDEX)  # warm up what is cached per process (content types)
    few, _ = index_queries(client)
    statuses = [S.SUCCEEDED, S.ERRORED, S.RUNNING, S.PAUSED, S.CANCELLED]
    for i, path in enumerate(hundred_processors[:80]):
        task = TaskFactory(processor=path, config={})
        Run.objects.bulk_create(Run(task=task, status=S.SUCCEEDED) for _ in range(3))
        Run.objects.create(task=task, status=statuses[i % len(statuses)])
    with django_assert_max_num_queries(few):
        many, response = index_queries(client)
    groups = {key: len(rows) for key, _, rows in response.context["groups"]}
    assert groups == {"active": 32, "new": 20, "completed": 48}
    assert many == few == 6  # session, user, 2 x permissions, latest runs, active runs


# -- task page --------------------------------------------------------------------------------


def test_task_page_form_has_a_widget_per_type_with_defaults(operator, client):
    ItemFactory.create_batch(3)
    response = client.get(processor_url(EVERY))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Take a parameter of every supported type." in html
    expected = {
        "name": r'<input type="text" name="param-name"[^>]* required',
        "limit": r'<input type="number" name="param-limit" value="10"',
        "ratio": r'<input type="number" name="param-ratio" value="0.5"',
        "dry_run": r'<input type="checkbox" name="param-dry_run"',
        "amount": r'<input type="number" name="param-amount" value="1.50"',
        "since": r'<input type="date" name="param-since" value="2024-01-01"',
        "at": r'<input type="datetime-local" name="param-at"',
        "tags": r'<textarea name="param-tags"',
        "options": r'<textarea name="param-options"',
        "color": r'<option value="red" selected>',
        "mode": r'<option value="safe" selected>',
    }
    for name, pattern in expected.items():
        assert re.search(pattern, html), name
    assert 'name="_start"' in html


def test_task_page_counts_only_when_asked(operator, client, django_capture_on_commit_callbacks):
    ItemFactory.create_batch(7)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(processor_url(INCREMENT))
    assert response.context["page"].count is None
    assert "Not counted yet" in response.content.decode()
    assert not [query for query in queries if "COUNT(*)" in query["sql"] and "testapp_item" in query["sql"]]
    response = client.post(processor_url(INCREMENT), {"param-delay": "0", "_count": "Count items"})
    assert response.context["page"].count == 7
    assert "7 items" in response.content.decode()
    assert not Run.objects.exists()


def test_count_items_with_the_given_parameters_starts_nothing(operator, client):
    response = client.post(processor_url(f"{APP}.RecordList"), {"param-words": "a\nb\nc", "_count": "Count"})
    assert response.status_code == 200
    assert response.context["page"].count == 3
    assert not Run.objects.exists()


def test_viewer_counts_with_the_default_parameters_and_starts_nothing(viewer, client):
    ItemFactory.create_batch(4)
    response = client.post(processor_url(INCREMENT), {"_count": "Count items"})
    assert response.status_code == 200 and response.context["page"].count == 4
    response = client.post(processor_url(f"{APP}.RecordList"), {"_count": "Count items"})
    assert response.context["page"].count is None
    assert "Depends on the parameters" in response.content.decode()
    assert client.post(processor_url(INCREMENT), {"_start": "Start"}).status_code == 403
    assert not Run.objects.exists()


def test_start_runs_the_task_with_typed_parameters(operator, client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(processor_url(EVERY), EVERY_POST, follow=True)
    run = Run.objects.get()
    assert response.redirect_chain == [(run_url(run), 302)]
    assert run.status == S.SUCCEEDED
    assert run.task.config == {
        "name": "nightly",
        "limit": 25,
        "ratio": 0.75,
        "dry_run": True,
        "amount": "2.50",
        "since": "2024-03-04",
        "at": "2024-03-05T06:07:00+00:00",
        "tags": ["a", "b"],
        "ids": [1, 2],
        "options": {"x": 1},
        "color": "green",
        "mode": "fast",
    }
    assert Seen.objects.get().value == "nightly:25:green:fast"
    assert run.metadata == {"source": "admin", "user": "alice", "user_id": operator.pk, "ip": "127.0.0.1"}
    assert RunEvent.objects.filter(run=run, action="created", source="admin", user="alice").exists()
    entry = LogEntry.objects.get(action_flag=ADDITION)
    assert (entry.user, entry.object_id) == (operator, str(run.pk))
    # The message gives the status when the request answered (the run is performed on commit).
    assert messages_of(response)[0].startswith(f"Started run {run.pk} of EveryType: now ")


def test_unchecked_checkbox_is_false_even_with_a_true_default(operator, client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post(processor_url(EVERY), {**EVERY_POST, "param-dry_run": ""})
    assert Task.objects.get().config["dry_run"] is False


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("param-limit", "ten", "Enter a whole number."),
        ("param-since", "2024-13-45", "Enter a valid date."),
        ("param-color", "purple", "Select a valid choice. purple is not one of the available choices."),
        ("param-ids", "1, x", "Item 2: Enter a whole number."),
        ("param-options", "{not json", "Enter a JSON object"),
        ("param-name", "", "This field is required."),
        ("param-name", "forbidden", "This name is forbidden."),  # the processor's own clean()
    ],
)
def test_bad_value_is_shown_beside_its_field_and_starts_nothing(operator, client, field, value, message):
    response = client.post(processor_url(EVERY), {**EVERY_POST, field: value})
    assert response.status_code == 400
    name = field.removeprefix("param-")
    errors = response.context["page"].form.errors
    assert list(errors) == [name]
    assert message in " ".join(errors[name])
    html = response.content.decode()
    row = html[html.index(f'class="form-row field-{name}"') :]
    row = row[: row.index('class="form-row', 10)]
    assert "errorlist" in row and "errors" in row  # beside the field, admin style
    assert not Run.objects.exists() and not Task.objects.exists()


@pytest.mark.parametrize(
    "forged",
    ["os.system", "testproject.testapp.models.Item", "testproject.testapp.other.NotDiscovered", "IncrementItem"],
)
def test_forged_processor_path_is_refused_like_the_cli(operator, client, forged):
    response = client.post(processor_url(forged), {"_start": "Start"}, follow=True)
    assert response.redirect_chain == [(INDEX, 302)]
    [message] = messages_of(response)
    assert f"Unknown processor {forged!r}" in message
    assert not Run.objects.exists() and not Task.objects.exists()


def test_unknown_processor_page_is_not_found(operator, client):
    assert client.get(processor_url("os.system")).status_code == 404


def test_second_start_of_an_active_task_is_refused(operator, client):
    active = RunFactory(paused=True, task__processor=f"{APP}.RecordOnce", task__config={})
    response = client.post(processor_url(f"{APP}.RecordOnce"), {"_start": "Start"})
    assert response.status_code == 409
    assert messages_of(response) == [f"{active.task} already has an active run (run {active.pk})."]
    assert Run.objects.count() == 1


def test_task_page_shows_active_run_with_its_allowed_controls(operator, client):
    run = RunFactory(running=True, task__processor=INCREMENT, tick_count=5, tick_total=20)
    html = client.get(processor_url(INCREMENT)).content.decode()
    assert f"Active run #{run.pk}" in html
    assert "5 / 20 (25.0%)" in html
    assert visible_actions(html) == ["cancel", "pause"]
    assert f'data-progress-url="{run_url(run, "progress")}"' in html


def test_task_page_paginates_ten_thousand_runs_in_fixed_queries(operator, client, django_assert_max_num_queries):
    task = TaskFactory(processor=INCREMENT)
    Run.objects.bulk_create((Run(task=task, status=S.SUCCEEDED, tick_count=i) for i in range(10_000)), batch_size=1000)
    client.get(processor_url(INCREMENT))
    # 9: the page also lists the processor's schedules (one query).
    with django_assert_max_num_queries(9):
        response = client.get(processor_url(INCREMENT), {"p": 150})
    page = response.context["page"].runs
    assert (page.number, page.paginator.num_pages, page.paginator.count, len(page.object_list)) == (
        150,
        200,
        10_000,
        50,
    )
    html = response.content.decode()
    assert "10000 runs" in html and 'href="?p=200"' in html


def test_task_page_of_a_processor_gone_from_the_code(operator, client):
    gone = f"{APP}.RemovedLongAgo"
    run = RunFactory(paused=True, task__processor=gone, task__config={})
    response = client.get(processor_url(gone))
    assert response.status_code == 200
    html = response.content.decode()
    assert "This processor is no longer in the code" in html
    assert 'id="start-form"' not in html
    assert visible_actions(html) == ["cancel"]  # no resume: nothing could run it
    assert client.get(run_url(run)).status_code == 200
    response = client.post(run_url(run, "resume"), follow=True)
    assert "is no longer in the code" in messages_of(response)[0]
    run.refresh_from_db()
    assert run.status == S.PAUSED


# -- run page, progress, actions ---------------------------------------------------------------


def test_run_page_shows_everything_about_the_run(operator, client):
    run = RunFactory(
        errored=True,
        task__processor=INCREMENT,
        cursor="[42]",
        tick_count=42,
        tick_total=100,
        time_running=21.0,
        started_at=timezone.now(),
        ended_at=timezone.now(),
        backtrace="Traceback (most recent call last):\n  boom",
        metadata={"source": "cli", "user": "deploy", "host": "web-1", "pid": 99},
    )
    RunEvent.objects.create(
        run=run,
        action="pause",
        from_status="running",
        to_status="pausing",
        source="admin",
        user="bob",
        detail={"source": "admin", "user": "bob", "ip": "10.0.0.9"},
    )
    html = client.get(run_url(run)).content.decode()
    for text in [
        "Errored",
        "42 / 100 (42.0%)",
        "2.0 items/s",
        "0:00:21",
        "[42]",
        "command line, OS user deploy (host web-1, pid 99)",
        "admin user bob (ip 10.0.0.9)",
        "running → pausing",
        "ValueError",
        "boom",
        "Traceback (most recent call last):",
        "&quot;fail_at&quot;: null",
        "&quot;host&quot;: &quot;web-1&quot;",
    ]:
        assert text in html, text
    assert visible_actions(html) == ["resume"]


def test_progress_endpoint(operator, client):
    run = RunFactory(running=True, tick_count=30, tick_total=120, time_running=10.0)
    state = client.get(run_url(run, "progress")).json()
    assert state["status"] == "running" and state["active"] is True
    assert (state["tick_count"], state["tick_total"], state["percent"]) == (30, 120, 25.0)
    assert state["rate_text"] == "3.0 items/s" and state["eta_text"] == "0:00:30"
    assert state["actions"] == ["pause", "cancel"]


def test_progress_endpoint_lists_only_actions_the_user_may_take(viewer, client):
    run = RunFactory(running=True)
    assert client.get(run_url(run, "progress")).json()["actions"] == []


@pytest.mark.parametrize(
    ("trait", "action", "after"),
    [
        ("running", "pause", S.PAUSING),
        ("enqueued", "pause", S.PAUSED),
        ("running", "cancel", S.CANCELLING),
        ("paused", "cancel", S.CANCELLED),
        ("interrupted", "cancel", S.CANCELLED),
    ],
)
def test_actions_change_the_run_and_are_audited(operator, client, trait, action, after):
    run = RunFactory(**({trait: True} if trait != "enqueued" else {}))
    before = run.status
    response = client.post(run_url(run, action), follow=True)
    assert response.redirect_chain == [(run_url(run), 302)]
    run.refresh_from_db()
    assert run.status == after
    event = run.events.get(action=action)
    assert (event.from_status, event.to_status, event.source, event.user) == (before, after, "admin", "alice")
    assert event.detail["user_id"] == operator.pk and event.detail["ip"] == "127.0.0.1"
    entry = LogEntry.objects.get(action_flag=CHANGE, object_id=str(run.pk))
    assert entry.user == operator and action.capitalize() in entry.change_message
    assert messages_of(response) == [f"{action.capitalize()} run {run.pk}: {S(before).label} → {S(after).label}."]


def test_resume_runs_the_rest(operator, client, django_capture_on_commit_callbacks):
    ItemFactory.create_batch(5)
    run = RunFactory(paused=True, task__processor=INCREMENT)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(run_url(run, "resume"), {"next": processor_url(INCREMENT)}, follow=True)
    assert response.redirect_chain == [(processor_url(INCREMENT), 302)]
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED and run.tick_count == 5
    assert run.events.filter(action="resume", user="alice").exists()


def test_action_not_allowed_from_the_status_is_refused_with_a_message(operator, client):
    run = RunFactory(succeeded=True)
    response = client.post(run_url(run, "pause"), follow=True)
    assert messages_of(response) == [f"Run {run.pk} is succeeded: cannot pause."]
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED and not LogEntry.objects.exists()


def test_next_must_stay_on_this_site(operator, client):
    run = RunFactory(running=True)
    response = client.post(run_url(run, "pause"), {"next": "https://evil.example/"})
    assert response["Location"] == run_url(run)


def test_actions_are_post_only(operator, client):
    run = RunFactory(running=True)
    for action in ("pause", "resume", "cancel", "force"):
        assert client.get(run_url(run, action)).status_code == 405
    run.refresh_from_db()
    assert run.status == S.RUNNING


@pytest.mark.parametrize(
    ("status", "buttons"),
    [
        ("running", ["cancel", "pause"]),
        ("paused", ["cancel", "resume"]),
        ("interrupted", ["cancel", "pause", "resume"]),
        ("pausing", ["cancel"]),
        ("cancelling", []),
        ("succeeded", []),
    ],
)
def test_buttons_follow_the_status(operator, client, status, buttons):
    run = RunFactory(**{status: True})
    assert visible_actions(client.get(run_url(run)).content.decode()) == buttons


# -- stuck runs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("stuck", "forced"), [(S.PAUSING, S.PAUSED), (S.CANCELLING, S.CANCELLED)])
def test_stuck_run_can_be_forced(operator, client, stuck, forced):
    run = RunFactory(**{stuck: True})
    Run.objects.filter(pk=run.pk).update(updated_at=timezone.now() - timedelta(minutes=6))
    assert "force" in visible_actions(client.get(run_url(run)).content.decode())
    response = client.post(run_url(run, "force"), follow=True)
    run.refresh_from_db()
    assert run.status == forced
    assert run.attempt == 2  # the old executor's token is void
    event = run.events.get(action="force")
    assert (event.from_status, event.to_status, event.user) == (stuck, forced, "alice")
    assert LogEntry.objects.filter(object_id=str(run.pk), action_flag=CHANGE).exists()
    assert messages_of(response) == [f"Force stop run {run.pk}: {S(stuck).label} → {S(forced).label}."]


def test_run_not_stuck_long_enough_cannot_be_forced(operator, client):
    run = RunFactory(pausing=True)
    assert "force" not in visible_actions(client.get(run_url(run)).content.decode())
    response = client.post(run_url(run, "force"), follow=True)
    assert "it can be forced only after STUCK_AFTER (300s)" in messages_of(response)[0]
    run.refresh_from_db()
    assert (run.status, run.attempt) == (S.PAUSING, 1)


def test_force_is_refused_for_a_run_that_is_not_waiting(operator, client):
    run = RunFactory(running=True)
    response = client.post(run_url(run, "force"), follow=True)
    assert messages_of(response) == [f"Run {run.pk} is running: cannot force it."]


# -- permissions --------------------------------------------------------------------------------


def test_viewer_sees_pages_but_no_form_and_no_buttons(viewer, client):
    run = RunFactory(running=True, task__processor=INCREMENT)
    for url in (INDEX, processor_url(INCREMENT), run_url(run), "/admin/maintenance_tasks/run/"):
        assert client.get(url).status_code == 200, url
    html = client.get(processor_url(INCREMENT)).content.decode()
    assert 'id="start-form"' not in html and 'name="_start"' not in html
    assert html.count('<form method="post"') == 1 and 'name="_count"' in html  # counting starts nothing
    assert "data-action" not in client.get(run_url(run)).content.decode()


def test_posts_without_permission_are_forbidden_and_change_nothing(viewer, client):
    running = RunFactory(running=True)
    paused = RunFactory(paused=True, task__processor=f"{APP}.RecordOnce", task__config={})
    stuck = RunFactory(pausing=True, task__processor=f"{APP}.RecordGenerator", task__config={"stop": 10})
    Run.objects.filter(pk=stuck.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    assert client.post(processor_url(EVERY), EVERY_POST).status_code == 403
    assert client.post(processor_url("os.system"), {}).status_code == 403
    for run, action in [(running, "pause"), (running, "cancel"), (paused, "resume"), (stuck, "force")]:
        assert client.post(run_url(run, action)).status_code == 403, action
    assert [run.status for run in Run.objects.order_by("pk")] == [S.RUNNING, S.PAUSED, S.PAUSING]
    assert Run.objects.count() == 3 and not LogEntry.objects.exists()
    assert RunEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("perms", "allowed"),
    [
        (("pause_run",), {"pause", "resume"}),
        (("cancel_run",), {"cancel", "force"}),
        (("start_run",), set()),
    ],
)
def test_each_permission_allows_its_actions_only(client, perms, allowed):
    client.force_login(make_user("partial", "view_task", *perms))
    for delay, action in enumerate(("pause", "resume", "cancel", "force")):
        run = RunFactory(running=True, task__config={"delay": delay})
        status = client.post(run_url(run, action)).status_code
        assert (status != 403) == (action in allowed), action


def test_staff_without_view_permission_is_forbidden(client):
    client.force_login(make_user("nobody"))
    run = RunFactory()
    for url in (INDEX, processor_url(INCREMENT), run_url(run), run_url(run, "progress")):
        assert client.get(url).status_code == 403, url


def test_anonymous_is_sent_to_login(client):
    response = client.get(INDEX)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# -- run changelist ------------------------------------------------------------------------------


def test_run_changelist_filters_by_status_processor_and_date(operator, client):
    paused = RunFactory(paused=True, task__processor=INCREMENT)
    done = RunFactory(succeeded=True, task__processor=f"{APP}.RecordOnce", task__config={})
    old = RunFactory(succeeded=True, task__processor=f"{APP}.RecordGenerator", task__config={})
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=400))
    url = "/admin/maintenance_tasks/run/"

    def listed(**params):
        response = client.get(url, params)
        assert response.status_code == 200
        return {run.pk for run in response.context["cl"].result_list}

    assert listed() == {paused.pk, done.pk, old.pk}
    assert listed(status="paused") == {paused.pk}
    assert listed(processor=f"{APP}.RecordOnce") == {done.pk}
    assert listed(created_at__year=str(timezone.now().year)) == {paused.pk, done.pk}
    assert listed(q="RecordGenerator") == {old.pk}
    html = client.get(url).content.decode()
    assert 'id="changelist-filter"' in html and "?created_at__year=" in html  # the date hierarchy


def test_task_change_url_leads_to_the_task_page(operator, client):
    task = TaskFactory(processor=INCREMENT)
    response = client.get(f"/admin/maintenance_tasks/task/{task.pk}/change/")
    assert response["Location"] == processor_url(INCREMENT)


def test_run_page_for_unknown_run_is_not_found(operator, client):
    assert client.get("/admin/maintenance_tasks/run/999999/change/").status_code == 404
    assert client.get("/admin/maintenance_tasks/run/999999/progress/").status_code == 404


def test_admin_index_links_to_the_maintenance_pages(operator, client):
    html = client.get("/admin/").content.decode()
    assert 'href="/admin/maintenance_tasks/task/"' in html and 'href="/admin/maintenance_tasks/run/"' in html


def test_date_defaults_render_as_values_the_browser_accepts(operator, client):
    form = client.get(processor_url(EVERY)).context["page"].form
    assert form["since"].value() == datetime.date(2024, 1, 1)


def test_start_to_an_undeclared_queue_is_refused_with_a_message(operator, client, settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
    heavy = f"{APP}.HeavyShardBatches"
    response = client.post(processor_url(heavy), {"param-shard": "0", "param-delay": "0", "_start": "Start"})
    assert response.status_code == 409
    [message] = messages_of(response)
    assert message.startswith(f"{heavy} routes its runs to queue 'heavy' with priority 10")
    assert not Run.objects.exists()


def test_run_page_shows_retries_and_a_wait_for_a_slot(operator, client):
    now = timezone.now()
    run = RunFactory(task__processor=INCREMENT, retries=2, retry_at=now, waiting_since=now)
    html = client.get(run_url(run)).content.decode()
    assert "Retries:" in html and "next at" in html
    assert "Waiting for a slot:" in html and "(MAX_CONCURRENT_RUNS)" in html
    plain = RunFactory(task__processor=INCREMENT, task__config={"delay": 1.0})
    html = client.get(run_url(plain)).content.decode()
    assert "Retries:" not in html and "Waiting for a slot:" not in html


# -- deploy status ------------------------------------------------------------------------------

DEPLOY_ONCE = f"{APP}.DeployOnce"


def deploy_module(client, path):
    html = client.get(processor_url(path)).content.decode()
    start = html.find('<div class="module mt-deploy">')
    return html[start : html.index("</div>", start)] if start >= 0 else None


def test_task_page_shows_what_the_deploy_hook_did(operator, client, django_capture_on_commit_callbacks):
    from maintenance_tasks import deploy

    module = deploy_module(client, DEPLOY_ONCE)
    assert "once, like a data migration" in module
    assert '<strong class="mt-deploy-state">to run on the next deploy</strong> (not run yet)' in module
    with django_capture_on_commit_callbacks(execute=True):
        deploy.deploy(actor={"source": "deploy", "user": "ci", "host": "web-1"})
    run = Run.objects.get(task__processor=DEPLOY_ONCE)
    module = deploy_module(client, DEPLOY_ONCE)
    assert f'<strong class="mt-deploy-state">done</strong> (run {run.pk} succeeded)' in module
    assert f'<a href="{run_url(run)}">#{run.pk}</a> succeeded.' in module
    deploy.reset("DeployOnce", actor={"source": "deploy", "user": "ops", "host": "web-2"})
    module = deploy_module(client, DEPLOY_ONCE)
    assert "to run on the next deploy" in module
    assert "Reset: set by deploy hook, OS user ops (host web-2) on " in module
    assert '<strong class="mt-deploy-state">runs on every deploy</strong>' in deploy_module(
        client, f"{APP}.DeployAlways"
    )
    assert deploy_module(client, INCREMENT) is None


def test_task_page_of_a_deploy_processor_costs_a_fixed_number_of_queries(
    operator, client, django_assert_max_num_queries
):
    client.get(processor_url(INCREMENT))
    with CaptureQueriesContext(connection) as plain:
        client.get(processor_url(INCREMENT))
    task = TaskFactory(processor=DEPLOY_ONCE, config={"items": 3})
    Run.objects.bulk_create(Run(task=task, status=S.SUCCEEDED) for _ in range(100))
    # task, record, active run, its run; and the plain page's item count, gone since pages count on request
    with django_assert_max_num_queries(len(plain) + 5):
        response = client.get(processor_url(DEPLOY_ONCE))
    assert response.context["page"].deploy["state"] == "done"


# -- another admin site ------------------------------------------------------------------------

OPS = "/ops/maintenance_tasks"
#: A link, form or progress URL that leaves the second site for the default one.
DEFAULT_SITE_LINK = re.compile(r'(?:href|action|data-progress-url)="/admin/')


def ops_page(client, url):
    """Open a page of the second site and check that none of its links lead to the default site."""
    response = client.get(url)
    assert response.status_code == 200, url
    html = response.content.decode()
    match = DEFAULT_SITE_LINK.search(html)
    assert match is None, f"{url} links to the default site: {html[match.start() : match.start() + 100]}"
    return html


@pytest.mark.urls("tests.ops_urls")
def test_pages_and_actions_stay_on_another_admin_site(admin_client):
    once = f"{APP}.RecordOnce"
    assert f'href="{OPS}/task/processor/{once}/"' in ops_page(admin_client, f"{OPS}/task/")
    html = ops_page(admin_client, f"{OPS}/task/processor/{once}/")
    assert f'<a href="{OPS}/task/">' in html  # the breadcrumbs

    response = admin_client.post(f"{OPS}/task/processor/{once}/", {"_start": "Start"})
    run = Run.objects.get()
    assert response["Location"] == f"{OPS}/run/{run.pk}/change/"
    html = ops_page(admin_client, response["Location"])
    assert f'action="{OPS}/run/{run.pk}/pause/"' in html
    assert f'data-progress-url="{OPS}/run/{run.pk}/progress/"' in html
    assert ops_page(admin_client, f"{OPS}/task/processor/{once}/").count(f'href="{OPS}/run/{run.pk}/change/"') == 2

    response = admin_client.post(f"{OPS}/run/{run.pk}/pause/", {"next": f"{OPS}/task/processor/{once}/"})
    assert response["Location"] == f"{OPS}/task/processor/{once}/"
    run.refresh_from_db()
    assert run.status == S.PAUSED
    response = admin_client.post(f"{OPS}/run/{run.pk}/resume/")  # no next: back to the run page
    assert response["Location"] == f"{OPS}/run/{run.pk}/change/"

    # The other redirects and links the admin builds in Python.
    assert admin_client.get(f"{OPS}/task/{run.task.pk}/change/")["Location"] == f"{OPS}/task/processor/{once}/"
    assert admin_client.post(f"{OPS}/task/processor/os.system/", {"_start": "Start"})["Location"] == f"{OPS}/task/"
    Schedule.objects.create(task=run.task, cron="0 3 * * *", last_run=run, next_run_at=timezone.now())
    assert f'href="{OPS}/run/{run.pk}/change/"' in ops_page(admin_client, f"{OPS}/schedule/")
    assert admin_client.get(f"{OPS}/run/{run.pk}/progress/").json()["id"] == run.pk


# -- bad input refused up front ---------------------------------------------------------------

STRICT = f"{APP}.StrictInput"
STRICT_POST = {"param-payload": "{}", "param-names": "", "param-n": "0", "_start": "Start"}


@pytest.mark.parametrize(
    ("post", "field", "message"),
    [
        ({"param-n": ""}, "n", "This field is required."),
        ({"param-payload": '{"x": NaN}'}, "payload", "holds nan, which is not a JSON number"),
        ({"param-payload": '{"x": "a\\u0000"}'}, "payload", "NUL character"),
        ({"param-payload": '{"x": "\\udcff"}'}, "payload", "lone surrogate"),
        ({"param-payload": "[" * 5000}, "payload", "nested too deep"),
        ({"param-names": '["\\udcff"]'}, "names", "lone surrogate"),
    ],
)
def test_start_refuses_values_no_database_stores_beside_the_field(operator, client, post, field, message):
    response = client.post(processor_url(STRICT), {**STRICT_POST, **post})
    assert response.status_code == 400
    assert message in " ".join(response.context["page"].form.errors[field])
    assert not Run.objects.exists()


def test_start_takes_an_empty_dict_and_list(operator, client):
    response = client.post(processor_url(STRICT), STRICT_POST)
    assert response.status_code == 302
    assert Run.objects.get().task.config["payload"] == {} and Run.objects.get().task.config["names"] == []


def test_start_reports_a_clean_that_raises_another_error(operator, client):
    response = client.post(processor_url(f"{APP}.CleanFails"), {"_start": "Start"})
    assert response.status_code == 400
    assert response.context["page"].form.non_field_errors() == [
        "testproject.testapp.maintenance.CleanFails.clean() failed: KeyError: 'missing'"
    ]
    assert not Run.objects.exists()


class Unresolved(Processor):
    """A parameter annotated with a name that does not resolve."""

    x: "UndefinedName" = 1  # noqa: F821


def test_a_processor_whose_annotation_does_not_resolve_shows_why_and_cannot_start(operator, client, monkeypatch):
    path = path_of(Unresolved)
    monkeypatch.setattr(registry, "_processors", {**registry.processors(), path: Unresolved})
    response = client.get(processor_url(path))
    assert response.status_code == 200
    assert "the annotation &#x27;UndefinedName&#x27; does not resolve" in response.content.decode()
    assert 'name="_start"' not in response.content.decode()
    response = client.post(processor_url(path), {"_start": "Start"})
    assert response.status_code == 400
    assert any("does not resolve" in message for message in messages_of(response))
    assert client.get(INDEX).status_code == 200
    assert not Run.objects.exists()


# -- the admin, permissions and what pages show (i12c) -------------------------------------------


def test_task_change_url_is_forbidden_without_view_permission(client):
    client.force_login(make_user("walker", "view_run"))
    task = TaskFactory(processor=INCREMENT)
    for url in (f"/admin/maintenance_tasks/task/{task.pk}/change/", f"/admin/maintenance_tasks/task/{task.pk}/"):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "Location" not in response


@pytest.mark.parametrize(
    "params",
    [{"processor": "\x00"}, {"processor": f"{INCREMENT}\x00"}, {"q": "a\x00b"}, {"status": "\x00"}],
)
def test_run_changelist_answers_a_nul_in_a_filter_value(operator, client, params):
    run = RunFactory(paused=True, task__processor=INCREMENT)
    response = client.get("/admin/maintenance_tasks/run/", params)
    assert response.status_code in (200, 302)  # 302: Django's own "?e=1" for a filter it does not know
    if response.status_code == 200:
        assert {r.pk for r in response.context["cl"].result_list} <= {run.pk}


def test_schedule_changelist_answers_a_nul_in_a_search(operator, client):
    operator.user_permissions.add(Permission.objects.get(codename="view_schedule"))
    assert client.get("/admin/maintenance_tasks/schedule/", {"q": "\x00"}).status_code == 200


@pytest.mark.parametrize(
    ("trait", "total", "bar"),
    [
        ("running", None, None),
        ("enqueued", None, None),
        ("paused", None, 0),
        ("errored", None, 0),
        ("paused", 40, 50.0),
    ],
)
def test_only_a_moving_run_without_a_total_has_an_animated_bar(operator, client, trait, total, bar):
    traits = {} if trait == "enqueued" else {trait: True}
    run = RunFactory(tick_count=20, tick_total=total, **traits)
    assert client.get(run_url(run, "progress")).json()["bar"] == bar
    html = client.get(run_url(run)).content.decode()
    progress = re.search(r"<progress [^>]*>", html).group(0)
    assert ("value=" in progress) == (bar is not None), progress


@pytest.mark.parametrize(("count", "total"), [(50, 0), (130, 120)])
def test_no_eta_when_more_items_were_done_than_counted(operator, client, count, total):
    run = RunFactory(running=True, tick_count=count, tick_total=total, time_running=10.0)
    assert run.eta is None
    assert client.get(run_url(run, "progress")).json()["eta_text"] == ""
    assert "ETA" not in progress_describe(run)
