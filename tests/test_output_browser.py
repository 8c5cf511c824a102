"""A run's output and status line on its page, in a real browser, while the run goes on in another process."""

from maintenance_tasks.models import Run
from maintenance_tasks.runner import Runner
from maintenance_tasks.status import RunStatus

from .conftest import wait_for

# The fixtures, and the marks: browser, a transactional database, skipped without chromium.
from .test_admin_browser import ALL_PERMS, browser, login, pytestmark, screenshot  # noqa: F401


def test_output_and_status_appear_live_while_the_run_goes_on(login, manage, tmp_path):  # noqa: F811
    """The page is loaded once, before the run logs anything; the lines and the status arrive by polling."""
    from playwright.sync_api import expect

    gate = tmp_path / "go"
    command = manage(
        "run_maintenance_task", "LogEveryItem", "--arg", "items=100000", "--arg", "delay=0.05",
        "--arg", "label=<b>row</b>", "--arg", f"gate={gate}", "-v0",
        MAINTENANCE_CHECKPOINT_INTERVAL="0.1", MAINTENANCE_OUTPUT_LINES="5",
    )  # fmt: skip
    run = wait_for(lambda: Run.objects.filter(status=RunStatus.RUNNING).first(), timeout=60)
    page = login("alice", *ALL_PERMS)
    page.goto(f"/admin/maintenance_tasks/run/{run.pk}/change/")
    page.evaluate("window.notReloaded = true")
    output = page.locator("#run-output")
    status_line = page.locator(".mt-run [data-field=status_line]")
    expect(output).to_be_hidden()  # nothing logged yet
    expect(status_line).to_be_hidden()

    gate.touch()
    expect(status_line).to_contain_text("at <b>row</b> ")
    expect(status_line).not_to_have_text(status_line.text_content())  # it moves in place
    lines = output.locator(".mt-output-lines li")
    expect(lines).to_have_count(5)  # OUTPUT_LINES of the process that runs it
    expect(output.locator("[data-output=dropped]")).to_contain_text("earlier lines not kept.")
    expect(lines.last).not_to_have_text(lines.last.text_content())  # new lines replace the old ones
    expect(lines.first).to_contain_text("<b>row</b> ")  # shown as text, never as HTML
    expect(output.locator("b")).to_have_count(0)
    expect(page.locator(".mt-run b")).to_have_count(0)
    screenshot(page, "run-output")
    assert page.evaluate("window.notReloaded") is True

    Runner.cancel(Run.objects.get(pk=run.pk))
    expect(page.locator(".mt-run [data-field=status_label]")).to_have_text("Cancelled")
    assert command.wait()[0] == 3
    run.refresh_from_db()
    last = run.tick_count - 1
    assert [line["text"] for line in run.output] == [f"<b>row</b> {n}" for n in range(last - 4, last + 1)]
    assert run.output_dropped == run.tick_count - 5
    expect(lines.last).to_contain_text(f"<b>row</b> {last}")  # the last poll showed the lines saved at the end
