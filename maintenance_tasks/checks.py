"""System checks: a wrong setting or processor is reported at start-up, not at first use."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.tasks.exceptions import InvalidTaskBackend

from .conf import DAY, DEFAULTS, MAX_OUTPUT_LINES, MAX_SECONDS, RENAMED, SECONDS, app_settings, is_duration
from .exceptions import InvalidRouting
from .registry import registry
from .status import COMPLETED_STATUSES
from .throttles import condition_checks


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate ``settings.MAINTENANCE_TASKS``."""
    user = app_settings.user_settings
    if not isinstance(user, dict):
        return [
            Error(
                f"MAINTENANCE_TASKS must be a dict, not {type(user).__name__}.",
                id="maintenance_tasks.E001",
            )
        ]
    errors: list[CheckMessage] = []
    for key in sorted(set(user) & set(RENAMED)):
        errors.append(
            Error(
                f"MAINTENANCE_TASKS[{key!r}] was renamed to {RENAMED[key]!r}.",
                hint=f"Rename the key to {RENAMED[key]!r}; it means the same.",
                id="maintenance_tasks.E015",
            )
        )
    for key in sorted(set(user) - set(DEFAULTS) - set(RENAMED)):
        errors.append(
            Error(
                f"MAINTENANCE_TASKS has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(DEFAULTS)}.",
                id="maintenance_tasks.E002",
            )
        )
    for key in SECONDS:
        if key not in user:
            continue
        value = user[key]
        if not is_duration(value):
            errors.append(
                Error(
                    f"MAINTENANCE_TASKS[{key!r}] must be a positive number of seconds, "
                    f"at most {MAX_SECONDS:.0f} (100 years), not {value!r}.",
                    id="maintenance_tasks.E003",
                )
            )
    cap = user.get("MAX_CONCURRENT_RUNS")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        errors.append(
            Error(
                f"MAINTENANCE_TASKS['MAX_CONCURRENT_RUNS'] must be None or a positive integer, not {cap!r}.",
                id="maintenance_tasks.E005",
            )
        )
    recoveries = user.get("MAX_RECOVERIES", 1)
    if isinstance(recoveries, bool) or not isinstance(recoveries, int) or recoveries < 1:
        errors.append(
            Error(
                f"MAINTENANCE_TASKS['MAX_RECOVERIES'] must be a positive integer, not {recoveries!r}.",
                id="maintenance_tasks.E016",
            )
        )
    batch_time = user.get("BATCH_TIME", DEFAULTS["BATCH_TIME"])
    if batch_time is not None and not is_duration(batch_time):
        errors.append(
            Error(
                f"MAINTENANCE_TASKS['BATCH_TIME'] must be None or a positive number of seconds, "
                f"at most {MAX_SECONDS:.0f} (100 years), not {batch_time!r}.",
                id="maintenance_tasks.E003",
            )
        )
    alias = user.get("CSV_STORAGE", DEFAULTS["CSV_STORAGE"])
    if not isinstance(alias, str) or alias not in settings.STORAGES:
        errors.append(
            Error(
                f"MAINTENANCE_TASKS['CSV_STORAGE'] must be an alias of STORAGES, not {alias!r}.",
                hint=f"Aliases in STORAGES: {', '.join(map(repr, settings.STORAGES))}.",
                id="maintenance_tasks.E017",
            )
        )
    lines = user.get("OUTPUT_LINES", 0)
    if isinstance(lines, bool) or not isinstance(lines, int) or not 0 <= lines <= MAX_OUTPUT_LINES:
        errors.append(
            Error(
                f"MAINTENANCE_TASKS['OUTPUT_LINES'] must be a whole number from 0 to {MAX_OUTPUT_LINES:,}, not {lines!r}.",
                id="maintenance_tasks.E018",
            )
        )
    patterns = user.get("SENSITIVE_PARAMETERS", ())
    if not isinstance(patterns, list | tuple) or not all(isinstance(item, str) and item for item in patterns):
        errors.append(
            Error(
                f"MAINTENANCE_TASKS['SENSITIVE_PARAMETERS'] must be a list or tuple of non-empty strings, not {patterns!r}.",
                id="maintenance_tasks.E019",
            )
        )
    if "THROTTLE_ON" in user:
        errors += condition_checks(user["THROTTLE_ON"], "MAINTENANCE_TASKS['THROTTLE_ON']")
    return errors


