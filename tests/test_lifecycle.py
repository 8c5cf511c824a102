"""Lifecycle signals and processor callbacks: each moment of a run announced once, after it commits.

Runs are performed for real: in this process through the in-process tasks backend (the
background path: ``perform_run`` and its slices), by ``run_maintenance_task`` and the engine (the
foreground path), and by a ``db_worker`` process. ``AnnouncedItems`` notes each of its callbacks
in ``Seen`` with the id of the process that called it. A receiver or callback that raises
changes nothing about the run.
"""

import logging
import os
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from maintenance_tasks import Runner, signals
from maintenance_tasks.engine import Engine
from maintenance_tasks.exceptions import EnqueueFailed, TooManyRecoveries
from maintenance_tasks.models import Run
from maintenance_tasks.models.lifecycle import RESULT_LIMIT
from maintenance_tasks.status import RunStatus
from testproject.testapp.maintenance import Boom
from testproject.testapp.models import Item, Seen

from .conftest import wait_for
from .factories import RunFactory
from .test_enqueue_failure import closed_port

pytestmark = pytest.mark.django_db(transaction=True)  # announcements wait for real commits

S = RunStatus
ANNOUNCED = "testproject.testapp.maintenance.AnnouncedItems"
LIFECYCLE = [
    "run_enqueued",
    "run_started",
    "run_paused",
    "run_resumed",
    "run_interrupted",
    "run_cancelled",
    "run_succeeded",
    "run_errored",
]
NAMES = {getattr(signals, name): name for name in LIFECYCLE}


class Ear:
    """A receiver of every lifecycle signal: what it heard, in order."""

    def __init__(self):
        self.calls = []

    def __call__(self, signal, sender, run, **kwargs):
        self.calls.append(SimpleNamespace(name=NAMES[signal], sender=sender, run=run, status=run.status,
                                          result=run.result, pid=os.getpid(), **kwargs))  # fmt: skip

    def moments(self):
        """Return (signal, run id, status when sent) for each signal heard."""
        return [(call.name, call.run.pk, call.status) for call in self.calls]


@pytest.fixture
def heard():
    ear = Ear()
    for signal in NAMES:
        signal.connect(ear, dispatch_uid="test_lifecycle")
    yield ear
    for signal in NAMES:
        signal.disconnect(dispatch_uid="test_lifecycle")


@pytest.fixture
def items():
    return Item.objects.bulk_create(Item() for _ in range(25))


def noted(run):
    """Return the callbacks AnnouncedItems noted for the run, in order: (name, pid, *extra)."""
    lines = (value.split() for value in Seen.objects.order_by("pk").values_list("value", flat=True))
    return [(name, int(pid), *extra) for name, run_id, pid, *extra in lines if run_id == str(run.pk)]


def callbacks(run):
    return [name for name, *_ in noted(run)]


def failed_callbacks(run):
    return list(run.events.filter(action="callback_failed").values_list("detail__callback", "detail__error_class"))


def test_a_background_run_in_many_slices_is_announced_once_per_moment(heard, items):
    with override_settings(MAINTENANCE_TASKS={"SLICE_SECONDS": 1e-6}):  # a slice per batch: a claim each
        run = Runner.run(ANNOUNCED)
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED
    assert run.events.filter(action="slice_ended").count() >= 2
    pk = run.pk
    assert heard.moments() == [("run_enqueued", pk, S.ENQUEUED), ("run_started", pk, S.RUNNING),
                               ("run_succeeded", pk, S.SUCCEEDED)]  # fmt: skip
    assert {call.sender for call in heard.calls} == {Run}
    assert callbacks(run) == ["on_start", "on_complete"]
    assert run.result == {"processed": 25, "status": "succeeded"}
    assert heard.calls[-1].result == run.result  # receivers of run_succeeded see the result


def test_the_command_announces_a_run_that_errors_with_its_error(heard, items):
    with pytest.raises(CommandError, match="errored"):
        call_command("run_maintenance_task", ANNOUNCED, "--arg", f"fail_at={items[12].pk}", verbosity=0)
    run = Run.objects.get()
    assert (run.status, run.error_class) == (S.ERRORED, "testproject.testapp.maintenance.Boom")
    assert heard.moments() == [("run_enqueued", run.pk, S.ENQUEUED), ("run_started", run.pk, S.RUNNING),
                               ("run_errored", run.pk, S.ERRORED)]  # fmt: skip
    error = heard.calls[-1].error
    assert isinstance(error, Boom) and str(error) == f"item {items[12].pk} failed"
    assert noted(run) == [("on_start", os.getpid()), ("on_error", os.getpid(), "Boom")]
    assert run.result is None


