"""System checks: a wrong setting or processor is reported at start-up, not at first use."""

from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register

from .conf import DEFAULTS, RENAMED, SECONDS, app_settings


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
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            errors.append(
                Error(
                    f"MAINTENANCE_TASKS[{key!r}] must be a positive number of seconds, not {value!r}.",
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
    return errors


@register(Tags.compatibility)
def check_processors(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report processors whose parameters cannot be built."""
    from django.tasks.exceptions import InvalidTaskBackend

    from .exceptions import InvalidRouting
    from .jobs import slice_job
    from .registry import registry

    errors: list[CheckMessage] = []
    for path, processor in registry.processors().items():
        try:
            processor.parameters()
        except TypeError as error:
            errors.append(Error(f"{path}: {error}", obj=processor, id="maintenance_tasks.E004"))
        problem = retry_problem(processor)
        if problem:
            errors.append(Error(f"{path}: {problem}", obj=processor, id="maintenance_tasks.E007"))
        try:
            slice_job(processor)
        except InvalidRouting as error:
            hint = "Add the queue to TASKS[...]['QUEUES'], or change the processor's queue_name or priority."
            errors.append(Error(str(error), hint=hint, obj=processor, id="maintenance_tasks.E006"))
        except InvalidTaskBackend:
            break  # Django's own checks report a TASKS setting it cannot use
    return errors


def retry_problem(processor: Any) -> str | None:
    """Return what is wrong with the processor's retry settings, if anything."""
    retry_on = processor.retry_on
    if not isinstance(retry_on, tuple) or not all(
        isinstance(error, type) and issubclass(error, Exception) for error in retry_on
    ):
        return f"retry_on must be a tuple of exception classes, not {retry_on!r}."
    max_retries = processor.max_retries
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        return f"max_retries must be a whole number, 0 or more, not {max_retries!r}."
    for name in ("retry_backoff", "retry_backoff_max"):
        value = getattr(processor, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            return f"{name} must be a number of seconds, 0 or more, not {value!r}."
    return None


@register(Tags.compatibility)
def check_retention(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate MAINTENANCE_TASKS["RETENTION"]: days (or None) by ended status."""
    from .status import COMPLETED_STATUSES

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
        elif days is not None and (isinstance(days, bool) or not isinstance(days, int | float) or days <= 0):
            errors.append(
                Error(
                    f"MAINTENANCE_TASKS['RETENTION'][{status!r}] must be a positive number of days or None "
                    f"(keep forever), not {days!r}.",
                    id="maintenance_tasks.E014",
                )
            )
    return errors


@register(Tags.compatibility)
def check_schedules(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report processors whose ``schedule`` or ``expected_duration`` cannot be used."""
    from datetime import timedelta

    from .cron import cron_error
    from .registry import registry
    from .scheduling import code_schedule_error

    errors: list[CheckMessage] = []
    for path, processor in registry.processors().items():
        if processor.schedule is not None:
            if cron_error(processor.schedule):
                errors.append(
                    Error(f"{path}: {code_schedule_error(processor)}", obj=processor, id="maintenance_tasks.E010")
                )
            elif error := code_schedule_error(processor):
                errors.append(
                    Error(
                        f"{path}: {error}",
                        hint="Give every parameter a default, or schedule it from the admin with a config.",
                        obj=processor,
                        id="maintenance_tasks.E011",
                    )
                )
        duration = processor.expected_duration
        if duration is None:
            continue
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            errors.append(
                Error(
                    f"{path}: expected_duration must be a positive timedelta or number of seconds, not {duration!r}.",
                    obj=processor,
                    id="maintenance_tasks.E012",
                )
            )
    return errors


@register(Tags.compatibility)
def check_deploy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report processors whose ``run_on_deploy`` is not a known mode or cannot run with defaults."""
    from django.core.exceptions import ValidationError

    from .deploy import MODES
    from .registry import registry

    errors: list[CheckMessage] = []
    for path, processor in registry.processors().items():
        mode = getattr(processor, "run_on_deploy", None)
        if mode not in MODES:
            errors.append(
                Error(
                    f'{path}.run_on_deploy must be None, "once" or "always", not {mode!r}.',
                    obj=processor,
                    id="maintenance_tasks.E008",
                )
            )
            continue
        if mode is None:
            continue
        try:
            processor.from_config({})
        except (ValidationError, TypeError) as error:
            if isinstance(error, ValidationError) and hasattr(error, "error_dict"):
                detail = "; ".join(f"{name}: {' '.join(text)}" for name, text in error.message_dict.items())
            else:
                detail = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
            errors.append(
                Error(
                    f"{path} runs on deploy, so it runs with its default parameters, but they are not valid: {detail}",
                    hint="Give every parameter a default, or remove run_on_deploy.",
                    obj=processor,
                    id="maintenance_tasks.E009",
                )
            )
    return errors
