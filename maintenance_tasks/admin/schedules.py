"""The schedule admin: add, change, pause and remove schedules; code schedules can only be paused."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from maintenance_tasks.actors import admin_actor
from maintenance_tasks.models import Schedule, ScheduleSource, canonical_json
from maintenance_tasks.scheduling import ensure_scheduler
from maintenance_tasks.status import RunStatus

from .display import PERMISSIONS, admin_url, describe_next_run, without_nul
from .forms import ScheduleForm


class ScheduleAdmin(admin.ModelAdmin):
    """Schedules: add, change, pause and remove them; code schedules can only be paused."""

    form = ScheduleForm
    list_display = ("task_name", "timing", "next_run_display", "enabled", "last_run_link", "source", "config_display")
    list_filter = ("enabled", "source")
    list_select_related = ("task", "last_run")
    search_fields = ("task__processor", "cron")
    actions = ["pause_schedules", "resume_schedules"]
    readonly_fields = ("next_run_display", "last_run_link", "source")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = ["processor", "config", "cron", "run_at", "enabled"]
        return [*fields, "next_run_display", "last_run_link", "source"] if obj else fields

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        without_nul(request)
        return super().changelist_view(request, extra_context)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.source == ScheduleSource.CODE:
            return False  # it would come back at the next deploy: remove it from the code
        return super().has_delete_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A schedule starts runs: adding one needs the permission to start runs too.
        return super().has_add_permission(request) and request.user.has_perm(PERMISSIONS["start"])

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"can_start": request.user.has_perm(PERMISSIONS["start"])})

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        if form.sets_runs:
            obj.changed_by = admin_actor(request)  # the runs it starts name who chose them
        super().save_model(request, obj, form, change)
        ensure_scheduler()

    @admin.display(description=gettext_lazy("task"), ordering="task__processor")
    def task_name(self, schedule: Schedule) -> str:
        return schedule.task.name

    @admin.display(description=gettext_lazy("config"))
    def config_display(self, schedule: Schedule) -> str:
        if not schedule.task.config:
            return "–"
        config = canonical_json(schedule.task.shown_config)
        return format_html('<span title="{}">{}</span>', config, Truncator(config).chars(40))

    @admin.display(description=gettext_lazy("next run"), ordering="next_run_at")
    def next_run_display(self, schedule: Schedule) -> str:
        return describe_next_run(schedule)

    @admin.display(description=gettext_lazy("last run"), ordering="last_run_at")
    def last_run_link(self, schedule: Schedule) -> str:
        if schedule.last_run is None:
            return "–"
        url = admin_url(self.admin_site.name, "run_change", schedule.last_run_id)
        return format_html(
            '<a href="{}">#{}</a> {}', url, schedule.last_run_id, RunStatus(schedule.last_run.status).label
        )

    @admin.action(description=gettext_lazy("Pause selected schedules"), permissions=["change"])
    def pause_schedules(self, request: HttpRequest, queryset: Any) -> None:
        count = queryset.filter(enabled=True).update(enabled=False, updated_at=timezone.now())
        self.message_user(request, _("Paused %(count)d schedule(s).") % {"count": count}, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Resume selected schedules"), permissions=["change"])
    def resume_schedules(self, request: HttpRequest, queryset: Any) -> None:
        now = timezone.now()
        schedules = list(queryset.filter(enabled=False))
        for schedule in schedules:
            schedule.resume(now)
        self.message_user(request, _("Resumed %(count)d schedule(s).") % {"count": len(schedules)}, messages.SUCCESS)
