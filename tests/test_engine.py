import json
import uuid

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from maintenance_tasks import Processor
from maintenance_tasks.counting import count_within
from maintenance_tasks.engine import Engine
from maintenance_tasks.models import Run
from maintenance_tasks.runner import Runner
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import CodeItem, Item, RankedItem, Seen, UUIDItem

pytestmark = pytest.mark.django_db
APP = "testproject.testapp.maintenance."


def perform(name, config=None, **engine_options):
    run = Runner.create(APP + name, config)
    return Engine(run, **engine_options).perform()


def times(model=Item):
    return list(model.objects.order_by("pk").values_list("times_processed", flat=True))


@pytest.fixture
def items():
    return Item.objects.bulk_create(Item() for _ in range(25))


class StopAfter:
    """A should_stop callback that says stop after ``n`` calls, optionally doing something first."""

    def __init__(self, n, action=None):
        self.n, self.calls, self.action = n, 0, action

    def __call__(self):
        self.calls += 1
        if self.calls == self.n and self.action:
            self.action()
        return self.calls >= self.n and self.action is None


@pytest.mark.parametrize("name", ["IncrementItems", "IncrementItemsInBatches", "IncrementItemsAutocommit"])
def test_every_item_is_processed_once(items, name):
    run = perform(name)
    assert run.status == RunStatus.SUCCEEDED
    assert (run.tick_count, run.tick_total) == (25, 25)
    assert times() == [1] * 25
    assert run.cursor == f"[{items[-1].pk}]"
    assert run.started_at and run.ended_at and run.time_running > 0


def test_uuid_primary_keys(django_assert_max_num_queries):
    UUIDItem.objects.bulk_create(UUIDItem(id=uuid.uuid4()) for _ in range(20))
    run = perform("IncrementUUIDItems")
    assert run.status == RunStatus.SUCCEEDED and run.tick_count == 20
    assert times(UUIDItem) == [1] * 20


def test_string_primary_keys_with_process_batch():
    CodeItem.objects.bulk_create(CodeItem(code=f"c{i:03}") for i in range(20))
    run = perform("IncrementCodeItems")
    assert run.status == RunStatus.SUCCEEDED and run.tick_count == 20
    assert times(CodeItem) == [1] * 20
    assert run.cursor == '["c019"]'


def test_cursor_columns_order_the_walk_and_resume():
    RankedItem.objects.bulk_create(RankedItem(group=g, position=p) for g in (3, 1, 2) for p in (2, 1, 3))
    run = perform("IncrementRankedItems", should_stop=StopAfter(1))  # 4 per batch
    assert run.status == RunStatus.INTERRUPTED
    done = RankedItem.objects.filter(times_processed=1).order_by("group", "position")
    assert [(r.group, r.position) for r in done] == [(1, 1), (1, 2), (1, 3), (2, 1)]
    assert run.cursor == "[2,1]"
    Runner.resume(run, execute=False)
    run = Engine(run).perform()
    assert run.status == RunStatus.SUCCEEDED and run.tick_count == 9
    assert times(RankedItem) == [1] * 9


@pytest.mark.parametrize("name", ["IncrementItems", "IncrementItemsInBatches", "IncrementItemsAutocommit"])
def test_interrupt_then_resume_goes_on_from_the_cursor(items, name):
    run = perform(name, should_stop=StopAfter(2))
    assert run.status == RunStatus.INTERRUPTED
    stopped_at = run.tick_count
    assert 0 < stopped_at < 25
    assert times().count(1) == stopped_at
    Runner.resume(run, execute=False)
    run = Engine(Run.objects.get(pk=run.pk)).perform()
    assert run.status == RunStatus.SUCCEEDED and run.tick_count == 25
    assert times() == [1] * 25


def test_atomic_error_rolls_back_the_batch_and_keeps_the_last_checkpoint(items):
    run = perform("IncrementItems", {"fail_at": items[14].pk})  # batches of 10: 11..15 fail
    assert run.status == RunStatus.ERRORED
    assert run.error_class == "testproject.testapp.maintenance.Boom"
    assert run.error_message == f"item {items[14].pk} failed"
    assert "Boom" in run.backtrace and "process" in run.backtrace
    assert times() == [1] * 10 + [0] * 15
    assert (run.tick_count, run.cursor) == (10, f"[{items[9].pk}]")
    assert Run.objects.get(pk=run.pk).cursor == run.cursor


