"""Resuming an errored run in a real browser: the Resume button, then the error in the audit trail."""

from maintenance_tasks import Runner
from maintenance_tasks.models import Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item, Seen

# The browser fixtures, and the marks (browser, transactional database, chromium installed), are test_admin_browser's.
from .test_admin_browser import APP, browser, login, pytestmark, screenshot  # noqa: F401


def test_resume_an_errored_run_after_the_fix(login):  # noqa: F811 (the imported fixture)
    from playwright.sync_api import expect

    Item.objects.bulk_create(Item() for _ in range(250))
    pks = list(Item.objects.order_by("pk").values_list("pk", flat=True))
    Seen.objects.create(value="bug")
    run = Runner.run(f"{APP}.IncrementItemsUntilFixed", {"fail_at": pks[130]})
    assert Run.objects.get(pk=run.pk).status == RunStatus.ERRORED
    page = login("alice", "view_task", "view_run", "pause_run")
    page.goto(f"/admin/maintenance_tasks/run/{run.pk}/change/")
    expect(page.locator(".mt-run [data-field=status_label]")).to_have_text("Errored")
    expect(page.locator(".mt-error")).to_contain_text(f"the batch of item {pks[130]} hit the bug")
    resume = page.get_by_role("button", name="Resume")
    expect(resume).to_be_visible()
    expect(page.get_by_role("button", name="Pause")).to_be_hidden()
    screenshot(page, "resume-errored-before")

    Seen.objects.filter(value="bug").delete()  # the fix
    resume.click()
    expect(page.locator(".messagelist")).to_contain_text(f"Resume run {run.pk}: Errored → Succeeded.")
    expect(page.locator(".mt-run [data-field=status_label]")).to_have_text("Succeeded")
    expect(page.locator(".mt-error")).to_have_count(0)  # no longer the run's error: the trail's
    expect(resume).to_be_hidden()
    past = page.locator("#audit-trail .mt-event-error")
    expect(past.locator("summary")).to_contain_text(f"{APP}.Boom: the batch of item {pks[130]} hit the bug")
    expect(past.locator(".mt-backtrace")).to_be_hidden()
    past.locator("summary").click()
    expect(past.locator(".mt-backtrace")).to_contain_text("Traceback (most recent call last)")
    expect(past).to_contain_text(f"At cursor [{pks[99]}], after 100 items.")
    screenshot(page, "resume-errored-after")
    assert list(Item.objects.values_list("times_processed", flat=True).distinct()) == [1]