def test_requests_on_a_run_nothing_performs_are_announced_in_this_process(heard):
    run = Runner.create(ANNOUNCED)
    run.pause()
    Runner.resume(run, execute=False)
    run.pause()
    run.cancel()
    assert heard.moments() == [("run_enqueued", run.pk, S.ENQUEUED), ("run_paused", run.pk, S.PAUSED),
                               ("run_resumed", run.pk, S.ENQUEUED), ("run_paused", run.pk, S.PAUSED),
                               ("run_cancelled", run.pk, S.CANCELLED)]  # fmt: skip
    assert noted(run) == [(name, os.getpid()) for name in ("on_pause", "on_resume", "on_pause", "on_cancel")]


def test_a_pause_is_announced_when_the_run_has_paused_and_resuming_is_no_new_start(heard, items):
    run = Runner.create(ANNOUNCED)

    def pause_it(sender, run, **kwargs):
        Run.objects.get(pk=run.pk).pause()  # from another object, as the admin would: running -> pausing

    signals.run_started.connect(pause_it, dispatch_uid="pause_it")
    try:
        Engine(run).perform()
    finally:
        signals.run_started.disconnect(dispatch_uid="pause_it")
    assert run.status == S.PAUSED and 0 < run.tick_count < 25
    assert list(run.events.values_list("to_status", flat=True)).count(S.PAUSING) == 1  # a request: no news
    Runner.resume(run, execute=False)
    Engine(run).perform()
    assert (run.status, run.tick_count) == (S.SUCCEEDED, 25)
    assert [name for name, *_ in heard.moments()] == ["run_enqueued", "run_started", "run_paused", "run_resumed",
                                                       "run_succeeded"]  # fmt: skip
    assert callbacks(run) == ["on_start", "on_pause", "on_resume", "on_complete"]
    assert Run.objects.get(pk=run.pk).result == {"processed": 25, "status": "succeeded"}


def test_an_interrupted_run_is_announced(heard, items):
    run = Runner.create(ANNOUNCED)
    Engine(run, should_stop=lambda: True).perform()
    assert run.status == S.INTERRUPTED
    run.cancel()
    assert [name for name, *_ in heard.moments()] == ["run_enqueued", "run_started", "run_interrupted",
                                                       "run_cancelled"]  # fmt: skip
    assert callbacks(run) == ["on_start", "on_interrupt", "on_cancel"]


class Rollback(Exception):
    pass


def test_nothing_is_announced_before_the_commit_nor_after_a_rollback(heard):
    with pytest.raises(Rollback), transaction.atomic():
        run = Runner.create(ANNOUNCED)
        run.pause()
        raise Rollback
    assert heard.calls == [] and not Seen.objects.exists() and not Run.objects.exists()

    with transaction.atomic():
        run = Runner.create(ANNOUNCED)
        run.pause()
        assert heard.calls == [] and not Seen.objects.exists()
    assert heard.moments() == [("run_enqueued", run.pk, S.ENQUEUED), ("run_paused", run.pk, S.PAUSED)]
    assert callbacks(run) == ["on_pause"]


def test_a_receiver_that_raises_is_logged_and_changes_nothing(heard, items, caplog):
    def broken(sender, run, **kwargs):
        raise RuntimeError(f"receiver broke on {run.status}")

    for signal in (signals.run_started, signals.run_succeeded):
        signal.connect(broken, dispatch_uid="broken")
    try:
        with caplog.at_level(logging.ERROR, logger="maintenance_tasks"):
            run = Runner.run(ANNOUNCED)
    finally:
        for signal in (signals.run_started, signals.run_succeeded):
            signal.disconnect(dispatch_uid="broken")
    run.refresh_from_db()
    assert (run.status, run.tick_count, run.result) == (S.SUCCEEDED, 25, {"processed": 25, "status": "succeeded"})
    assert set(Item.objects.values_list("times_processed", flat=True)) == {1}
    assert [name for name, *_ in heard.moments()] == ["run_enqueued", "run_started", "run_succeeded"]
    failures = [record for record in caplog.records if record.name == "maintenance_tasks.models.lifecycle"]
    assert [str(record.exc_info[1]) for record in failures] == ["receiver broke on running",
                                                               "receiver broke on succeeded"]  # fmt: skip
    assert all(f"Run {run.pk}: a receiver" in record.getMessage() for record in failures)
    assert not run.events.filter(action="callback_failed").exists()


