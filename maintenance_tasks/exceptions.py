"""Errors raised by maintenance_tasks: one base class, one subclass per kind of refusal."""

from django.core.exceptions import ValidationError

#: The longest error message and backtrace a run keeps (characters); longer ones are cut, with a note.
MESSAGE_LIMIT = 10_000
BACKTRACE_LIMIT = 50_000


def validation_error_text(error: ValidationError) -> str:
    """Return a ValidationError as one line: ``field: message; other: message`` (or its messages)."""
    if hasattr(error, "error_dict"):
        return "; ".join(f"{name}: {' '.join(messages)}" for name, messages in error.message_dict.items())
    return " ".join(error.messages)


def escaped(text: str) -> str:
    """Return ``text`` with what a database refuses escaped: NUL (PostgreSQL), lone surrogates (UTF-8)."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def storable(text: str, limit: int) -> str:
    """Return ``text`` as every database stores it: no NUL, no lone surrogate, at most ``limit`` characters."""
    text = escaped(text)
    if len(text) > limit:
        keep = max(0, limit - 60)  # room for the note
        text = text[:keep] + f"\n[... {len(text) - keep:,} more characters cut]"
    return text


def error_class_name(error: BaseException) -> str:
    """Return the dotted name of the error's class (just the name for builtins)."""
    cls = type(error)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    return storable(name, 255)


def error_message(error: BaseException) -> str:
    """Return the error's message, storable, even when its ``__str__`` raises."""
    try:
        text = str(error)
    except Exception:
        try:
            text = repr(error)
        except Exception:
            text = f"<{type(error).__qualname__}: str() and repr() failed>"
    return storable(text, MESSAGE_LIMIT)


class MaintenanceTaskError(Exception):
    """Base class of every error this app raises on purpose."""


class UnknownProcessor(MaintenanceTaskError):
    """The name does not resolve to a discovered processor."""


class InvalidParameters(MaintenanceTaskError, TypeError):
    """A processor's parameters cannot be used: an annotation that does not resolve, or an unsupported type."""


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


class EnqueueFailed(MaintenanceTaskError):
    """The tasks backend refused the run's job (broker down, bad settings): the run is errored."""


class TooManyRecoveries(MaintenanceTaskError):
    """The run was recovered MAX_RECOVERIES times in a row at the same cursor: it is errored."""


class InvalidProcessor(MaintenanceTaskError):
    """The processor's definition cannot be run as it is (an async ``process()``, a bad ``batch_size``, ...)."""


class InvalidCSV(MaintenanceTaskError, ValueError):
    """A CSV file cannot be read: a missing column, bytes its encoding cannot decode, a malformed row."""


class TooManySkipped(MaintenanceTaskError):
    """A run skipped more items than its processor's ``max_skipped``: it is errored."""


class CountTimedOut(MaintenanceTaskError):
    """Counting the items took longer than COUNT_TIMEOUT: there are too many to count quickly."""


#: The ``Run.error_class`` of a run errored for these reasons (not raised inside the run: recorded on it).
ENQUEUE_FAILED = error_class_name(EnqueueFailed())
TOO_MANY_RECOVERIES = error_class_name(TooManyRecoveries())
