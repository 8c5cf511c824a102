"""Retries performed by real ``db_worker`` processes.

A processor's batch fails with an error in its ``retry_on`` the first N times it reaches one row.
The run is handed back after each failure and goes on from its cursor in a slice deferred by the
backoff, until it succeeds, or errors once ``max_retries`` retries are spent. The failures are
counted in a file (outside the batch's transaction, and seen by every process).
"""

import itertools
import json

import pytest
from django.db import connection
from django.db.models import Count
from django.test import override_settings
from django_tasks_db.models import DBTaskResult, get_date_max

from maintenance_tasks import Runner
from maintenance_tasks.jobs import perform_run
from maintenance_tasks.models import Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.maintenance import FlakyAcrossProcesses
from testproject.testapp.models import Item

from .conftest import wait_for
from .test_background import SETTINGS, Pool, describe_active

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

S = RunStatus
FLAKY = "testproject.testapp.maintenance.FlakyAcrossProcesses"
ITEMS, FAIL_AT = 40, 25  # the row at index 25 is in the third batch of ten
MAX_RETRIES = FlakyAcrossProcesses.max_retries
BACKOFF = FlakyAcrossProcesses.retry_backoff
# Workers per database: SQLite has one writer at a time.
WORKERS = {"sqlite": 1}


@pytest.mark.parametrize(
    ("failures", "status"), [(MAX_RETRIES, S.SUCCEEDED), (MAX_RETRIES + 1, S.ERRORED)], ids=["succeeds", "errors"]
)
def test_a_db_worker_retries_from_the_cursor_after_the_backoff(manage, tmp_path, failures, status):
    if connection.vendor == "mysql" and not connection.features.has_select_for_update_skip_locked:
        pytest.skip("db_worker needs SELECT ... SKIP LOCKED")
    items = Item.objects.bulk_create(Item() for _ in range(ITEMS))
    tally = tmp_path / "tally"
    config = {"fail_at": items[FAIL_AT].pk, "failures": failures, "tally": str(tally)}
    pool = Pool(manage)
    with override_settings(TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}):
        with override_settings(MAINTENANCE_TASKS=SETTINGS):
            run = Runner.run(FLAKY, config)
        assert run.status == S.ENQUEUED
        for _ in range(WORKERS.get(connection.vendor, 2)):
            pool.start()
        try:
            wait_for(lambda: not Run.objects.active().exists(), timeout=90, interval=0.1)
        except AssertionError:
            pytest.fail(describe_active(pool))
        errors = pool.stop_all()
    run.refresh_from_db()
    retries = MAX_RETRIES if status == S.ERRORED else failures
    assert (run.status, run.retries, run.retry_at) == (status, retries, None), errors

    # The row was reached once per failure, and once more if the run succeeded, by the workers.
    reached = [int(pid) for pid in tally.read_text().split()]
    assert len(reached) == retries + 1
    assert set(reached) <= {command.process.pid for command in pool.workers.values()}

    # Atomic batches: each failed batch was rolled back, no batch was done twice, none skipped.
    times = dict(Item.objects.values_list("times_processed").annotate(n=Count("id")))
    if status == S.SUCCEEDED:
        assert times == {1: ITEMS}
        assert run.tick_count == ITEMS
    else:
        assert times == {1: 20, 0: ITEMS - 20}  # the batches before the failing one
        assert (run.tick_count, json.loads(run.cursor)) == (20, [items[19].pk])
        assert run.error_class == "testproject.testapp.maintenance.Transient"
        assert run.error_message == f"item {items[FAIL_AT].pk} failed, time {failures}"

    # The audit trail: one retry per failure, each handing the run back (the next slice deferred),
    # with the error and a delay that grows with the retries (jitter in the upper half of each step).
    events = list(run.events.filter(action__in=["retry", S.ERRORED, S.SUCCEEDED]))
    assert [event.action for event in events] == ["retry"] * retries + [status]
    retry_events = events[:-1]
    for number, event in enumerate(retry_events, start=1):
        assert (event.from_status, event.to_status) == (S.RUNNING, S.ENQUEUED)
        assert event.detail["retry"] == number and event.detail["max_retries"] == MAX_RETRIES
        assert event.detail["error_class"] == "testproject.testapp.maintenance.Transient"
        assert event.detail["error_message"] == f"item {items[FAIL_AT].pk} failed, time {number}"
        ceiling = BACKOFF * 2 ** (number - 1)
        assert ceiling / 2 - 0.001 <= event.detail["delay"] <= ceiling + 0.001, event.detail
    delays = [event.detail["delay"] for event in retry_events]
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays)), delays

    # Each retry's slice was deferred (run_after) and began no earlier than the delay after the
    # failed slice began: the order of events, not how long anything took.
    started = {event.detail["attempt"]: event.created_at for event in run.events.filter(action="started")}
    for event in retry_events:
        attempt = event.detail["attempt"]
        jobs = DBTaskResult.objects.filter(task_path=perform_run.module_path, args_kwargs__args=[run.pk, attempt])
        assert any(job.run_after != get_date_max() for job in jobs), f"the slice after retry {event.detail['retry']}"
        waited = (started[attempt + 1] - started[attempt]).total_seconds()
        assert waited >= event.detail["delay"] - 0.001, (event.detail, waited)
