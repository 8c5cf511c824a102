"""The app's settings: one dict, ``settings.MAINTENANCE_TASKS``, read on every access."""

import math
from collections.abc import Callable
from typing import Any

from django.conf import settings as django_settings
from django.core.files.storage import Storage, storages

DEFAULTS: dict[str, Any] = {
    # Seconds at most between two checkpoints (cursor and progress) of an autocommit run, and
    # between its looks for pause/cancel requests (atomic runs checkpoint after every batch).
    "CHECKPOINT_INTERVAL": 1.0,
    # Seconds without a heartbeat after which a running run's executor is taken as dead.
    "STALE_AFTER": 60.0,
    # Seconds a run may stay pausing/cancelling before an operator may force it.
    "STUCK_AFTER": 300.0,
    # Seconds a background slice works on a run before it checkpoints and enqueues the next one.
    "SLICE_SECONDS": 60.0,
    # Seconds between plain progress lines of run_maintenance_task when not on a terminal.
    "LOG_INTERVAL": 5.0,
    # Runs that background executors may perform at the same time, across every worker
    # and process (None: no limit). Runs beyond it stay enqueued until a slot frees.
    "MAX_CONCURRENT_RUNS": None,
    # Times in a row a run may be recovered at the same cursor (its executor died on it) before it is errored.
    "MAX_RECOVERIES": 5,
    # Seconds at most between two scheduler passes (schedules, overdue runs, retention).
    "SCHEDULER_INTERVAL": 60.0,
    # Seconds a run may stay active before it is flagged as overdue, unless its processor sets
    # ``expected_duration`` (not to be confused with STUCK_AFTER, for force-stopping requests).
    "OVERDUE_AFTER": 6 * 3600.0,
    # Seconds a count of the items (the admin's "Count items", a run's total) may take before it is
    # given up: "too many to count quickly", and the run goes without a total. Not on SQLite.
    "COUNT_TIMEOUT": 5.0,
    # Days ended runs are kept, by status; None keeps them forever. A task's latest run is always kept.
    "RETENTION": {"succeeded": 30, "cancelled": 30, "errored": 90},
    # The STORAGES alias the CSV files runs are started with are kept in (read when the models load).
    "CSV_STORAGE": "default",
    # Lines of its output a run keeps (``self.log()`` in a processor): the last ones; the others are counted.
    "OUTPUT_LINES": 200,
    # Parameters and metadata keys whose name contains one of these (case-insensitive) are shown as
    # ******** everywhere but in the stored config, as are a processor's ``sensitive`` parameters.
    "SENSITIVE_PARAMETERS": ("password", "secret", "token", "key"),
    # Throttle conditions for every processor, besides its own ``throttle_on`` (see throttles.py),
    # and the seconds at least between two looks at them while a run goes on.
    "THROTTLE_ON": [],
    "THROTTLE_CHECK_INTERVAL": 1.0,
    # Seconds an atomic processor's transaction should take, unless it sets ``batch_time``: fast
    # batches commit together, slow ones shrink (None: one transaction per batch).
    "BATCH_TIME": 0.5,
}

#: The settings that are a positive number of seconds.
DAY = 86400.0
SECONDS = (
    "CHECKPOINT_INTERVAL",
    "STALE_AFTER",
    "STUCK_AFTER",
    "SLICE_SECONDS",
    "LOG_INTERVAL",
    "SCHEDULER_INTERVAL",
    "OVERDUE_AFTER",
    "COUNT_TIMEOUT",
    "THROTTLE_CHECK_INTERVAL",
)
#: The longest duration a setting or ``expected_duration`` may give: 100 years. A date that far
#: away is still a date; ``now + timedelta(seconds=1e15)`` (or ``inf``, or ``nan``) raises.
MAX_SECONDS = 100 * 365 * 86400.0


def is_duration(value: Any, *, unit: float = 1.0) -> bool:
    """Return whether ``value`` is a positive number of ``unit`` seconds, finite and at most MAX_SECONDS."""
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 < value * unit <= MAX_SECONDS


def fit_seconds(value: Any, default: float, *, unit: float = 1.0) -> float:
    """Return ``value`` units as seconds a date can be moved by: at most MAX_SECONDS, ``default`` if not a number.

    The checks refuse such values; this keeps a page or a scheduler pass working if one slips through.
    """
    try:
        seconds = float(value) * unit
    except (TypeError, ValueError, OverflowError):
        return default
    return default if math.isnan(seconds) else max(-MAX_SECONDS, min(seconds, MAX_SECONDS))


