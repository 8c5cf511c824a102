"""Template filters for the maintenance task admin pages."""

import json
from datetime import timedelta
from typing import Any

from django import template
from django.core.serializers.json import DjangoJSONEncoder

from maintenance_tasks import overdue

register = template.Library()


@register.filter
def as_json(value: Any, indent: int | None = None) -> str:
    """Return ``value`` as JSON text (sorted keys; indented when ``indent`` is given)."""
    return json.dumps(value, indent=indent, sort_keys=True, cls=DjangoJSONEncoder, ensure_ascii=False)


@register.filter
def overdue_for(run: Any) -> str:
    """Return how long the run has been active if it is overdue (longer than expected), else ""."""
    active_for = overdue.overdue_for(run)
    return str(timedelta(seconds=round(active_for.total_seconds()))) if active_for else ""
