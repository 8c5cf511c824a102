"""Batch size and batch time in a real browser: the start form's Advanced part, and tuning a run from its page."""

from maintenance_tasks.models import Run, RunEvent
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item

from .factories import RunFactory, TaskFactory

# The browser fixtures, and the marks (browser, transactional database, chromium installed), are test_admin_browser's.
from .test_admin_browser import APP, ALL_PERMS, browser, login, pytestmark, screenshot, task_url  # noqa: F401


def test_open_advanced_set_batch_size_and_time_and_start(login):  # noqa: F811 (the imported fixture)
    from playwright.sync_api import expect

    Item.objects.bulk_create(Item() for _ in range(30))
    page = login("alice", *ALL_PERMS)
    page.goto(task_url("PacedBatches"))
    expect(page.locator("#id_run-batch_size")).to_be_hidden()  # the Advanced part starts closed
    page.get_by_text("Advanced", exact=True).click()
    page.fill("#id_run-batch_size", "7")
    page.fill("#id_run-batch_time", "3600")
    screenshot(page, "batch-time-start")
    page.get_by_role("button", name="Start").click()

    run = Run.objects.get()
    page.wait_for_url(f"**/admin/maintenance_tasks/run/{run.pk}/change/")
    expect(page.locator(".mt-run [data-field=status_label]")).to_have_text("Succeeded")
    expect(page.locator(".field-batches .readonly")).to_contain_text("batches of 7 items; 1 commit")
    run.refresh_from_db()
    assert (run.batch_size, run.batch_time, run.commits, run.tick_count) == (7, 3600.0, 1, 30)


def test_a_bad_batch_size_opens_advanced_with_the_error_beside_it(login):  # noqa: F811
    from playwright.sync_api import expect

    page = login("alice", *ALL_PERMS)
    page.goto(task_url("PacedBatches"))
    page.get_by_text("Advanced", exact=True).click()
    page.fill("#id_run-batch_time", "7200")
    page.get_by_role("button", name="Start").click()
    expect(page.locator(".field-batch_time .errorlist")).to_have_text(
        "batch_time must be a number of seconds, above 0 and at most 3600, not 7200.0."
    )
    expect(page.locator("#id_run-batch_time")).to_be_visible()  # opened again, the value kept
    expect(page.locator("#id_run-batch_time")).to_have_value("7200")
    assert not Run.objects.exists()


def test_tune_an_active_run_from_its_page(login):  # noqa: F811
    from playwright.sync_api import expect

    run = RunFactory(running=True, task=TaskFactory(processor=f"{APP}.PacedBatches"))
    page = login("alice", *ALL_PERMS)
    page.goto(f"/admin/maintenance_tasks/run/{run.pk}/change/")
    page.get_by_text("Tune this run", exact=True).click()
    page.fill("#tune-form #id_batch_size", "5")
    page.fill("#tune-form #id_batch_time", "0.25")
    page.fill("#tune-form #id_sleep_ratio", "1.5")
    screenshot(page, "batch-time-tune")
    page.get_by_role("button", name="Tune", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text(
        f"Tuned run {run.pk}: batch size 5, batch time 0.25s, sleep ratio 1.5."
    )
    expect(page.locator(".field-batches .readonly")).to_contain_text(
        "this run's own: batch_size 5, batch_time 0.25s, sleep_ratio 1.5"
    )
    run.refresh_from_db()
    assert (run.status, run.batch_size, run.batch_time, run.sleep_ratio) == (RunStatus.RUNNING, 5, 0.25, 1.5)
    assert RunEvent.objects.filter(run=run, action="tune", user="alice").exists()