@register(Tags.compatibility)
def check_processors(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report processors that cannot be used: each one's own checks, and where its runs are routed."""
    # jobs builds the tasks backend when it is imported (@task()): imported here, a TASKS setting
    # it cannot use is reported by Django's own checks instead of stopping start-up.
    from .jobs import slice_job

    errors: list[CheckMessage] = []
    routable = True
    for processor in registry.processors().values():
        errors.extend(processor.check())
        if not routable:
            continue
        try:
            slice_job(processor)
        except InvalidRouting as error:
            hint = "Add the queue to TASKS[...]['QUEUES'], or change the processor's queue_name or priority."
            errors.append(Error(str(error), hint=hint, obj=processor, id="maintenance_tasks.E006"))
        except InvalidTaskBackend:
            routable = False  # Django's own checks report a TASKS setting it cannot use
    return errors


@register(Tags.compatibility)
def check_retention(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate MAINTENANCE_TASKS["RETENTION"]: days (or None) by ended status."""
    user = app_settings.user_settings
    if not isinstance(user, dict) or "RETENTION" not in user:
        return []
    retention = user["RETENTION"]
    known = sorted(COMPLETED_STATUSES)
    if not isinstance(retention, dict):
        return [
            Error(
                f"MAINTENANCE_TASKS['RETENTION'] must be a dict of days by status, not {type(retention).__name__}.",
                hint=f"For example {{'succeeded': 30, 'cancelled': 30, 'errored': 90}}; statuses: {', '.join(known)}.",
                id="maintenance_tasks.E013",
            )
        ]
    errors: list[CheckMessage] = []
    for status, days in retention.items():
        if status not in known:
            errors.append(
                Error(
                    f"MAINTENANCE_TASKS['RETENTION'] has an unknown status {status!r}.",
                    hint=f"Ended statuses: {', '.join(known)}.",
                    id="maintenance_tasks.E013",
                )
            )
        elif days is not None and not is_duration(days, unit=DAY):
            errors.append(
                Error(
                    f"MAINTENANCE_TASKS['RETENTION'][{status!r}] must be a positive number of days, at most "
                    f"{MAX_SECONDS / DAY:.0f} (100 years), or None (keep forever), not {days!r}.",
                    id="maintenance_tasks.E014",
                )
            )
    return errors


@register(Tags.compatibility)
def check_sqlite_transaction_mode(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn about a SQLite database whose transactions do not take the write lock up front.

    A deferred transaction that reads, then writes, cannot wait for the lock an atomic batch
    holds: a pause or cancel from another process would fail at once with "database is locked".
    """
    warnings: list[CheckMessage] = []
    for alias, database in settings.DATABASES.items():
        if not str(database.get("ENGINE", "")).endswith("sqlite3"):
            continue
        mode = str((database.get("OPTIONS") or {}).get("transaction_mode") or "DEFERRED").upper()
        if mode not in ("IMMEDIATE", "EXCLUSIVE"):
            warnings.append(
                Warning(
                    f"The SQLite database {alias!r} uses {mode} transactions: a pause or cancel from another "
                    'process while an atomic batch runs fails with "database is locked" instead of waiting.',
                    hint=f'Add "OPTIONS": {{"transaction_mode": "IMMEDIATE"}} to DATABASES[{alias!r}].',
                    id="maintenance_tasks.W040",
                )
            )
    return warnings
