"""The run state machine: every status, and every allowed change between them."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class RunStatus(models.TextChoices):
    """Where a run is in its life. Statuses in progress end in -ing; ended ones are past tense."""

    ENQUEUED = "enqueued", _("Enqueued")
    RUNNING = "running", _("Running")
    PAUSING = "pausing", _("Pausing")
    PAUSED = "paused", _("Paused")
    INTERRUPTED = "interrupted", _("Interrupted")
    CANCELLING = "cancelling", _("Cancelling")
    CANCELLED = "cancelled", _("Cancelled")
    SUCCEEDED = "succeeded", _("Succeeded")
    ERRORED = "errored", _("Errored")


S = RunStatus

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    S.ENQUEUED: frozenset(
        {
            S.RUNNING,  # an executor claims it
            S.PAUSED,  # paused before any executor picked it up
            S.CANCELLED,  # cancelled before any executor picked it up
            S.INTERRUPTED,  # its in-process executor (ImmediateBackend) was told to stop before this slice
        }
    ),
    S.RUNNING: frozenset(
        {
            S.SUCCEEDED,  # the collection is exhausted
            S.ERRORED,  # process() raised
            S.PAUSING,  # pause requested; the executor stops after its batch
            S.CANCELLING,  # cancel requested; the executor stops after its batch
            S.INTERRUPTED,  # the executor was told to stop (SIGINT/SIGTERM)
            S.ENQUEUED,  # its slice ended, its executor died (stale heartbeat), or an error in retry_on: a new slice
        }
    ),
    S.PAUSING: frozenset(
        {
            S.PAUSED,  # the executor stopped after its batch (or died: nothing to wait for)
            S.SUCCEEDED,  # it finished before it saw the request
            S.ERRORED,
            S.CANCELLING,  # cancel overrides a pending pause
        }
    ),
    S.PAUSED: frozenset(
        {
            S.ENQUEUED,  # resumed
            S.CANCELLED,  # cancelled while nothing runs it
        }
    ),
    S.INTERRUPTED: frozenset(
        {
            S.ENQUEUED,  # resumed
            S.PAUSED,  # paused while nothing runs it
            S.CANCELLED,  # cancelled while nothing runs it
        }
    ),
    S.CANCELLING: frozenset(
        {
            S.CANCELLED,  # the executor stopped after its batch (or died: nothing to wait for)
            S.SUCCEEDED,  # it finished before it saw the request
            S.ERRORED,
        }
    ),
    S.CANCELLED: frozenset(),
    S.SUCCEEDED: frozenset(),
    S.ERRORED: frozenset(),
}

#: A task has at most one run in these statuses (enforced by the database).
ACTIVE_STATUSES = frozenset({S.ENQUEUED, S.RUNNING, S.PAUSING, S.PAUSED, S.INTERRUPTED, S.CANCELLING})
#: An executor is (or should be) working on a run in these statuses.
EXECUTING_STATUSES = frozenset({S.RUNNING, S.PAUSING, S.CANCELLING})
#: A run can be resumed from these statuses.
RESUMABLE_STATUSES = frozenset({S.PAUSED, S.INTERRUPTED})
#: Ended runs: nothing more will happen to them.
COMPLETED_STATUSES = frozenset({S.CANCELLED, S.SUCCEEDED, S.ERRORED})


def can_transition(old: str, new: str) -> bool:
    """Return whether the state machine allows going from ``old`` to ``new``."""
    return RunStatus(new) in TRANSITIONS[RunStatus(old)]
