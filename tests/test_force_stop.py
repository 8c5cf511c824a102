"""Forcing a run stuck in pausing/cancelling (Runner.force_stop)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from maintenance_tasks import Runner
from maintenance_tasks.engine import Engine
from maintenance_tasks.exceptions import InvalidTransition, RunNotStuck, StaleAttempt
from maintenance_tasks.status import RunStatus

from .factories import RunFactory

pytestmark = pytest.mark.django_db
S = RunStatus


def stuck(run, minutes=6):
    type(run).objects.filter(pk=run.pk).update(updated_at=timezone.now() - timedelta(minutes=minutes))
    run.refresh_from_db()
    return run


def test_forced_run_can_no_longer_be_written_by_its_executor():
    run = RunFactory(running=True)
    engine = Engine(run)
    engine.writer.token = run.attempt
    Runner.pause(run, actor={"source": "python", "user": "ops"})
    Runner.force_stop(stuck(run), actor={"source": "python", "user": "ops"})
    run.refresh_from_db()
    assert (run.status, run.attempt) == (S.PAUSED, 2)
    with pytest.raises(StaleAttempt):
        engine._write(cursor="[99]", tick_count=99)
    run.refresh_from_db()
    assert (run.cursor, run.tick_count) == (None, 0)
    assert [(e.action, e.from_status, e.to_status) for e in run.events.all()] == [
        ("pause", S.RUNNING, S.PAUSING),
        ("force", S.PAUSING, S.PAUSED),
    ]


def test_only_runs_waiting_long_enough_can_be_forced(settings):
    run = RunFactory(cancelling=True)
    with pytest.raises(RunNotStuck, match=r"cancelling for \d+s: it can be forced only after STUCK_AFTER \(300s\)"):
        Runner.force_stop(run)
    settings.MAINTENANCE_TASKS = {"STUCK_AFTER": 0}
    assert Runner.force_stop(run).status == S.CANCELLED
    with pytest.raises(InvalidTransition, match="is cancelled: cannot force it"):
        Runner.force_stop(run)


@pytest.mark.parametrize(
    ("status", "actions"),
    [
        (S.ENQUEUED, ["pause", "cancel"]),
        (S.RUNNING, ["pause", "cancel"]),
        (S.PAUSING, ["cancel"]),
        (S.PAUSED, ["resume", "cancel"]),
        (S.INTERRUPTED, ["pause", "resume", "cancel"]),
        (S.CANCELLING, []),
        (S.SUCCEEDED, []),
    ],
)
def test_available_actions(status, actions):
    run = RunFactory(status=status)
    assert run.available_actions() == actions
    if status in (S.PAUSING, S.CANCELLING):
        assert stuck(run).available_actions() == [*actions, "force"]
