"""Throttling between batches: conditions, the wait and its backoff, critical pauses, the checks.

The processes tests run ``run_maintenance_task`` in a child process whose condition reads a flag
file the test writes and removes (``flag_file_reason``): the child sees it as a real condition.
"""

import signal
import threading
import time

import pytest
from django.db import connection, connections
from django.db.models import Count
from django.test import override_settings

from maintenance_tasks import Runner
from maintenance_tasks.engine import DEFER, Engine
from maintenance_tasks.models import Run
from maintenance_tasks.progress import describe
from maintenance_tasks.status import RunStatus
from maintenance_tasks.throttles import Critical, DatabaseLoad, ReplicationLag, condition_checks
from testproject.demo.maintenance import RecountTitleWords, import_running
from testproject.demo.models import Article
from testproject.testapp.models import Item

from .conftest import on_sqlite, wait_for
from .factories import RunFactory

THROTTLED = "IncrementItemsThrottled"
INTERVAL = "0.2"


def check_ids(messages):
    return [message.id for message in messages]


def throttled_run(command):
    """Wait until the child's run is throttled; return it."""

    def check():
        if command.process.poll() is not None:
            raise AssertionError(f"the command ended early: {command.wait()}")
        return Run.objects.filter(status=RunStatus.RUNNING).exclude(throttled_reason="").first()

    return wait_for(check)


@pytest.fixture
def flag(tmp_path):
    return tmp_path / "throttle"


@pytest.fixture
def start(manage, flag):
    """Start a foreground run of IncrementItemsThrottled over 60 items, its condition reading ``flag``."""
    Item.objects.bulk_create(Item() for _ in range(60))

    def start_run(*args):
        return manage(
            "run_maintenance_task",
            THROTTLED,
            "--arg",
            "delay=0.01",
            *args,
            THROTTLE_FLAG=str(flag),
            MAINTENANCE_THROTTLE_CHECK_INTERVAL=INTERVAL,
            MAINTENANCE_CHECKPOINT_INTERVAL="0.2",
        )

    return start_run


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
class TestWaiting:
    def test_a_held_condition_stops_the_run_after_its_batch_until_it_clears(self, start, flag):
        flag.write_text("the nightly export runs")
        command = start()
        run = throttled_run(command)
        # The first look follows the first batch: one batch committed, no more while it waits.
        assert (run.tick_count, run.throttled_reason) == (10, "the nightly export runs")
        assert describe(run).endswith(", throttled: the nightly export runs")
        throttled = run.events.get(action="throttled")
        assert throttled.detail == {"source": "engine", "reason": "the nightly export runs"}
        wait_for(lambda: Run.objects.get(pk=run.pk).heartbeat_at > run.heartbeat_at)  # it waits, alive
        assert Run.objects.get(pk=run.pk).tick_count == 10
        flag.unlink()
        code, out, err = command.wait()
        assert code == 0, err
        run.refresh_from_db()
        assert (run.status, run.tick_count, run.throttled_reason, run.throttled_since) == (
            RunStatus.SUCCEEDED,
            60,
            "",
            None,
        )
        # One throttled period: one entry when it began, one when it ended, with the seconds it lasted.
        assert [event.action for event in run.events.filter(action__startswith="throttle")] == [
            "throttled",
            "throttle_ended",
        ]
        ended = run.events.get(action="throttle_ended")
        assert ended.detail["seconds"] == pytest.approx(run.throttled_seconds, abs=0.01)
        assert run.throttled_seconds >= (ended.created_at - throttled.created_at).total_seconds() - 0.01
        assert dict(Item.objects.values_list("times_processed").annotate(n=Count("id"))) == {1: 60}

    def test_a_new_reason_in_the_same_period_updates_the_run_without_a_new_entry(self, start, flag):
        flag.write_text("first reason")
        command = start()
        run = throttled_run(command)
        flag.write_text("second reason")
        wait_for(lambda: Run.objects.get(pk=run.pk).throttled_reason == "second reason")
        flag.unlink()
        assert command.wait()[0] == 0
        assert run.events.filter(action="throttled").count() == 1

    @pytest.mark.parametrize(("request_name", "ended"), [("pause", RunStatus.PAUSED), ("cancel", RunStatus.CANCELLED)])
    def test_pause_and_cancel_are_answered_while_it_waits(self, start, flag, request_name, ended):
        flag.write_text("busy")
        command = start()
        run = throttled_run(command)
        getattr(Runner, request_name)(run)
        command.wait()
        run.refresh_from_db()
        assert (run.status, run.tick_count, run.throttled_reason) == (ended, 10, "")
        assert run.events.filter(action="throttle_ended").count() == 1
        assert run.throttled_seconds > 0

    def test_sigterm_is_answered_while_it_waits(self, start, flag):
        flag.write_text("busy")
        command = start()
        run = throttled_run(command)
        command.signal(signal.SIGTERM)
        command.wait()
        run.refresh_from_db()
        assert (run.status, run.tick_count, run.throttled_reason) == (RunStatus.INTERRUPTED, 10, "")

    def test_a_critical_reason_pauses_the_run_with_the_reason(self, start, flag):
        flag.write_text("critical:the primary is on fire")
        code, out, err = start().wait()
        run = Run.objects.get()
        assert (run.status, run.tick_count, run.throttled_seconds) == (RunStatus.PAUSED, 10, 0.0), err
        pause = run.events.get(action="pause")
        assert (pause.source, pause.detail["reason"]) == ("engine", "the primary is on fire")
        assert not run.events.filter(action="throttled").exists()
        # An operator resumes it once the database is fine again.
        flag.unlink()
        Runner.resume(run, execute=False)
        Engine(Run.objects.get(pk=run.pk)).perform()
        assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_a_background_slice_hands_a_throttled_run_back_deferred(flag, monkeypatch):
    if on_sqlite() and connection.settings_dict["NAME"] == ":memory:":
        pytest.skip("needs a database the heartbeat thread shares")
    Item.objects.bulk_create(Item() for _ in range(30))
    monkeypatch.setenv("THROTTLE_FLAG", str(flag))
    flag.write_text("busy")
    settings = {"THROTTLE_CHECK_INTERVAL": 0.05, "CHECKPOINT_INTERVAL": 0.05, "BATCH_TIME": None}  # a commit per batch
    with override_settings(MAINTENANCE_TASKS=settings):
        run = Runner.create(f"testproject.testapp.maintenance.{THROTTLED}", {})
        started = time.monotonic()
        Engine(run, slice_seconds=2.0, retry=DEFER).perform()  # ample for the first batch, under load too
        assert time.monotonic() - started < 30
        run.refresh_from_db()
        # Handed back as enqueued, still throttled, its next slice deferred by the backoff.
        assert (run.status, run.tick_count, run.throttled_reason) == (RunStatus.ENQUEUED, 10, "busy")
        assert run.retry_at is not None and run.throttled_since is not None
        # The next slice looks first: the condition cleared, the period ends and the run goes on.
        flag.unlink()
        Engine(run).perform(claim=run.attempt)
    run.refresh_from_db()
    assert (run.status, run.tick_count, run.throttled_since) == (RunStatus.SUCCEEDED, 30, None)
    assert [event.action for event in run.events.filter(action__startswith="throttle")] == [
        "throttled",
        "throttle_ended",
    ]
    assert run.throttled_seconds > 0


