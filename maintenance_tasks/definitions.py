"""System checks of a processor class's scheduling attributes, and the dotted path that names it.

Each function takes the class (a ``Processor`` subclass) and returns the check messages about it.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.core.checks import CheckMessage, Error
from django.core.exceptions import ValidationError

from .conf import MAX_SECONDS, is_duration
from .exceptions import validation_error_text

#: The values ``run_on_deploy`` may take: never, until a run succeeds, on every deploy.
RUN_ON_DEPLOY_MODES = (None, "once", "always")


def path_of(processor: type[Any]) -> str:
    """Return the dotted path that names a processor class."""
    return f"{processor.__module__}.{processor.__qualname__}"


def expected_duration_errors(cls: Any) -> list[CheckMessage]:
    """Report an ``expected_duration`` that is not a positive duration of at most 100 years (E012)."""
    duration = cls.expected_duration
    if duration is None:
        return []
    seconds = duration.total_seconds() if isinstance(duration, datetime.timedelta) else duration
    if not is_duration(seconds):
        return [
            Error(
                f"{path_of(cls)}: expected_duration must be a positive timedelta or number of seconds, "
                f"at most {MAX_SECONDS:.0f} (100 years), not {duration!r}.",
                obj=cls,
                id="maintenance_tasks.E012",
            )
        ]
    return []


def run_on_deploy_errors(cls: Any) -> list[CheckMessage]:
    """Report an unknown ``run_on_deploy`` mode (E008) or defaults a deploy run cannot use (E009)."""
    mode = cls.run_on_deploy
    if mode not in RUN_ON_DEPLOY_MODES:
        return [
            Error(
                f'{path_of(cls)}.run_on_deploy must be None, "once" or "always", not {mode!r}.',
                obj=cls,
                id="maintenance_tasks.E008",
            )
        ]
    if mode is None:
        return []
    try:
        cls.default_config()
    except (ValidationError, TypeError) as error:
        detail = validation_error_text(error) if isinstance(error, ValidationError) else str(error)
        return [
            Error(
                f"{path_of(cls)} runs on deploy, so it runs with its default parameters, but they are not valid: {detail}",
                hint="Give every parameter a default, or remove run_on_deploy.",
                obj=cls,
                id="maintenance_tasks.E009",
            )
        ]
    return []
