"""Skipped items in a real browser: a run's page lists them, and its CSV download holds them all."""

import csv
import json

from maintenance_tasks.skipping import CSV_COLUMNS
from maintenance_tasks.testing import run_processor
from testproject.testapp.models import Item

# The browser fixtures, and the marks (browser, transactional database, chromium installed), are test_admin_browser's.
from .test_admin_browser import browser, login, pytestmark, screenshot  # noqa: F401

BAD_ITEM = "testproject.testapp.maintenance.BadItem"


def test_the_run_page_lists_the_skipped_items_and_downloads_them_as_csv(login, tmp_path):  # noqa: F811 (the fixture)
    from playwright.sync_api import expect

    items = Item.objects.bulk_create(Item(value=int(i in (3, 50, 99))) for i in range(100))
    run = run_processor("testproject.testapp.maintenance.SkipBadItems", {"bad": 1})
    bad = [items[3], items[50], items[99]]

    page = login("viewer", "view_run")
    page.goto(f"/admin/maintenance_tasks/run/{run.pk}/change/")
    block = page.locator("#skipped-items")
    expect(block.locator("caption")).to_have_text("3 items skipped")
    expect(block.locator(".mt-skipped-key")).to_have_text([json.dumps([item.pk]) for item in bad])
    expect(block.locator(".mt-skipped-item").first).to_contain_text(f"{BAD_ITEM}: item {bad[0].pk} is bad")
    screenshot(page, "skipped-items")

    with page.expect_download() as download:
        block.get_by_role("link", name="Download CSV").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name == f"run-{run.pk}-skipped.csv"
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == list(CSV_COLUMNS)
    assert [row[:5] for row in rows[1:]] == [
        [json.dumps([item.pk]), "", "1", BAD_ITEM, f"item {item.pk} is bad"] for item in bad
    ]