def drive_to_success(run):
    Engine(run).perform()


def drive_to_pause(run):
    run.pause()


def drive_to_resume(run):
    run.pause()
    Runner.resume(run, execute=False)


def drive_to_cancel(run):
    run.cancel()


def drive_to_interrupt(run):
    Engine(run, should_stop=lambda: True).perform()


#: The audit entry of the change each callback announces.
MOMENT_ENTRIES = {"on_start": "started", "on_complete": "succeeded", "on_error": "errored", "on_pause": "pause",
                  "on_resume": "resume", "on_cancel": "cancel", "on_interrupt": "interrupted"}  # fmt: skip


@pytest.mark.parametrize(
    ("raise_in", "drive", "status", "signal"),
    [
        ("on_start", drive_to_success, S.SUCCEEDED, "run_started"),
        ("on_complete", drive_to_success, S.SUCCEEDED, "run_succeeded"),
        ("on_error", drive_to_success, S.ERRORED, "run_errored"),  # it fails at an item
        ("on_pause", drive_to_pause, S.PAUSED, "run_paused"),
        ("on_resume", drive_to_resume, S.ENQUEUED, "run_resumed"),
        ("on_cancel", drive_to_cancel, S.CANCELLED, "run_cancelled"),
        ("on_interrupt", drive_to_interrupt, S.INTERRUPTED, "run_interrupted"),
    ],
)
def test_a_callback_that_raises_is_recorded_and_changes_nothing(heard, items, caplog, raise_in, drive, status, signal):
    failing = {"fail_at": items[5].pk} if status == S.ERRORED else {}
    run = Runner.create(ANNOUNCED, {"raise_in": raise_in, **failing})
    with caplog.at_level(logging.ERROR, logger="maintenance_tasks"):
        drive(run)
    stored = Run.objects.get(pk=run.pk)
    assert (stored.status, stored.cursor, stored.tick_count) == (status, run.cursor, run.tick_count)
    assert stored.result == ({"processed": 25, "status": "succeeded"} if raise_in == "on_start" else None)
    if status == S.ERRORED:  # the run's own error, not the callback's
        assert stored.error_message == f"item {items[5].pk} failed"
    assert failed_callbacks(run) == [(raise_in, "testproject.testapp.maintenance.Boom")]
    event = run.events.get(action="callback_failed")
    at = S.RUNNING if raise_in == "on_start" else status  # the status the callback's moment left
    assert (event.from_status, event.to_status, event.source) == (at, at, "callback")
    assert (event.detail["error_message"], event.detail["pid"]) == (f"{raise_in} failed", os.getpid())
    actions = list(run.events.values_list("action", flat=True))  # after the change's own entry: it committed first
    assert actions[actions.index("callback_failed") - 1] == MOMENT_ENTRIES[raise_in]
    assert signal in [name for name, *_ in heard.moments()]  # receivers still hear of it
    logged = [record for record in caplog.records if record.name == "maintenance_tasks.models.lifecycle"]
    assert [type(record.exc_info[1]) for record in logged] == [Boom]
    assert f"{ANNOUNCED}.{raise_in}() failed" in logged[0].getMessage()


def test_a_processor_gone_from_the_code_is_recorded_and_the_run_is_still_cancelled(heard):
    run = RunFactory(task__processor="testproject.testapp.maintenance.Gone", task__config={})
    run.cancel()
    assert Run.objects.get(pk=run.pk).status == S.CANCELLED
    assert failed_callbacks(run) == [("on_cancel", "maintenance_tasks.exceptions.UnknownProcessor")]
    assert heard.moments() == [("run_cancelled", run.pk, S.CANCELLED)]


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        ("not_json", "The result holds a datetime, which is not a JSON value."),
        ("too_big", f"The result is 20,800 characters of JSON, more than {RESULT_LIMIT:,}: return a summary."),
    ],
)
def test_a_result_that_cannot_be_kept_is_refused_on_the_audit_trail(heard, items, result, problem):
    run = Runner.run(ANNOUNCED, {"result": result})
    run.refresh_from_db()
    assert (run.status, run.result) == (S.SUCCEEDED, None)
    assert list(run.events.filter(action="result_refused").values_list("detail__problem", flat=True)) == [problem]
    assert heard.moments()[-1] == ("run_succeeded", run.pk, S.SUCCEEDED)


