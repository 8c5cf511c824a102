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


TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.ENQUEUED: frozenset(
        {
            RunStatus.RUNNING,  # an executor claims it
            RunStatus.PAUSED,  # paused before any executor picked it up
            RunStatus.CANCELLED,  # cancelled before any executor picked it up
            RunStatus.INTERRUPTED,  # its in-process executor (ImmediateBackend) was told to stop before this slice
            RunStatus.ERRORED,  # its job could not be put on the queue (EnqueueFailed)
        }
    ),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.SUCCEEDED,  # the collection is exhausted
            RunStatus.ERRORED,  # process() raised, or it was recovered MAX_RECOVERIES times without progress
            RunStatus.PAUSING,  # pause requested; the executor stops after its batch
            RunStatus.CANCELLING,  # cancel requested; the executor stops after its batch
            RunStatus.INTERRUPTED,  # the executor was told to stop (SIGINT/SIGTERM)
            RunStatus.ENQUEUED,  # its slice ended, its executor died (stale heartbeat), or an error in retry_on: a new slice
        }
    ),
    RunStatus.PAUSING: frozenset(
        {
            RunStatus.PAUSED,  # the executor stopped after its batch (or died: nothing to wait for)
            RunStatus.SUCCEEDED,  # it finished before it saw the request
            RunStatus.ERRORED,
            RunStatus.CANCELLING,  # cancel overrides a pending pause
        }
    ),
    RunStatus.PAUSED: frozenset(
        {
            RunStatus.ENQUEUED,  # resumed
            RunStatus.CANCELLED,  # cancelled while nothing runs it
        }
    ),
    RunStatus.INTERRUPTED: frozenset(
        {
            RunStatus.ENQUEUED,  # resumed
            RunStatus.PAUSED,  # paused while nothing runs it
            RunStatus.CANCELLED,  # cancelled while nothing runs it
        }
    ),
    RunStatus.CANCELLING: frozenset(
        {
            RunStatus.CANCELLED,  # the executor stopped after its batch (or died: nothing to wait for)
            RunStatus.SUCCEEDED,  # it finished before it saw the request
            RunStatus.ERRORED,
        }
    ),
    RunStatus.CANCELLED: frozenset(),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.ERRORED: frozenset(
        {
            RunStatus.ENQUEUED,  # resumed from its cursor once its cause is fixed (its error goes to the audit trail)
        }
    ),
}

#: A task has at most one run in these statuses (enforced by the database).
ACTIVE_STATUSES = frozenset(
    {
        RunStatus.ENQUEUED,
        RunStatus.RUNNING,
        RunStatus.PAUSING,
        RunStatus.PAUSED,
        RunStatus.INTERRUPTED,
        RunStatus.CANCELLING,
    }
)
#: An executor is (or should be) working on a run in these statuses.
EXECUTING_STATUSES = frozenset({RunStatus.RUNNING, RunStatus.PAUSING, RunStatus.CANCELLING})
#: A run can be resumed from these statuses.
RESUMABLE_STATUSES = frozenset({RunStatus.PAUSED, RunStatus.INTERRUPTED, RunStatus.ERRORED})
#: Ended runs: nothing more will happen to them, unless an operator resumes an errored one.
COMPLETED_STATUSES = frozenset({RunStatus.CANCELLED, RunStatus.SUCCEEDED, RunStatus.ERRORED})


def can_transition(old: str, new: str) -> bool:
    """Return whether the state machine allows going from ``old`` to ``new``."""
    return RunStatus(new) in TRANSITIONS[RunStatus(old)]


# -- requests: what each one does, by the run's current status (current -> new) -----------------

PAUSE_TARGETS = {
    RunStatus.RUNNING: RunStatus.PAUSING,
    RunStatus.ENQUEUED: RunStatus.PAUSED,
    RunStatus.INTERRUPTED: RunStatus.PAUSED,
}
CANCEL_TARGETS = {
    RunStatus.RUNNING: RunStatus.CANCELLING,
    RunStatus.PAUSING: RunStatus.CANCELLING,
    RunStatus.ENQUEUED: RunStatus.CANCELLED,
    RunStatus.PAUSED: RunStatus.CANCELLED,
    RunStatus.INTERRUPTED: RunStatus.CANCELLED,
}
RESUME_TARGETS = dict.fromkeys(RESUMABLE_STATUSES, RunStatus.ENQUEUED)
#: A run stuck in a request (its executor gone or hung) is forced to where the request leads.
FORCE_TARGETS = {RunStatus.PAUSING: RunStatus.PAUSED, RunStatus.CANCELLING: RunStatus.CANCELLED}
#: Where recovery takes a run whose executor went silent for STALE_AFTER.
RECOVER_TARGETS = {
    RunStatus.RUNNING: RunStatus.ENQUEUED,
    RunStatus.PAUSING: RunStatus.PAUSED,
    RunStatus.CANCELLING: RunStatus.CANCELLED,
}