@pytest.mark.django_db
def test_the_backoff_doubles_up_to_throttle_backoff_max(flag, monkeypatch):
    """Count the looks at a condition that holds for a while: fewer and fewer, at most throttle_backoff_max apart."""
    from testproject.testapp import maintenance

    looks = []

    def condition():
        looks.append(time.monotonic())
        return "busy" if len(looks) < 6 else None

    monkeypatch.setattr(maintenance.IncrementItemsThrottled, "throttle_on", [condition])
    Item.objects.bulk_create(Item() for _ in range(10))
    with override_settings(MAINTENANCE_TASKS={"THROTTLE_CHECK_INTERVAL": 0.05, "CHECKPOINT_INTERVAL": 0.05}):
        run = Runner.create(f"testproject.testapp.maintenance.{THROTTLED}", {})
        Engine(run).perform()
    gaps = [later - earlier for earlier, later in zip(looks, looks[1:], strict=False)]
    # 0.05, 0.1, 0.2, then capped at 0.4 (throttle_backoff_max): never sooner than the backoff asks.
    assert len(gaps) == 5
    for gap, backoff in zip(gaps, [0.05, 0.1, 0.2, 0.4, 0.4], strict=True):
        assert gap >= backoff - 0.01, gaps
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED


def test_conditions_that_are_not_callables_are_an_error():
    assert check_ids(condition_checks("nope", "throttle_on")) == ["maintenance_tasks.E039"]
    assert check_ids(condition_checks([lambda: None, 42], "throttle_on")) == ["maintenance_tasks.E039"]
    with override_settings(MAINTENANCE_TASKS={"THROTTLE_ON": [lambda: None, "module.condition"]}):
        from maintenance_tasks.checks import check_settings

        messages = check_settings()
    assert check_ids(messages) == ["maintenance_tasks.E039"]
    assert "MAINTENANCE_TASKS['THROTTLE_ON'] holds 'module.condition', which is not callable." in messages[0].msg


