"""System checks: a wrong setting or processor is reported at start-up, not at first use."""

from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register

from .conf import DEFAULTS, SECONDS, app_settings


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
    for key in sorted(set(user) - set(DEFAULTS)):
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
    return errors


@register(Tags.compatibility)
def check_processors(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report processors whose parameters cannot be built."""
    from django.tasks.exceptions import InvalidTaskBackend

    from .exceptions import InvalidRouting
    from .jobs import slice_task
    from .registry import registry

    errors: list[CheckMessage] = []
    for path, processor in registry.processors().items():
        try:
            processor.parameters()
        except TypeError as error:
            errors.append(Error(f"{path}: {error}", obj=processor, id="maintenance_tasks.E004"))
        try:
            slice_task(processor)
        except InvalidRouting as error:
            hint = "Add the queue to TASKS[...]['QUEUES'], or change the processor's queue_name or priority."
            errors.append(Error(str(error), hint=hint, obj=processor, id="maintenance_tasks.E006"))
        except InvalidTaskBackend:
            break  # Django's own checks report a TASKS setting it cannot use
    return errors
