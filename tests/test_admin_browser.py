"""The admin in a real browser: Debian's chromium, driven by Playwright, against live_server."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from maintenance_tasks.models import Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item, Seen

from .conftest import ROOT, deadline, wait_for
from .factories import ItemFactory, RunFactory

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
APP = "testproject.testapp.maintenance"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (scripts/setup --browser)"),
]
# Playwright's sync API runs an event loop in this thread; the ORM calls made here are still synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

S = RunStatus


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-quic",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


def make_user(username, *perms):
    user = User.objects.create_user(username, is_staff=True)
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm, content_type__app_label="maintenance_tasks"))
    return user


@pytest.fixture
def login(browser, live_server):
    """Open a browser page logged in as a user with the given permissions."""
    contexts = []

    def open_page(username, *perms):
        from playwright.sync_api import expect

        client = Client()
        client.force_login(make_user(username, *perms))
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
        context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(deadline(30) * 1000)
        expect.set_options(timeout=deadline(30) * 1000)
        return page

    yield open_page
    for context in contexts:
        context.close()


ALL_PERMS = ("view_task", "view_run", "start_run", "pause_run", "cancel_run")


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def task_url(name):
    return f"/admin/maintenance_tasks/task/processor/{APP}.{name}/"


def test_start_every_type_from_the_generated_form(login):
    from playwright.sync_api import expect

    page = login("alice", *ALL_PERMS)
    page.goto("/admin/maintenance_tasks/task/")
    expect(page.locator("#group-new")).to_contain_text("EveryType")
    screenshot(page, "index-new")
    page.get_by_role("link", name="EveryType", exact=True).click()
    expect(page.locator("h1")).to_have_text("EveryType")
    expect(page.locator("#id_param-limit")).to_have_value("10")  # defaults filled in
    page.fill("#id_param-name", "nightly")
    page.fill("#id_param-limit", "25")
    page.fill("#id_param-ratio", "0.75")
    page.check("#id_param-dry_run")
    page.fill("#id_param-amount", "2.50")
    page.fill("#id_param-since", "2024-03-04")
    page.fill("#id_param-at", "2024-03-05T06:07")
    page.fill("#id_param-tags", "alpha\nbeta")
    page.fill("#id_param-ids", "1, 2, 3")
    page.fill("#id_param-options", '{"batch": true}')
    page.select_option("#id_param-color", "green")
    page.select_option("#id_param-mode", "fast")
    screenshot(page, "task")
    page.get_by_role("button", name="Start").click()

    run = Run.objects.get()
    page.wait_for_url(f"**/admin/maintenance_tasks/run/{run.pk}/change/")
    expect(page.locator(".messagelist")).to_contain_text(f"Started run {run.pk} of EveryType")
    expect(page.locator(".mt-run [data-field=status_label]")).to_have_text("Succeeded")
    assert run.task.config == {
        "name": "nightly",
        "limit": 25,
        "ratio": 0.75,
        "dry_run": True,
        "amount": "2.50",
        "since": "2024-03-04",
        "at": "2024-03-05T06:07:00+00:00",
        "tags": ["alpha", "beta"],
        "ids": [1, 2, 3],
        "options": {"batch": True},
        "color": "green",
        "mode": "fast",
    }
    assert Seen.objects.get().value == "nightly:25:green:fast"
    expect(page.locator("#audit-trail")).to_contain_text("admin user alice")
    screenshot(page, "run")


def test_bad_value_shows_an_error_beside_the_field(login):
    from playwright.sync_api import expect

    page = login("alice", *ALL_PERMS)
    page.goto(task_url("EveryType"))
    page.fill("#id_param-name", "nightly")
    page.fill("#id_param-ids", "1, x")
    page.get_by_role("button", name="Start").click()
    expect(page.locator(".errornote")).to_contain_text("Please correct the error below.")
    expect(page.locator(".field-ids .errorlist")).to_have_text("Item 2: Enter a whole number.")
    expect(page.locator("#id_param-ids")).to_have_value("1, x")  # what was typed is kept
    page.fill("#id_param-ids", "")
    page.fill("#id_param-name", "forbidden")
    page.get_by_role("button", name="Start").click()
    expect(page.locator(".field-name .errorlist")).to_have_text("This name is forbidden.")
    screenshot(page, "task-errors")
    assert not Run.objects.exists()


def running_run(manage):
    """Start a slow IncrementItems in a child process and wait until it has done some items.

    The autocommit variant holds SQLite's write lock only while it writes: an atomic batch
    that sleeps would hold it for the whole batch and starve the live server's writes.
    """
    command = manage(
        "run_maintenance_task", "IncrementItemsAutocommit", "--arg", "delay=0.05", MAINTENANCE_CHECKPOINT_INTERVAL="0.1"
    )
    run = wait_for(lambda: Run.objects.filter(status=S.RUNNING, tick_count__gt=0).first(), timeout=60)
    return command, run


def test_pause_resume_cancel_a_running_task_live(login, manage):
    """One page is loaded once and watches; a second one presses the buttons."""
    from playwright.sync_api import expect

    ItemFactory.create_batch(200)
    watcher = login("alice", *ALL_PERMS)
    operator = watcher.context.new_page()
    command, run = running_run(manage)
    run_page = f"/admin/maintenance_tasks/run/{run.pk}/change/"
    watcher.goto(run_page)
    watcher.evaluate("window.notReloaded = true")
    status = watcher.locator(".mt-run [data-field=status_label]")
    count = watcher.locator(".mt-run [data-field=count_text]")
    expect(status).to_have_text("Running")
    expect(count).not_to_have_text(count.text_content())  # progress moves in place
    screenshot(watcher, "run-running")

    operator.goto(run_page)
    operator.get_by_role("button", name="Pause").click()
    expect(operator.locator(".messagelist")).to_contain_text(f"Pause run {run.pk}: Running → Pausing")
    expect(status).to_have_text("Paused")  # the executor stopped after its item; the watcher polled it
    expect(watcher.get_by_role("button", name="Resume")).to_be_visible()
    expect(watcher.get_by_role("button", name="Pause")).to_be_hidden()
    assert command.wait()[0] == 3  # stopped before the end
    run.refresh_from_db()
    assert run.status == S.PAUSED and 0 < run.tick_count < 200

    # Resume performs the rest inside the request until background execution is configured.
    operator.goto(run_page)
    operator.get_by_role("button", name="Resume").click()
    expect(operator.locator(".messagelist")).to_contain_text(f"Resume run {run.pk}: Paused →")
    expect(status).to_have_text("Succeeded")
    expect(watcher.locator("form[data-action]:visible")).to_have_count(0)
    assert watcher.evaluate("window.notReloaded") is True
    assert set(Item.objects.values_list("times_processed", flat=True)) == {1}

    command, second = running_run(manage)
    RunFactory(succeeded=True, task__processor=f"{APP}.RecordOnce", task__config={}, tick_count=1, tick_total=1)
    RunFactory(errored=True, task__processor=f"{APP}.RecordList", task__config={"words": ["a"]}, tick_total=1)
    operator.goto("/admin/maintenance_tasks/task/")
    expect(operator.locator("#group-active")).to_contain_text("IncrementItemsAutocommit")
    expect(operator.locator("#group-completed")).to_contain_text("RecordOnce")
    screenshot(operator, "index")
    watcher.goto(task_url("IncrementItemsAutocommit"))
    watcher.evaluate("window.notReloaded = true")
    polls = []
    watcher.on("request", lambda request: polls.append(request.url) if "/progress/" in request.url else None)
    active = watcher.locator(f".mt-run[data-run='{second.pk}']")
    expect(active.locator("[data-field=status_label]")).to_have_text("Running")
    operator.goto(task_url("IncrementItemsAutocommit"))
    operator.get_by_role("button", name="Cancel").click()
    expect(operator.locator(".messagelist")).to_contain_text(f"Cancel run {second.pk}: Running → Cancelling")
    expect(active.locator("[data-field=status_label]")).to_have_text("Cancelled")
    expect(active.locator("form[data-action]:visible")).to_have_count(0)
    assert watcher.evaluate("window.notReloaded") is True
    assert command.wait()[0] == 3
    second.refresh_from_db()
    assert second.status == S.CANCELLED
    assert [event.action for event in second.events.filter(source="admin")] == ["cancel"]
    # The run has ended: polling stopped (it polls every 2 s while a run is active).
    polled = len(polls)
    watcher.wait_for_timeout(4500)
    assert len(polls) == polled > 0


def test_user_without_permissions_sees_no_buttons_and_forged_post_is_forbidden(login):
    from playwright.sync_api import expect

    run = RunFactory(running=True, task__processor=f"{APP}.IncrementItems")
    page = login("victor", "view_task", "view_run")
    page.goto(task_url("IncrementItems"))
    expect(page.locator(".mt-run [data-field=status_label]")).to_have_text("Running")
    expect(page.locator("#start-form")).to_have_count(0)
    expect(page.locator("form[data-action]")).to_have_count(0)
    page.goto(f"/admin/maintenance_tasks/run/{run.pk}/change/")
    expect(page.locator("form[data-action]")).to_have_count(0)
    screenshot(page, "run-viewer")

    csrf = next(cookie["value"] for cookie in page.context.cookies() if cookie["name"] == "csrftoken")
    forged = """async ([url, token, body]) => {
        const response = await fetch(url, {method: "POST", headers: {"X-CSRFToken": token,
            "Content-Type": "application/x-www-form-urlencoded"}, body: body});
        return response.status;
    }"""
    for url, body in [
        (f"/admin/maintenance_tasks/run/{run.pk}/pause/", ""),
        (f"/admin/maintenance_tasks/run/{run.pk}/cancel/", ""),
        (task_url("EveryType"), "param-name=x&_start=Start"),
    ]:
        assert page.evaluate(forged, [url, csrf, body]) == 403, url
    run.refresh_from_db()
    assert run.status == S.RUNNING and Run.objects.count() == 1


def test_add_a_schedule_with_errors_by_field_then_see_its_next_run(login):
    from playwright.sync_api import expect

    from maintenance_tasks.models import Schedule

    page = login("olga", "view_task", "start_run", "add_schedule", "change_schedule", "view_schedule")
    page.goto("/admin/maintenance_tasks/schedule/add/")
    page.select_option("#id_processor", f"{APP}.EveryType")
    page.fill("#id_config", '{"limit": "many"}')
    page.fill("#id_cron", "0 25 * * *")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-config .errorlist")).to_contain_text("limit: Enter a whole number.")
    expect(page.locator(".field-config .errorlist")).to_contain_text("name: This parameter is required.")
    expect(page.locator(".field-cron .errorlist")).to_contain_text("is not a valid cron expression")
    screenshot(page, "schedule-errors")
    assert not Schedule.objects.exists()

    page.fill("#id_config", '{"name": "nightly"}')
    page.fill("#id_cron", "0 3 * * *")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    schedule = Schedule.objects.get()
    assert schedule.task.processor == f"{APP}.EveryType" and schedule.task.config["name"] == "nightly"
    assert (schedule.next_run_at.hour, schedule.next_run_at.minute) == (3, 0)  # TIME_ZONE is UTC here
    expect(page.locator("#result_list")).to_contain_text(schedule.next_run_at.strftime("%Y-%m-%d 03:00"))
    screenshot(page, "schedules")


# -- the admin, permissions and what pages show (i12c) -------------------------------------------


def test_progress_bar_of_a_run_without_a_total_stops_moving_when_the_run_stops(login):
    """An indeterminate <progress> (no value) is animated: only a run that moves may have one."""
    from playwright.sync_api import expect

    run = RunFactory(running=True, tick_count=30, tick_total=None, time_running=3.0)
    page = login("alice", *ALL_PERMS)
    page.goto(f"/admin/maintenance_tasks/run/{run.pk}/change/")
    bar = page.locator(".mt-run progress.mt-progress")
    assert bar.evaluate("element => element.position") == -1  # indeterminate while it runs
    Run.objects.filter(pk=run.pk).update(status=S.PAUSED)
    expect(page.locator(".mt-run [data-field=status_label]")).to_have_text("Paused")  # polled in place
    assert bar.evaluate("element => element.position") == 0  # still, empty
    page.reload()
    assert page.locator(".mt-run progress.mt-progress").evaluate("element => element.position") == 0


# -- a visible worker and runbook links --------------------------------------------------------


def test_warning_when_no_worker_takes_the_jobs_goes_once_one_claims(login, settings):
    from playwright.sync_api import expect

    from maintenance_tasks import Runner
    from maintenance_tasks.engine import Engine

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "heavy"]}}
    run = Runner.run(f"{APP}.IncrementItems", {})  # its job really waits in the database queue
    run.refresh_from_db()
    Run.objects.filter(pk=run.pk).update(updated_at=timezone.now() - timedelta(minutes=5))  # not waiting 5 minutes
    page = login("alice", *ALL_PERMS)
    page.goto("/admin/maintenance_tasks/task/")
    warning = page.locator("#missing-worker")
    expect(warning).to_contain_text("No worker seems to be taking maintenance jobs: 1 run has waited")
    expect(warning).to_contain_text("the tasks backend “default” (DatabaseBackend)")
    expect(warning.locator("code")).to_have_text("manage.py db_worker")
    screenshot(page, "missing-worker")
    warning.get_by_role("link", name="Enqueued runs").click()
    expect(page.locator("#result_list")).to_contain_text("IncrementItems")
    page.goto(f"/admin/maintenance_tasks/run/{run.pk}/change/")
    expect(page.locator(".mt-job-id")).to_have_text(run.job_id)

    Engine(run).claim(run.attempt)  # what a worker's slice does first
    page.goto("/admin/maintenance_tasks/task/")
    expect(page.locator("#group-active")).to_contain_text("IncrementItems")
    expect(page.locator("#missing-worker")).to_have_count(0)


def test_a_runbook_link_opens_the_form_filled_in(login):
    from playwright.sync_api import expect

    page = login("alice", *ALL_PERMS)
    page.goto(task_url("EveryType") + "?name=nightly&limit=25&since=2025-01-01&color=green&dry_run=true&bogus=1")
    expect(page.locator("#id_param-name")).to_have_value("nightly")
    expect(page.locator("#id_param-limit")).to_have_value("25")
    expect(page.locator("#id_param-since")).to_have_value("2025-01-01")
    expect(page.locator("#id_param-color")).to_have_value("green")
    expect(page.locator("#id_param-dry_run")).to_be_checked()
    expect(page.locator("#prefill-notes")).to_have_text("Not parameters of this task, ignored: bogus.")
    assert not Run.objects.exists()  # opening the link started nothing
    page.get_by_role("button", name="Start").click()
    run = Run.objects.get()
    page.wait_for_url(f"**/admin/maintenance_tasks/run/{run.pk}/change/")
    assert run.task.config["name"] == "nightly" and run.task.config["since"] == "2025-01-01"
