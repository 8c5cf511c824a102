"""How the admin shows runs, deploy states and schedules, and which actions a user may take."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from maintenance_tasks import deploy
from maintenance_tasks.actors import describe
from maintenance_tasks.models import Run, Schedule
from maintenance_tasks.output import line_parts
from maintenance_tasks.processor import Processor
from maintenance_tasks.status import EXECUTING_STATUSES, RunStatus

#: The permission each action needs (pause and resume share one).
PERMISSIONS = {
    "start": "maintenance_tasks.start_run",
    "pause": "maintenance_tasks.pause_run",
    "resume": "maintenance_tasks.pause_run",
    "cancel": "maintenance_tasks.cancel_run",
    "force": "maintenance_tasks.cancel_run",
}
ACTION_LABELS = {
    "pause": gettext_lazy("Pause"),
    "resume": gettext_lazy("Resume"),
    "cancel": gettext_lazy("Cancel"),
    "force": gettext_lazy("Force stop"),
}
#: A run in these statuses is moving: without a total, its progress bar is animated.
MOVING_STATUSES = EXECUTING_STATUSES | {RunStatus.ENQUEUED}
#: Deploy record states an operator sets, with --skip and --reset.
HAND_CHANGES = {"skipped": gettext_lazy("Skipped"), "new": gettext_lazy("Reset")}
DEPLOY_MODES = {
    "once": gettext_lazy("once, like a data migration"),
    "always": gettext_lazy("on every deploy"),
}


def admin_url(current_app: str, name: str, *args: Any) -> str:
    """Return the URL of the page ``name`` of this app in the admin site named ``current_app``."""
    return reverse(f"admin:maintenance_tasks_{name}", args=args, current_app=current_app)


def permitted_actions(request: HttpRequest) -> set[str]:
    """Return the actions this user may take."""
    return {action for action, perm in PERMISSIONS.items() if request.user.has_perm(perm)}


def without_nul(request: HttpRequest) -> None:
    """Drop NUL characters from the query string's values: PostgreSQL refuses them in a filter (a 500 otherwise)."""
    if any("\x00" in value for values in request.GET.lists() for value in values[1]):
        query = request.GET.copy()
        for key, values in query.lists():
            query.setlist(key, [value.replace("\x00", "") for value in values])
        request.GET = query


def format_duration(seconds: float | None) -> str:
    """Return a number of seconds as ``H:MM:SS`` (empty for None)."""
    if seconds is None:
        return ""
    return str(timedelta(seconds=round(seconds)))


def describe_next_run(schedule: Schedule) -> str:
    """Return when a schedule runs next: a local time, or why it does not."""
    if not schedule.enabled:
        return _("paused")
    if schedule.next_run_at is None:
        return _("done")
    return timezone.localtime(schedule.next_run_at).strftime("%Y-%m-%d %H:%M %Z")


def deploy_state(path: str, processor: type[Processor] | None) -> dict[str, Any] | None:
    """Return what the deploy hook did and will do with a processor that runs on deploy."""
    if processor is None or processor.run_on_deploy not in DEPLOY_MODES:
        return None
    outcome, record, run = deploy.status_of(path, processor.run_on_deploy)
    changed = record is not None and bool(record.changed_by) and record.state in HAND_CHANGES
    return {
        "mode": DEPLOY_MODES[processor.run_on_deploy],
        "state": deploy.state_label(outcome),
        "reason": outcome.reason,
        "run": run,
        "changed": (HAND_CHANGES[record.state], describe(record.changed_by), record.changed_at)
        if changed and record is not None
        else None,
    }


def throttled_reason(run: Run) -> str:
    """Return why the run waits for a throttle condition ("": it does not), while it is under way."""
    return run.throttled_reason if run.status in MOVING_STATUSES else ""


def run_state(run: Run, allowed: set[str], *, current_app: str, processor_missing: bool = False) -> dict[str, Any]:
    """Return what the pages and the JSON endpoint show of a run's progress, formatted once.

    ``current_app`` is the admin site's name: the controls post to that site's URLs.
    """
    progress = run.progress
    percent = round(progress * 100, 1) if progress is not None else None
    eta = run.eta
    actions = [action for action in run.available_actions() if action in allowed]
    if processor_missing and "resume" in actions:
        actions.remove("resume")
    total = f" / {run.tick_total:,}" if run.tick_total is not None else ""
    return {
        "id": run.pk,
        "status": run.status,
        "status_label": str(RunStatus(run.status).label),
        "active": run.is_active,
        "tick_count": run.tick_count,
        "tick_total": run.tick_total,
        "percent": percent,
        # The bar's value: None (an animated bar) only while the run moves without a total; a stopped run's bar is still.
        "bar": percent if percent is not None or run.status in MOVING_STATUSES else 0,
        "count_text": f"{run.tick_count:,}{total}" + (f" ({progress:.1%})" if progress is not None else ""),
        "rate_text": f"{run.rate:,.1f} items/s" if run.rate else "",
        "eta_text": format_duration(eta.total_seconds()) if eta is not None else "",
        "time_running_text": format_duration(run.time_running),
        "status_line": run.status_line,
        "throttled_text": throttled_reason(run),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "actions": actions,
        # A form per action the user may take; those the status does not allow now start hidden.
        "controls": [
            (action, label, admin_url(current_app, f"run_{action}", run.pk))
            for action, label in ACTION_LABELS.items()
            if action in allowed and not (action == "resume" and processor_missing)
        ],
    }


def output_state(run: Run) -> dict[str, Any]:
    """Return what the run page shows of a run's output: its kept lines and how many went before them."""
    dropped = run.output_dropped
    note = ngettext("%(count)s earlier line not kept.", "%(count)s earlier lines not kept.", dropped)
    return {
        "output": [line_parts(line) for line in run.output],
        "output_total": dropped + len(run.output),  # changes whenever a line is added
        "output_dropped_text": note % {"count": f"{dropped:,}"} if dropped else "",
    }


class ReadOnlyAdmin(admin.ModelAdmin):
    """An admin whose objects change only through its own views, which render within the site."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        without_nul(request)
        return super().changelist_view(request, extra_context)

    def page_context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        """Return the context of one of this admin's own pages: the site's, the model's options, ``extra``."""
        return {**self.admin_site.each_context(request), "opts": self.opts, **extra}
