"""Counting under COUNT_TIMEOUT: the admin's *Count items* and a run's total, for real on each database."""

import time

import pytest
from django.db import connection, transaction

from maintenance_tasks.counting import count_within
from maintenance_tasks.exceptions import CountTimedOut
from maintenance_tasks.models import Run
from maintenance_tasks.runner import Runner
from maintenance_tasks.status import RunStatus
from testproject.testapp.maintenance import SlowCount

from .factories import ItemFactory
from .test_admin import make_user, processor_url

pytestmark = pytest.mark.django_db
SLOW = "testproject.testapp.maintenance.SlowCount"


@pytest.fixture
def needs_timeout():
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no statement timeout: a count there runs as long as it takes")


def statement_timeout():
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW statement_timeout")
        elif connection.mysql_is_mariadb:
            cursor.execute("SELECT @@SESSION.max_statement_time")
        else:
            cursor.execute("SELECT @@SESSION.max_execution_time")
        return cursor.fetchone()[0]


def test_a_slow_count_is_stopped_at_count_timeout(needs_timeout, settings):
    settings.MAINTENANCE_TASKS = {"COUNT_TIMEOUT": 0.2}
    before = statement_timeout()
    started = time.monotonic()
    with pytest.raises(CountTimedOut):
        count_within(SlowCount.from_config({}).count)
    assert time.monotonic() - started < 1.5  # not the 2 s the query asks for
    assert statement_timeout() == before  # the limit does not outlive the count
    ItemFactory.create_batch(3)
    assert count_within(lambda: 3) == 3


def test_the_limit_does_not_outlive_a_count_inside_a_transaction(needs_timeout, settings):
    settings.MAINTENANCE_TASKS = {"COUNT_TIMEOUT": 0.2}
    before = statement_timeout()
    with transaction.atomic():
        assert count_within(lambda: 5) == 5
        assert statement_timeout() == before


def test_count_items_that_take_too_long_reads_too_many_to_count_quickly(needs_timeout, client, settings):
    settings.MAINTENANCE_TASKS = {"COUNT_TIMEOUT": 0.2}
    client.force_login(make_user("alice", "view_task", "start_run"))
    response = client.post(processor_url(SLOW), {"param-seconds": "2", "_count": "Count items"})
    assert response.status_code == 200
    assert "Too many to count quickly" in response.content.decode()
    assert not Run.objects.exists()


def test_a_run_whose_count_times_out_runs_without_a_total(needs_timeout, settings, django_capture_on_commit_callbacks):
    settings.MAINTENANCE_TASKS = {"COUNT_TIMEOUT": 0.2}
    ItemFactory.create_batch(5)
    with django_capture_on_commit_callbacks(execute=True):
        run = Runner.run(SLOW)
    run.refresh_from_db()
    assert (run.status, run.tick_total, run.tick_count) == (RunStatus.SUCCEEDED, None, 5)


def test_a_quick_count_gives_the_run_its_total(settings, django_capture_on_commit_callbacks):
    ItemFactory.create_batch(5)
    with django_capture_on_commit_callbacks(execute=True):
        run = Runner.run(SLOW, {"seconds": 0.0})
    run.refresh_from_db()
    assert (run.status, run.tick_total, run.tick_count) == (RunStatus.SUCCEEDED, 5, 5)
