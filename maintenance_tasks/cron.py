"""Cron expressions: validate them and find the next time they match (a leaf over croniter)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from croniter import CroniterBadDateError, croniter
from django.core.exceptions import ValidationError
from django.utils import timezone


def cron_error(expression: Any) -> str | None:
    """Return why ``expression`` is not a 5-field cron expression, or None if it is one."""
    if not isinstance(expression, str) or not expression.strip():
        return "Enter a cron expression, e.g. '0 3 * * *'."
    fields = expression.split()
    if len(fields) != 5:
        return f"A cron expression has 5 fields (minute hour day-of-month month day-of-week), not {len(fields)}: {expression!r}."
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression."
    try:
        # croniter gives up after years without a match: Feb 29 is found, Feb 31 never is.
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        return f"{expression!r} never matches a date (e.g. the 31st of a month that has 30 days at most)."
    return None


def validate_cron(value: Any) -> None:
    """Raise ValidationError unless ``value`` is a 5-field cron expression (a field validator)."""
    if error := cron_error(value):
        raise ValidationError(error, code="invalid_cron")


def next_cron(expression: str, after: datetime) -> datetime:
    """Return the first time after ``after`` that matches ``expression``, in settings.TIME_ZONE.

    Daylight saving time is handled as croniter does: a time that the clock skips in spring
    runs at the first time after it; a time that happens twice in autumn runs at both.
    """
    local = timezone.localtime(after, timezone.get_default_timezone())
    return croniter(expression, local).get_next(datetime)
