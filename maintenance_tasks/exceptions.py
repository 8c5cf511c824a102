"""Errors raised by maintenance_tasks: one base class, one subclass per kind of refusal."""

from django.core.exceptions import ValidationError


def validation_error_text(error: ValidationError) -> str:
    """Return a ValidationError as one line: ``field: message; other: message`` (or its messages)."""
    if hasattr(error, "error_dict"):
        return "; ".join(f"{name}: {' '.join(messages)}" for name, messages in error.message_dict.items())
    return " ".join(error.messages)


class MaintenanceTaskError(Exception):
    """Base class of every error this app raises on purpose."""


class UnknownProcessor(MaintenanceTaskError):
    """The name does not resolve to a discovered processor."""


class InvalidTransition(MaintenanceTaskError):
    """The state machine does not allow this change of status."""

    def __init__(self, run_id: object, old: str, new: str, action: str | None = None) -> None:
        self.run_id, self.old, self.new = run_id, old, new
        what = action or f"move to {new}"
        super().__init__(f"Run {run_id} is {old}: cannot {what}.")


class ConcurrentChange(MaintenanceTaskError):
    """Another process changed the run between reading and writing it."""


class RunAlreadyActive(MaintenanceTaskError):
    """The task already has an active run."""

    def __init__(self, task: object, run_id: object = None) -> None:
        self.run_id = run_id
        which = f" (run {run_id})" if run_id is not None else ""
        super().__init__(f"{task} already has an active run{which}.")


class RunNotResumable(MaintenanceTaskError):
    """The run cannot be resumed in its current state."""


class StaleAttempt(MaintenanceTaskError):
    """This executor's attempt token is no longer current: it must stop without committing."""


class RunNotStuck(MaintenanceTaskError):
    """The run has not waited long enough in pausing/cancelling to be forced."""


class InvalidRouting(MaintenanceTaskError):
    """The tasks backend refuses the processor's ``queue_name`` or ``priority``."""


class DeployError(MaintenanceTaskError):
    """The deploy hook cannot do what was asked for this processor."""
