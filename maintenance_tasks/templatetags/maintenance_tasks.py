"""Template filters and tags for the maintenance task admin pages."""

import json
from datetime import timedelta
from typing import Any

from django import template
from django.core.serializers.json import DjangoJSONEncoder

from maintenance_tasks import overdue, workers
from maintenance_tasks.jobs import perform_run

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


@register.inclusion_tag("admin/maintenance_tasks/includes/missing_worker.html", takes_context=True)
def missing_worker_warning(context: template.Context) -> dict[str, Any]:
    """Warn that runs wait for a worker none seems to run, to a user who may see tasks or runs.

    Shown on the maintenance pages; a project's own ``admin/index.html`` may show it too.
    """
    user = getattr(context.get("request"), "user", None)
    if user is None or not (
        user.has_perm("maintenance_tasks.view_task") or user.has_perm("maintenance_tasks.view_run")
    ):
        return {"missing": None}
    return {"missing": workers.missing_worker(perform_run.get_backend())}