#: The most output lines a run may keep: a checkpoint with new lines writes all the kept ones.
MAX_OUTPUT_LINES = 10_000


def line_count(value: Any) -> int:
    """Return OUTPUT_LINES as a number of lines from 0 to MAX_OUTPUT_LINES (the default if not a whole number).

    The checks refuse such values; this keeps runs working if one slips through.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        return DEFAULTS["OUTPUT_LINES"]
    return max(0, min(value, MAX_OUTPUT_LINES))


#: Settings renamed before the first release: the old name is a system check error naming the new one.
RENAMED = {"STUCK_RUN_AFTER": "OVERDUE_AFTER", "TICK_INTERVAL": "CHECKPOINT_INTERVAL"}


def name_patterns(value: Any) -> tuple[str, ...]:
    """Return the non-empty strings of a list or tuple, nothing else (check E019 refuses the rest)."""
    return tuple(item for item in value if isinstance(item, str) and item) if isinstance(value, list | tuple) else ()


class Setting[T]:
    """One setting of ``Settings``, read from ``MAINTENANCE_TASKS`` on each access and cast to its type."""

    def __init__(self, cast: Callable[[Any], T], *, optional: bool = False) -> None:
        self.cast, self.optional = cast, optional

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, settings: "Settings", owner: type | None = None) -> T:
        value = settings.value(self.name)
        return None if self.optional and value is None else self.cast(value)  # type: ignore[return-value]  # None only when optional


class Seconds(Setting[float]):
    """A duration setting, in seconds a date can be moved by (see ``fit_seconds``)."""

    def __init__(self) -> None:
        super().__init__(float)

    def __get__(self, settings: "Settings", owner: type | None = None) -> float:
        return fit_seconds(settings.value(self.name), DEFAULTS[self.name])


class SettingDefault:
    """A class attribute whose value is a setting's, read on each access, until a subclass sets its own."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return app_settings.value(self.name)


class Settings:
    """Typed view of ``settings.MAINTENANCE_TASKS``; nothing is cached, so override_settings works."""

    @property
    def user_settings(self) -> Any:
        return getattr(django_settings, "MAINTENANCE_TASKS", {})

    def value(self, name: str) -> Any:
        """Return the setting as given, or its default."""
        user = self.user_settings
        if isinstance(user, dict) and name in user:
            return user[name]
        return DEFAULTS[name]

    CHECKPOINT_INTERVAL = Seconds()
    STALE_AFTER = Seconds()
    STUCK_AFTER = Seconds()
    SLICE_SECONDS = Seconds()
    LOG_INTERVAL = Seconds()
    MAX_CONCURRENT_RUNS = Setting(int, optional=True)
    MAX_RECOVERIES = Setting(int)
    SCHEDULER_INTERVAL = Seconds()
    OVERDUE_AFTER = Seconds()
    COUNT_TIMEOUT = Seconds()
    CSV_STORAGE = Setting(str)
    OUTPUT_LINES = Setting(line_count)
    SENSITIVE_PARAMETERS = Setting(name_patterns)
    THROTTLE_CHECK_INTERVAL = Seconds()

    @property
    def THROTTLE_ON(self) -> tuple[Any, ...]:  # noqa: N802
        """Return the throttle conditions for every processor (none while the setting is not a list: E039)."""
        conditions = self.value("THROTTLE_ON")
        return tuple(conditions) if isinstance(conditions, list | tuple) else ()

    BATCH_TIME = Setting(float, optional=True)

    @property
    def RETENTION(self) -> dict[str, float | None]:  # noqa: N802
        """Return the days each ended status is kept (None: forever), defaults filled in."""
        user = self.value("RETENTION")
        retention = {**DEFAULTS["RETENTION"], **(user if isinstance(user, dict) else {})}
        return {
            status: None
            if days is None
            else fit_seconds(days, (DEFAULTS["RETENTION"].get(status) or 30) * DAY, unit=DAY) / DAY
            for status, days in retention.items()
        }


app_settings = Settings()


def csv_storage() -> Storage:
    """Return the storage CSV_STORAGE names, for the runs' CSV files (while it names none, the default: check E017)."""
    alias = app_settings.value("CSV_STORAGE")
    known = isinstance(alias, str) and alias in django_settings.STORAGES
    return storages[alias if known else "default"]