def test_on_complete_returning_none_keeps_no_result(heard, items):
    run = Runner.run(ANNOUNCED, {"result": "none"})
    run.refresh_from_db()
    assert (run.status, run.result) == (S.SUCCEEDED, None)
    assert callbacks(run) == ["on_start", "on_complete"]
    assert not run.events.exclude(action__in=["created", "started", "succeeded"]).exists()


def test_an_enqueue_failure_is_announced_with_enqueue_failed_and_its_cause(heard):
    url = f"redis://127.0.0.1:{closed_port()}/0"
    tasks = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default", "heavy"]}}
    queues = {name: {"URL": url} for name in ("default", "heavy")}
    with override_settings(TASKS=tasks, RQ_QUEUES=queues), pytest.raises(EnqueueFailed):
        Runner.run(ANNOUNCED)
    run = Run.objects.get()
    assert heard.moments() == [("run_enqueued", run.pk, S.ENQUEUED), ("run_errored", run.pk, S.ERRORED)]
    error = heard.calls[-1].error
    assert isinstance(error, EnqueueFailed) and str(error) == run.error_message
    assert isinstance(error.__cause__, RedisConnectionError)
    assert noted(run) == [("on_error", os.getpid(), "EnqueueFailed")]


def test_too_many_recoveries_is_announced_with_its_error(heard, settings):
    settings.MAINTENANCE_TASKS = {"MAX_RECOVERIES": 2}
    long_ago = timezone.now() - timedelta(hours=1)
    run = RunFactory(running=True, task__processor=ANNOUNCED, heartbeat_at=long_ago, cursor="[3]",
                     recovered_cursor="[3]", recoveries=2)  # fmt: skip
    Runner.recover()
    assert Run.objects.get(pk=run.pk).status == S.ERRORED
    assert heard.moments() == [("run_errored", run.pk, S.ERRORED)]
    error = heard.calls[-1].error
    assert isinstance(error, TooManyRecoveries) and str(error).startswith("Recovered 2 times in a row")
    assert callbacks(run) == ["on_error"]


def test_the_run_page_shows_the_result(admin_client, items):
    run = Runner.run(ANNOUNCED)
    page = admin_client.get(reverse("admin:maintenance_tasks_run_change", args=[run.pk])).content.decode()
    assert '<div class="module mt-result" id="result">' in page
    assert "&quot;processed&quot;: 25" in page and "&quot;status&quot;: &quot;succeeded&quot;" in page

    marked_up = RunFactory(succeeded=True, task__processor=ANNOUNCED, result={"note": "<b>bold</b>"})
    page = admin_client.get(reverse("admin:maintenance_tasks_run_change", args=[marked_up.pk])).content.decode()
    assert "&quot;note&quot;: &quot;&lt;b&gt;bold&lt;/b&gt;&quot;" in page and "<b>bold</b>" not in page

    no_result = RunFactory(succeeded=True)
    page = admin_client.get(reverse("admin:maintenance_tasks_run_change", args=[no_result.pk])).content.decode()
    assert 'id="result"' not in page


WORKER_ENV = {
    "TASKS_BACKEND": "database",
    "MAINTENANCE_CHECKPOINT_INTERVAL": "0.05",
    "MAINTENANCE_SLICE_SECONDS": "0.05",
    "DJANGO_DEBUG": "false",
}


@pytest.mark.processes
def test_callbacks_run_in_the_process_that_made_the_change(manage, items):
    if connection.vendor == "mysql" and not connection.features.has_select_for_update_skip_locked:
        pytest.skip("db_worker needs SELECT ... SKIP LOCKED")
    with override_settings(TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}):
        run = Runner.run(ANNOUNCED, {"delay": 0.02})
        run.pause()  # here, before any worker: paused at once, on_pause in this process
        Runner.resume(run)
    worker = manage("db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.05", "-v0", **WORKER_ENV)
    wait_for(lambda: Run.objects.filter(pk=run.pk, status=S.SUCCEEDED).exists(), timeout=120, interval=0.1)
    run.refresh_from_db()
    assert run.events.filter(action="slice_ended").count() >= 2  # several slices, one start
    here, there = os.getpid(), worker.process.pid
    assert noted(run) == [("on_pause", here), ("on_resume", here), ("on_start", there), ("on_complete", there)]
    assert run.result == {"processed": 25, "status": "succeeded"}