def test_autocommit_error_keeps_items_done_before_it(items):
    run = perform("IncrementItemsAutocommit", {"fail_at": items[14].pk})
    assert run.status == RunStatus.ERRORED
    assert times() == [1] * 14 + [0] * 11
    assert (run.tick_count, run.cursor) == (14, f"[{items[13].pk}]")


def test_pause_requested_elsewhere_is_honoured_and_not_overwritten(items):
    def request_pause():
        Run.objects.filter(status=RunStatus.RUNNING).update(status=RunStatus.PAUSING)

    run = perform("IncrementItems", should_stop=StopAfter(1, request_pause))
    assert run.status == RunStatus.PAUSED
    assert run.tick_count == 20  # the batch in progress when it was noticed was completed and recorded
    assert times() == [1] * 20 + [0] * 5


def test_cancel_requested_elsewhere(items):
    def request_cancel():
        Run.objects.filter(status=RunStatus.RUNNING).update(status=RunStatus.CANCELLING)

    run = perform("IncrementItems", should_stop=StopAfter(1, request_cancel))
    assert run.status == RunStatus.CANCELLED and run.ended_at is not None
    assert run.tick_count == 20


def test_a_stale_executor_cannot_commit_its_batch(items):
    def take_over():
        Run.objects.filter(status=RunStatus.RUNNING).update(attempt=F("attempt") + 1)

    run = perform("IncrementItems", should_stop=StopAfter(1, take_over))
    stored = Run.objects.get(pk=run.pk)
    assert times() == [1] * 10 + [0] * 15  # the second batch was rolled back
    assert (stored.status, stored.tick_count, stored.cursor) == (RunStatus.RUNNING, 10, f"[{items[9].pk}]")
    assert stored.attempt == 2  # the new attempt's token, untouched by the old executor


def count_overhead():
    """Return the queries that putting a count under COUNT_TIMEOUT adds here (none on SQLite)."""
    with CaptureQueriesContext(connection) as queries:
        count_within(lambda: 0)
    return len(queries)


def test_autocommit_checkpoints_once_per_tick(items, settings, django_assert_max_num_queries):
    settings.MAINTENANCE_TASKS = {"CHECKPOINT_INTERVAL": 3600}
    run = Runner.create(APP + "IncrementItemsAutocommit")
    # claim + event + build + count + 3 page reads + 25 saves + final status (read, write, event)
    with django_assert_max_num_queries(40 + count_overhead()):
        run = Engine(run).perform()
    assert run.status == RunStatus.SUCCEEDED and run.tick_count == 25


def test_queries_per_atomic_batch_are_constant(django_assert_num_queries):
    Item.objects.bulk_create(Item() for _ in range(100))
    run = Runner.create(APP + "IncrementItemsInBatches")
    engine = Engine(run)
    # claim (savepoint, update, refresh, event, release), count, tick_total; then per batch of 10:
    # savepoint, key page, update, checkpoint, release; then last empty page;
    # finish: read, then savepoint, write, event, release
    with django_assert_num_queries(5 + 2 + 10 * 5 + 1 + 5 + count_overhead()):
        engine.perform()


def test_list_collection_and_resume():
    run = perform("RecordList", {"words": ["a", "b", "c", "d", "e"]}, should_stop=StopAfter(1))
    assert (run.status, run.cursor, run.tick_total) == (RunStatus.INTERRUPTED, "3", 5)
    Runner.resume(run, execute=False)
    run = Engine(run).perform()
    assert run.status == RunStatus.SUCCEEDED
    assert list(Seen.objects.values_list("value", flat=True)) == ["a", "b", "c", "d", "e"]


def test_generator_collection_and_resume():
    run = perform("RecordGenerator", {"stop": 10}, should_stop=StopAfter(2))
    assert (run.cursor, run.tick_total) == ("8", None)
    Runner.resume(run, execute=False)
    run = Engine(run).perform()
    assert run.status == RunStatus.SUCCEEDED and run.tick_count == 10
    assert list(Seen.objects.values_list("value", flat=True)) == [f"g{i}" for i in range(10)]


def test_custom_enumerate_and_resume():
    run = perform("RecordPages", {"pages": 5}, should_stop=StopAfter(1))
    assert run.cursor == "2"
    Runner.resume(run, execute=False)
    run = Engine(run).perform()
    assert run.status == RunStatus.SUCCEEDED and run.tick_count == 5
    assert list(Seen.objects.values_list("value", flat=True)) == [f"page{i}" for i in range(5)]