def test_a_condition_on_an_unknown_database_is_an_error_and_on_another_a_warning():
    assert check_ids(condition_checks([DatabaseLoad(5, using="nowhere")], "x")) == ["maintenance_tasks.E040"]
    expected = ["maintenance_tasks.W041"] if on_sqlite() else []
    assert check_ids(condition_checks([DatabaseLoad(5)], "x")) == expected
    connections.settings["other"] = connections.settings["default"]  # a second alias of the same server
    try:
        assert check_ids(condition_checks([DatabaseLoad(5, using="other")], "x")) == ["maintenance_tasks.W041"]
        # A replica alias is where ReplicationLag measures: not a warning (but on SQLite).
        assert check_ids(condition_checks([ReplicationLag(using="other")], "x")) == expected
    finally:
        del connections.settings["other"]


def test_processor_checks_report_bad_throttle_settings(monkeypatch):
    from testproject.testapp.maintenance import IncrementItemsThrottled

    monkeypatch.setattr(IncrementItemsThrottled, "throttle_on", [None])
    assert "maintenance_tasks.E039" in check_ids(IncrementItemsThrottled.check())
    monkeypatch.setattr(IncrementItemsThrottled, "throttle_on", [])
    monkeypatch.setattr(IncrementItemsThrottled, "throttle_backoff_max", -1)
    assert "maintenance_tasks.E007" in check_ids(IncrementItemsThrottled.check())


def busy_connection(seconds):
    """Run one long query on a connection of its own, in a thread; return the thread."""
    sql = "SELECT pg_sleep(%s)" if connection.vendor == "postgresql" else "SELECT SLEEP(%s)"

    def sleep():
        own = connections.create_connection("default")
        try:
            with own.cursor() as cursor:
                cursor.execute(sql, [seconds])
        finally:
            own.close()

    thread = threading.Thread(target=sleep)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_database_load_holds_while_other_queries_run():
    if on_sqlite():
        assert DatabaseLoad(0)() is None  # nothing to measure: never holds (and check W041)
        return
    thread = busy_connection(3)
    try:
        reason = wait_for(lambda: DatabaseLoad(0)())
        assert not isinstance(reason, Critical)
        assert " active queries on default (max 0)" in reason
        critical = wait_for(lambda: DatabaseLoad(0, critical=0)())
        assert isinstance(critical, Critical) and "(critical 0)" in critical
        assert DatabaseLoad(1000)() is None
    finally:
        thread.join()


@pytest.mark.django_db
def test_replication_lag_on_a_server_that_is_no_replica_is_none():
    # MariaDB here has no replica: SHOW REPLICA STATUS is empty on the default alias, so there is
    # no lag. The PostgreSQL primary's replicas (a streaming one with scripts/services) are caught up.
    if on_sqlite():
        assert ReplicationLag()() is None
    elif connection.vendor == "mysql":
        assert ReplicationLag(max_seconds=0)() is None
    else:
        assert ReplicationLag(max_seconds=3600)() is None


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_the_demo_recount_waits_while_an_import_of_articles_runs(manage):
    """RecountTitleWords (testproject/demo) waits on a condition of its own, which holds on every database."""
    assert RecountTitleWords.check() == []  # no W041: a custom condition measures nothing
    # More than a batch (2,000): the first look at the condition follows the first batch.
    Article.objects.bulk_create(Article(title=f"a title of {n} words", word_count=0) for n in range(2500))
    other = RunFactory(running=True, task__processor="testproject.demo.maintenance.BackfillSlugs")
    assert import_running() is None  # only an import of articles holds it
    importing = RunFactory(running=True, task__processor="testproject.demo.maintenance.ImportArticles")
    assert import_running() == "an import of articles is running"
    command = manage(
        "run_maintenance_task",
        "testproject.demo.maintenance.RecountTitleWords",
        "--batch-time",
        "0.001",  # a transaction per batch: the first look at the condition follows the first 2,000 rows
        MAINTENANCE_THROTTLE_CHECK_INTERVAL=INTERVAL,
    )
    run = throttled_run(command)
    assert (run.tick_count, run.throttled_reason) == (2000, "an import of articles is running")
    wait_for(lambda: Run.objects.get(pk=run.pk).heartbeat_at > run.heartbeat_at)  # it waits, alive
    counts = dict(Article.objects.values_list("word_count").annotate(n=Count("id")))
    assert counts == {5: 2000, 0: 500}
    importing.transition_to(RunStatus.SUCCEEDED)
    code, out, err = command.wait()
    assert code == 0, err
    run.refresh_from_db()
    assert (run.status, run.tick_count, run.throttled_reason) == (RunStatus.SUCCEEDED, 2500, "")
    assert dict(Article.objects.values_list("word_count").annotate(n=Count("id"))) == {5: 2500}
    other.refresh_from_db()
    assert other.status == RunStatus.RUNNING
