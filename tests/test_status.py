import itertools

import pytest
from django.utils import timezone

from maintenance_tasks.exceptions import ConcurrentChange, InvalidTransition
from maintenance_tasks.models import Run
from maintenance_tasks.status import ACTIVE_STATUSES, COMPLETED_STATUSES, TRANSITIONS, RunStatus
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db

PAIRS = list(itertools.product(RunStatus, RunStatus))


def test_every_status_has_its_rules_and_a_group():
    assert set(TRANSITIONS) == set(RunStatus)
    assert set(RunStatus) == ACTIVE_STATUSES | COMPLETED_STATUSES
    assert not ACTIVE_STATUSES & COMPLETED_STATUSES
    for status in COMPLETED_STATUSES - {RunStatus.ERRORED}:
        assert TRANSITIONS[status] == frozenset(), f"{status} has ended: nothing may follow it"
    assert TRANSITIONS[RunStatus.ERRORED] == {RunStatus.ENQUEUED}, "errored: only resumed"


@pytest.mark.parametrize(("old", "new"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_transition(old, new):
    run = RunFactory(status=old)
    before = Run.objects.filter(pk=run.pk).values().get()
    if new in TRANSITIONS[old]:
        run.transition_to(new)
        assert run.status == new
        assert Run.objects.get(pk=run.pk).status == new
    else:
        with pytest.raises(InvalidTransition, match=f"Run {run.pk} is {old}"):
            run.transition_to(new)
        assert Run.objects.filter(pk=run.pk).values().get() == before


def test_a_status_changed_by_another_process_is_not_overwritten():
    run = RunFactory(running=True)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.PAUSING)  # another process asks to pause
    with pytest.raises(ConcurrentChange):
        run.transition_to(RunStatus.SUCCEEDED)  # read as running, but it is pausing now
    assert Run.objects.get(pk=run.pk).status == RunStatus.PAUSING


def test_a_stale_token_cannot_move_the_run():
    run = RunFactory(running=True, attempt=3)
    with pytest.raises(ConcurrentChange):
        run.transition_to(RunStatus.SUCCEEDED, token=2)
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


def test_ending_sets_ended_at():
    run = RunFactory(running=True)
    run.transition_to(RunStatus.SUCCEEDED)
    assert Run.objects.get(pk=run.pk).ended_at is not None


def test_resuming_an_ended_run_clears_ended_at():
    run = RunFactory(errored=True, ended_at=timezone.now())
    run.transition_to(RunStatus.ENQUEUED)
    assert (run.ended_at, Run.objects.get(pk=run.pk).ended_at) == (None, None)


def test_the_database_refuses_a_second_active_run_of_a_task():
    from django.db import IntegrityError, transaction

    first = RunFactory(paused=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        RunFactory(task=first.task)
    first.transition_to(RunStatus.CANCELLED)
    RunFactory(task=first.task)  # an ended run does not block a new one
    assert first.task.runs.active().count() == 1


def test_the_database_refuses_an_unknown_status():
    from django.db import IntegrityError, transaction

    run = RunFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.filter(pk=run.pk).update(status="exploded")