def test_no_collection_calls_process_once():
    run = perform("RecordOnce")
    assert (run.status, run.tick_count, run.tick_total) == (RunStatus.SUCCEEDED, 1, 1)
    assert Seen.objects.get().value == "once"


def test_typed_parameters_reach_the_processor():
    run = perform("EveryType", {"name": "x", "limit": "7", "color": "green", "mode": "fast"})
    assert run.status == RunStatus.SUCCEEDED
    assert Seen.objects.get().value == "x:7:green:fast"


def test_a_run_that_is_not_enqueued_is_not_claimed(items):
    run = Runner.create(APP + "IncrementItems")
    run.cancel()
    from maintenance_tasks.exceptions import InvalidTransition

    with pytest.raises(InvalidTransition):
        Engine(run).perform()
    assert times() == [0] * 25


# -- retries -----------------------------------------------------------------------------------

FLAKY = "testproject.testapp.maintenance.FlakyBatches"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("failures", "status", "retries"), [(2, RunStatus.SUCCEEDED, 2), (3, RunStatus.ERRORED, 2)])
def test_errors_in_retry_on_are_retried_from_the_cursor_then_the_run_errors(failures, status, retries, request):
    items = Item.objects.bulk_create(Item() for _ in range(30))
    marker = request.node.name
    run = Runner.run(FLAKY, {"marker": marker, "fail_at": items[15].pk, "failures": failures})
    assert (run.status, run.retries) == (status, retries)
    events = list(run.events.filter(action__in=["retry", "errored", "succeeded"]).values_list("action", "detail"))
    assert [action for action, _ in events] == ["retry", "retry", status]
    assert [detail["retry"] for _, detail in events[:2]] == [1, 2]
    assert all(detail["error_class"] == "testproject.testapp.maintenance.Transient" for _, detail in events[:2])
    assert all(detail["delay"] == 0 for _, detail in events[:2])  # ImmediateBackend: at once
    # Atomic batches: the failed batch was rolled back each time, the others never redone.
    expected = [1] * 30 if status == RunStatus.SUCCEEDED else [0] * 20 + [1] * 10
    assert sorted(Item.objects.values_list("times_processed", flat=True)) == expected
    if status == RunStatus.ERRORED:
        assert run.error_class == "testproject.testapp.maintenance.Transient"
        assert (run.tick_count, json.loads(run.cursor)) == (10, [items[9].pk])


@pytest.mark.django_db(transaction=True)
def test_the_foreground_command_waits_out_the_delay_and_goes_on(request):
    items = Item.objects.bulk_create(Item() for _ in range(30))
    config = {"marker": request.node.name, "fail_at": items[25].pk, "failures": 2}
    call_command("run_maintenance_task", FLAKY, "--config", json.dumps(config), verbosity=0)
    run = Run.objects.get()
    assert (run.status, run.retries, run.attempt) == (RunStatus.SUCCEEDED, 2, 1)  # one attempt throughout
    retries = run.events.filter(action="retry")
    assert [(event.from_status, event.to_status) for event in retries] == [(RunStatus.RUNNING, RunStatus.RUNNING)] * 2
    assert all(0 < event.detail["delay"] <= 0.002 for event in retries)
    assert sorted(Item.objects.values_list("times_processed", flat=True)) == [1] * 30


def test_retry_delay_grows_exponentially_with_jitter_up_to_the_cap():
    class Backoff(Processor):
        retry_backoff = 2.0
        retry_backoff_max = 50.0

    for retries, ceiling in [(0, 2), (1, 4), (2, 8), (4, 32), (5, 50), (30, 50)]:
        delays = {Backoff.retry_delay(retries) for _ in range(20)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), (retries, delays)
        assert len(delays) > 1  # jitter


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"retry_on": ValueError}, "retry_on must be a tuple of exception classes"),
        ({"retry_on": (ValueError, "OSError")}, "retry_on must be a tuple of exception classes"),
        ({"max_retries": -1}, "max_retries must be a whole number"),
        ({"max_retries": 2.5}, "max_retries must be a whole number"),
        ({"retry_backoff": "1"}, "retry_backoff must be a number of seconds"),
        ({"retry_backoff_max": -5}, "retry_backoff_max must be a number of seconds"),
    ],
)
def test_bad_retry_settings_are_a_system_check_error(attributes, message):
    (error,) = type("Bad", (Processor,), attributes).check()
    assert error.id == "maintenance_tasks.E007" and message in error.msg
    assert type("Good", (Processor,), {"retry_on": (OSError,), "max_retries": 0}).check() == []
