"""The dry-run checkbox in a real browser: tick it, start, read the report on the run page."""

from maintenance_tasks.models import Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item

# The browser fixtures, and the marks (browser, transactional database, chromium installed), are test_admin_browser's.
from .test_admin_browser import ALL_PERMS, browser, login, pytestmark, screenshot, task_url  # noqa: F401


def test_tick_dry_run_start_and_see_the_report(login):  # noqa: F811 (the imported fixture)
    from playwright.sync_api import expect

    Item.objects.bulk_create(Item(value=i) for i in range(25))
    page = login("alice", *ALL_PERMS)
    page.goto(task_url("IncrementItemsInBatches"))
    expect(page.locator("#id_run-dry_run")).not_to_be_checked()
    page.check("#id_run-dry_run")
    screenshot(page, "dry-run-start")
    page.get_by_role("button", name="Start").click()

    run = Run.objects.get()
    page.wait_for_url(f"**/admin/maintenance_tasks/run/{run.pk}/change/")
    expect(page.locator(".messagelist")).to_contain_text(f"Started dry run {run.pk} of IncrementItemsInBatches")
    expect(page.locator(".mt-run [data-field=status_label]")).to_have_text("Succeeded")
    expect(page.locator(".mt-run .mt-dry-run")).to_have_text("dry run")
    report = page.locator("#dry-run-report")
    expect(report.locator("caption")).to_have_text("Dry run: every batch was rolled back")
    expect(report.locator(".mt-dry-run-write th")).to_have_text(["UPDATE testapp_item"])
    expect(report.locator(".mt-dry-run-write td")).to_have_text(["25", "3"])
    expect(report.locator(".mt-dry-run-summary")).to_contain_text("25 items in 3 batches")
    screenshot(page, "dry-run-report")
    run.refresh_from_db()
    assert run.dry_run and run.status == RunStatus.SUCCEEDED
    assert list(Item.objects.values_list("times_processed", flat=True).distinct()) == [0]
