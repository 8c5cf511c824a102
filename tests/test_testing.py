"""``maintenance_tasks.testing.run_processor``: a run to the end inside a test's transaction."""

import io
import threading
import traceback
import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import TestCase

from maintenance_tasks.exceptions import UnknownProcessor
from maintenance_tasks.heartbeat import Heartbeat
from maintenance_tasks.models import Run, RunEvent
from maintenance_tasks.status import RunStatus
from maintenance_tasks.testing import run_processor
from testproject.testapp.maintenance import Boom, IncrementItems, IncrementItemsAutocommit, RecordRows, SlowRetryBatches
from testproject.testapp.models import Item, Seen
from testproject.testapp.other import Hidden


def make_items(count):
    return [Item.objects.create() for _ in range(count)]


@pytest.mark.django_db
def test_runs_the_processor_to_the_end_and_returns_the_ended_run():
    make_items(25)
    run = run_processor(IncrementItems)
    assert isinstance(run, Run)
    assert (run.status, run.tick_count, run.tick_total) == (RunStatus.SUCCEEDED, 25, 25)
    assert run.task.processor == "testproject.testapp.maintenance.IncrementItems"
    assert set(Item.objects.values_list("times_processed", flat=True)) == {1}
    assert list(run.events.values_list("action", flat=True)) == ["created", "started", "succeeded"]


@pytest.mark.django_db
def test_takes_a_config_and_a_dotted_path():
    items = make_items(5)
    run = run_processor("testproject.testapp.maintenance.IncrementItemsAutocommit", {"fail_at": None})
    assert run.task.processor.endswith(IncrementItemsAutocommit.__qualname__)
    assert run.status == RunStatus.SUCCEEDED
    assert Item.objects.filter(pk__in=[item.pk for item in items], times_processed=1).count() == 5


@pytest.mark.django_db
def test_raises_the_processors_own_error_with_the_errored_run():
    items = make_items(25)
    with pytest.raises(Boom, match=f"item {items[14].pk} failed") as caught:
        run_processor(IncrementItems, {"fail_at": items[14].pk})
    run = caught.value.run
    assert (run.status, run.error_class) == (RunStatus.ERRORED, "testproject.testapp.maintenance.Boom")
    assert run.tick_count == 10  # the first batch of 10 committed, the second rolled back
    frames = traceback.extract_tb(caught.value.__traceback__)
    assert (frames[-1].name, frames[-1].line) == ("process", 'raise Boom(f"item {item.pk} failed")')


@pytest.mark.django_db
def test_retries_at_once_without_the_backoff_delay():
    items = make_items(30)
    config = {"marker": uuid.uuid4().hex, "fail_at": items[15].pk}  # retry_backoff is 60 seconds
    run = run_processor(SlowRetryBatches, config)
    assert (run.status, run.retries) == (RunStatus.SUCCEEDED, 1)
    retry = RunEvent.objects.get(run=run, action="retry")
    assert retry.detail["delay"] == 0.0
    assert set(Item.objects.values_list("times_processed", flat=True)) == {1}


@pytest.mark.django_db
def test_a_bad_config_saves_nothing():
    with pytest.raises(ValidationError, match="fail_at"):
        run_processor(IncrementItems, {"fail_at": "first"})
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_only_discovered_processors_run():
    with pytest.raises(UnknownProcessor, match="is not a discovered processor"):
        run_processor(Hidden)
    assert not Run.objects.exists()


def heartbeats():
    return [thread for thread in threading.enumerate() if thread.name.startswith("heartbeat-run-")]


@pytest.mark.django_db
def test_inside_a_transaction_no_heartbeat_thread_waits_on_the_run(settings, monkeypatch):
    # A beat every 0.05s while each item takes 0.1s: a heartbeat thread would write, and wait on
    # the run's row that the test's transaction holds (SQLite, MariaDB) until its lock timeout.
    settings.MAINTENANCE_TASKS = {"STALE_AFTER": 0.2}
    seen = []
    make_items(3)
    original = IncrementItems.process

    def process(self, item):
        seen.append(heartbeats())
        original(self, item)

    monkeypatch.setattr(IncrementItems, "process", process)
    run = run_processor(IncrementItems, {"delay": 0.1})
    assert run.status == RunStatus.SUCCEEDED
    assert seen == [[], [], []]


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_starts_only_outside_a_transaction():
    beat = Heartbeat(0, lambda: 0, lambda: 0.0, 60)
    with transaction.atomic():
        beat.start()
        assert not beat.is_alive()
    beat.stop()  # never started: nothing to wait for
    beat = Heartbeat(0, lambda: 0, lambda: 0.0, 60)
    beat.start()
    assert beat.is_alive()
    beat.stop()
    assert not beat.is_alive()


class RunProcessorInATestCase(TestCase):
    """The same helper in Django's TestCase (a transaction per test, rolled back)."""

    def test_runs_and_raises(self):
        items = make_items(12)
        run = run_processor(IncrementItems)
        self.assertEqual((run.status, run.tick_count), (RunStatus.SUCCEEDED, 12))
        with self.assertRaises(Boom) as caught:
            run_processor(IncrementItems, {"fail_at": items[0].pk})
        self.assertEqual(caught.exception.run.status, RunStatus.ERRORED)
        self.assertEqual(caught.exception.run.tick_count, 0)


@pytest.mark.django_db
def test_runs_a_csv_processor_over_the_file_given(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path  # where the run's file is stored (CSV_STORAGE: the default storage)
    run = run_processor(RecordRows, csv_file=io.BytesIO(b"id,name\n1,ada\n2,grace\n"))
    assert (run.status, run.tick_count, run.tick_total) == (RunStatus.SUCCEEDED, 2, 2)
    assert sorted(Seen.objects.values_list("value", flat=True)) == [
        '{"id": "1", "name": "ada"}',
        '{"id": "2", "name": "grace"}',
    ]
    with pytest.raises(ValidationError) as caught:
        run_processor(RecordRows)  # a CSV processor without a file: refused, nothing saved
    assert "csv_file" in caught.value.message_dict
    assert Run.objects.count() == 1
