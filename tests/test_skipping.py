"""Skipping bad items (``skip_on``): the good items of a batch commit, the bad ones are recorded, on every database."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from maintenance_tasks.engine import Engine
from maintenance_tasks.exceptions import TooManySkipped
from maintenance_tasks.models import Run, SkippedItem
from maintenance_tasks.retention import prune_runs
from maintenance_tasks.runner import Runner
from maintenance_tasks.skipping import CSV_COLUMNS
from maintenance_tasks.status import RunStatus
from maintenance_tasks.testing import run_processor
from testproject.testapp import maintenance
from testproject.testapp.models import Item, Seen

from .test_admin import make_user, run_url

pytestmark = pytest.mark.django_db
APP = "testproject.testapp.maintenance."
BAD_ITEM = APP + "BadItem"


def make_items(count, bad_positions=()):
    """Create ``count`` items, those at ``bad_positions`` (0-based) with value 1 (bad); return them in order."""
    return Item.objects.bulk_create(Item(value=int(i in bad_positions)) for i in range(count))


def counters():
    return dict(Item.objects.values_list("pk", "times_processed"))


def skipped(run):
    return list(
        run.skipped_items.order_by("id").values_list("item_key", "last_key", "items", "error_class", "error_message")
    )


def key(item):
    return json.dumps([item.pk])


def test_three_bad_items_among_100_the_97_good_ones_commit():
    items = make_items(100, bad_positions=(3, 50, 99))
    run = run_processor(APP + "SkipBadItems", {"bad": 1})
    assert run.status == RunStatus.SUCCEEDED
    assert run.tick_count == 100
    assert run.skipped_count == 3
    bad = [items[3], items[50], items[99]]
    # Each good item once: the replay reloaded them, so the rolled back attempt's +1 in memory did not carry over.
    assert counters() == {item.pk: 0 if item in bad else 1 for item in items}
    assert skipped(run) == [(key(item), "", 1, BAD_ITEM, f"item {item.pk} is bad") for item in bad]


def test_a_database_error_in_skip_on_rolls_back_only_its_item():
    """A row the database refuses (a taken primary key) aborts a PostgreSQL transaction: its savepoint saves the batch."""
    items = make_items(20, bad_positions=(5,))
    run = run_processor(APP + "SkipIntegrityErrors", {"bad": 1, "batch_size": 10})
    assert run.status == RunStatus.SUCCEEDED
    assert counters() == {item.pk: int(item != items[5]) for item in items}
    [(item_key, _, _, error_class, _)] = skipped(run)
    assert (item_key, error_class) == (key(items[5]), "django.db.utils.IntegrityError")


def test_max_skipped_errors_the_run_with_a_message_that_says_so():
    items = make_items(30, bad_positions=(5, 15, 25))  # one bad item in each batch of ten
    with pytest.raises(TooManySkipped) as caught:
        run_processor(APP + "SkipFewBadItems", {"bad": 1, "batch_size": 10})
    run = caught.value.run
    assert run.status == RunStatus.ERRORED
    assert run.error_class == "maintenance_tasks.exceptions.TooManySkipped"
    assert run.error_message == (
        f"Skipped 3 items, more than max_skipped (2): last error at {key(items[25])}: {BAD_ITEM}: item {items[25].pk} is bad"
    )
    # The first two batches committed with their skipped items; the third, which went over, was rolled back.
    assert run.cursor == key(items[19])
    assert run.skipped_count == 2
    assert [row[0] for row in skipped(run)] == [key(items[5]), key(items[15])]
    assert counters() == {item.pk: int(i < 20 and i not in (5, 15)) for i, item in enumerate(items)}


def test_an_error_not_in_skip_on_errors_the_run_and_rolls_its_batch_back():
    items = make_items(20, bad_positions=(2,))
    with pytest.raises(maintenance.Boom):
        run_processor(APP + "SkipBadItems", {"bad": 1, "batch_size": 10, "fail_at": items[14].pk})
    run = Run.objects.get()
    assert run.status == RunStatus.ERRORED
    assert run.error_class == APP + "Boom"
    assert run.cursor == key(items[9])
    assert run.skipped_count == 1
    assert counters() == {item.pk: int(i < 10 and i != 2) for i, item in enumerate(items)}


def test_an_error_in_retry_on_and_skip_on_is_retried_never_skipped():
    make_items(5, bad_positions=(2,))
    with pytest.raises(maintenance.BadItem):
        run_processor(APP + "RetryBadItems", {"bad": 1})
    run = Run.objects.get()
    assert (run.status, run.retries, run.skipped_count) == (RunStatus.ERRORED, 1, 0)
    assert not SkippedItem.objects.exists()
    assert set(counters().values()) == {0}


def test_autocommit_items_that_raise_are_recorded_and_skipped():
    items = make_items(100, bad_positions=(3, 50, 99))
    run = run_processor(APP + "SkipBadItemsAutocommit", {"bad": 1})
    assert (run.status, run.tick_count, run.skipped_count) == (RunStatus.SUCCEEDED, 100, 3)
    # Each item committed its own update, the bad ones too, before it raised: nothing to roll back.
    assert set(counters().values()) == {1}
    assert [row[0] for row in skipped(run)] == [key(items[3]), key(items[50]), key(items[99])]


def test_a_bad_process_batch_is_replayed_through_process():
    items = make_items(30, bad_positions=(14,))
    run = run_processor(APP + "SkipBadBatches", {"bad": 1})
    assert (run.status, run.skipped_count) == (RunStatus.SUCCEEDED, 1)
    assert counters() == {item.pk: int(item != items[14]) for item in items}
    assert skipped(run) == [(key(items[14]), "", 1, BAD_ITEM, f"item {items[14].pk} is bad")]


def test_a_bad_process_batch_without_process_is_recorded_by_its_key_range():
    items = make_items(30, bad_positions=(14,))
    run = run_processor(APP + "SkipBadBatchesWhole", {"bad": 1})
    assert (run.status, run.tick_count, run.skipped_count) == (RunStatus.SUCCEEDED, 30, 10)
    assert counters() == {item.pk: int(not 10 <= i < 20) for i, item in enumerate(items)}
    assert skipped(run) == [(key(items[10]), key(items[19]), 10, BAD_ITEM, "a bad item in the batch")]


def test_autocommit_process_batch_is_replayed_through_process():
    items = make_items(30, bad_positions=(14,))
    run = run_processor(APP + "SkipBadBatchesAutocommit", {"bad": 1})
    assert (run.status, run.skipped_count) == (RunStatus.SUCCEEDED, 1)
    # The batch's UPDATE committed before it raised, then its items were done again one by one: at least once.
    assert counters() == {item.pk: 2 if 10 <= i < 20 and i != 14 else 1 for i, item in enumerate(items)}
    assert skipped(run) == [(key(items[14]), "", 1, BAD_ITEM, f"item {items[14].pk} is bad")]


def test_item_keys_of_a_list_are_positions():
    run = run_processor(APP + "SkipBadWords", {"words": ["a", "bad", "c", "d", "bad"]})
    assert (run.status, run.skipped_count) == (RunStatus.SUCCEEDED, 2)
    assert [row[0] for row in skipped(run)] == ["2", "5"]
    assert list(Seen.objects.order_by("pk").values_list("value", flat=True)) == ["a", "c", "d"]


def test_a_dry_run_records_the_items_it_would_skip_and_counts_the_writes_once():
    make_items(10, bad_positions=(4,))
    run = Runner.create(APP + "SkipBadItems", {"bad": 1}, dry_run=True)
    run = Engine(run).perform()
    assert (run.status, run.skipped_count) == (RunStatus.SUCCEEDED, 1)
    assert set(counters().values()) == {0}  # rolled back
    report = Run.objects.get(pk=run.pk).dry_run_report
    # The attempt that raised is not counted, only the replay (which counts the bad item's update before its error).
    assert report == {"batches": 1, "writes": {"UPDATE testapp_item": 10}, "statements": {"UPDATE testapp_item": 10}}
    assert len(skipped(run)) == 1


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"skip_on": maintenance.BadItem}, f"skip_on must be a tuple of exception classes, not <class '{BAD_ITEM}'>."),
        (
            {"skip_on": (KeyboardInterrupt,)},
            "skip_on must be a tuple of exception classes, not (<class 'KeyboardInterrupt'>,).",
        ),
        ({"max_skipped": -1}, "max_skipped must be a whole number, 0 or more, or None (no limit), not -1."),
        ({"max_skipped": 1.5}, "max_skipped must be a whole number, 0 or more, or None (no limit), not 1.5."),
    ],
)
def test_bad_skip_settings_are_refused(attributes, message):
    processor = type("Broken", (maintenance.SkipBadItems,), {"__module__": __name__, **attributes})
    assert ("maintenance_tasks.E038", message) in processor.definition_problems()
    assert [m.id for m in processor.check()] == ["maintenance_tasks.E038"]


def test_max_skipped_none_has_no_limit():
    processor = type("NoLimit", (maintenance.SkipBadItems,), {"__module__": __name__, "max_skipped": None})
    assert processor.definition_problems() == []


# -- where skipped items are shown, listed, kept ---------------------------------------------------


@pytest.fixture
def skipped_run():
    """A run that skipped 101 items, the last one with a comma, quotes and a newline in its message."""
    run = Runner.create(APP + "SkipBadItems", {"bad": 1})
    rows = [
        SkippedItem(run=run, item_key=f"[{i}]", error_class=BAD_ITEM, error_message=f"item {i} is bad")
        for i in range(100)
    ]
    rows.append(
        SkippedItem(
            run=run,
            item_key="[1000]",
            last_key="[1009]",
            items=10,
            error_class=BAD_ITEM,
            error_message='a "bad",\nbatch',
        )
    )
    SkippedItem.objects.bulk_create(rows)
    Run.objects.filter(pk=run.pk).update(skipped_count=110)
    run.refresh_from_db()
    return run


def read_csv(text):
    return list(csv.reader(io.StringIO(text)))


def test_the_run_page_shows_the_first_100_skipped_items_and_the_count(client, skipped_run):
    client.force_login(make_user("viewer", "view_run"))
    page = client.get(run_url(skipped_run)).content.decode()
    assert "110 items skipped" in page
    assert page.count('class="mt-skipped-item"') == 100
    assert "item 99 is bad" in page and "[1000]" not in page
    assert "The first 100 are shown." in page
    assert reverse("admin:maintenance_tasks_run_skipped", args=[skipped_run.pk]) in page


def test_the_run_page_of_a_run_that_skipped_nothing_has_no_skipped_block(client):
    run = Runner.create(APP + "SkipBadItems", {"bad": 1})
    client.force_login(make_user("viewer", "view_run"))
    assert "mt-skipped" not in client.get(run_url(run)).content.decode()


def test_the_skipped_items_download_is_a_streamed_csv_of_all_of_them(client, skipped_run):
    client.force_login(make_user("viewer", "view_run"))
    response = client.get(reverse("admin:maintenance_tasks_run_skipped", args=[skipped_run.pk]))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="run-{skipped_run.pk}-skipped.csv"'
    rows = read_csv(b"".join(response.streaming_content).decode())
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 102
    assert rows[1][:5] == ["[0]", "", "1", BAD_ITEM, "item 0 is bad"]
    assert rows[-1][:5] == ["[1000]", "[1009]", "10", BAD_ITEM, 'a "bad",\nbatch']


def test_the_skipped_items_download_needs_the_view_permission(client, skipped_run):
    url = reverse("admin:maintenance_tasks_run_skipped", args=[skipped_run.pk])
    client.force_login(make_user("nobody"))
    assert client.get(url).status_code == 403
    assert client.get(reverse("admin:maintenance_tasks_run_skipped", args=[skipped_run.pk + 1000])).status_code == 403


def test_maintenance_runs_failures_writes_the_same_csv(skipped_run):
    out = io.StringIO()
    call_command("maintenance_runs", "failures", str(skipped_run.pk), "--csv", stdout=out)
    rows = read_csv(out.getvalue())
    assert rows[0] == list(CSV_COLUMNS) and len(rows) == 102
    assert rows[-1][:5] == ["[1000]", "[1009]", "10", BAD_ITEM, 'a "bad",\nbatch']
    with pytest.raises(CommandError, match=f"There is no run {skipped_run.pk + 1000}."):
        call_command("maintenance_runs", "failures", str(skipped_run.pk + 1000))


def test_maintenance_runs_failures_lists_the_first_ones_in_columns_or_json(skipped_run):
    out = io.StringIO()
    call_command("maintenance_runs", "failures", str(skipped_run.pk), "--limit", "101", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["KEY", "ITEMS", "ERROR", "MESSAGE", "SKIPPED"]
    assert lines[1].split()[:4] == ["[0]", "1", "BadItem", "item"]
    assert lines[101].startswith("[1000]..[1009]  10") and 'a "bad", batch' in lines[101]
    assert lines[-1] == "101 of 110 skipped items; --csv lists them all."
    out = io.StringIO()
    call_command("maintenance_runs", "failures", str(skipped_run.pk), "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["run"] == skipped_run.pk and data["skipped"] == 110 and len(data["items"]) == 100
    assert data["items"][0]["item_key"] == "[0]" and data["items"][0]["error_class"] == BAD_ITEM


def test_run_maintenance_task_says_how_many_items_it_skipped():
    make_items(10, bad_positions=(4, 6))
    out = io.StringIO()
    call_command("run_maintenance_task", APP + "SkipBadItems", "--arg", "bad=1", stdout=out)
    run = Run.objects.get()
    assert f"Skipped 2 items; list them with: manage.py maintenance_runs failures {run.pk}" in out.getvalue()


def test_retention_deletes_the_skipped_items_with_their_run(settings, skipped_run):
    settings.MAINTENANCE_TASKS = {"RETENTION": {"succeeded": 10}}
    Run.objects.filter(pk=skipped_run.pk).update(
        status=RunStatus.SUCCEEDED, ended_at=timezone.now() - timedelta(days=11)
    )
    latest = Runner.create(APP + "SkipBadItems", {"bad": 1})  # the task's latest run is always kept
    SkippedItem.objects.create(run=latest, item_key="[1]", error_class=BAD_ITEM)
    assert prune_runs()["succeeded"] == 1
    assert not Run.objects.filter(pk=skipped_run.pk).exists()
    assert list(SkippedItem.objects.values_list("run", flat=True)) == [latest.pk]
