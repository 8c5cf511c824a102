"""The admin: an index of every processor, a page per processor with a start form, run pages with controls.

Pages read; every change goes through ``runner.Runner``. State-changing views are POST only,
check the action's permission (403 otherwise), and end with an admin message, a ``LogEntry``
and a redirect.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from .conf import app_settings
from .exceptions import MaintenanceTaskError, UnknownProcessor
from .models import Run, Schedule, ScheduleSource, Task
from .processor import Processor, to_json
from .registry import registry
from .runner import Runner
from .scheduling import ensure_scheduler
from .status import COMPLETED_STATUSES, RunStatus

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
RUNS_PER_PAGE = 50
#: Deploy record states an operator sets, with --skip and --reset.
HAND_CHANGES = {"skipped": gettext_lazy("Skipped"), "new": gettext_lazy("Reset")}
DEPLOY_MODES = {
    "once": gettext_lazy("once, like a data migration"),
    "always": gettext_lazy("on every deploy"),
}


def admin_actor(request: HttpRequest) -> dict[str, Any]:
    """Describe the admin user acting in this request."""
    return {
        "source": "admin",
        "user": request.user.get_username(),
        "user_id": request.user.pk,
        "ip": request.META.get("REMOTE_ADDR", ""),
    }


def permitted_actions(request: HttpRequest) -> set[str]:
    """Return the actions this user may take."""
    return {action for action, perm in PERMISSIONS.items() if request.user.has_perm(perm)}


# -- how runs are shown ------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = round(seconds)
    return str(timedelta(seconds=seconds))


def describe_actor(actor: dict[str, Any]) -> str:
    """Return who acted and from where, in words."""
    if not actor:
        return ""
    source, user = actor.get("source", ""), actor.get("user", "")
    where = {
        "admin": _("admin user %(user)s") % {"user": user},
        "cli": _("command line, OS user %(user)s") % {"user": user},
        "python": _("Python API, OS user %(user)s") % {"user": user},
        "deploy": _("deploy hook, OS user %(user)s") % {"user": user},
        "engine": _("executor"),
    }.get(source, f"{source} {user}".strip())
    extra = [f"{key} {actor[key]}" for key in ("host", "pid", "ip") if actor.get(key)]
    return f"{where} ({', '.join(extra)})" if extra else where


def deploy_state(path_: str, processor: type[Processor] | None) -> dict[str, Any] | None:
    """Return what the deploy hook did and will do with a processor that runs on deploy."""
    from . import deploy

    if processor is None or processor.run_on_deploy not in DEPLOY_MODES:
        return None
    outcome, record, run = deploy.status_of(path_, processor.run_on_deploy)
    changed = record is not None and bool(record.changed_by) and record.state in HAND_CHANGES
    return {
        "mode": DEPLOY_MODES[processor.run_on_deploy],
        "state": deploy.state_label(outcome),
        "reason": outcome.reason,
        "run": run,
        "changed": (HAND_CHANGES[record.state], describe_actor(record.changed_by), record.changed_at)
        if changed and record is not None
        else None,
    }


def run_state(run: Run, allowed: set[str], *, processor_missing: bool = False) -> dict[str, Any]:
    """Return what the pages and the JSON endpoint show of a run's progress, formatted once."""
    progress = run.progress
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
        "percent": round(progress * 100, 1) if progress is not None else None,
        "count_text": f"{run.tick_count:,}{total}" + (f" ({progress:.1%})" if progress is not None else ""),
        "rate_text": f"{run.rate:,.1f} items/s" if run.rate else "",
        "eta_text": format_duration(eta.total_seconds()) if eta is not None else "",
        "time_running_text": format_duration(run.time_running),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "actions": actions,
        # A form per action the user may take; those the status does not allow now start hidden.
        "controls": [
            (action, label, reverse(f"admin:maintenance_tasks_run_{action}", args=[run.pk]))
            for action, label in ACTION_LABELS.items()
            if action in allowed and not (action == "resume" and processor_missing)
        ],
    }


# -- the start form ----------------------------------------------------------------------------


def start_form_class(processor: type[Processor]) -> type[forms.Form]:
    """Return a form with one field per parameter (each parameter's field is already a form field)."""
    fields = {name: parameter.field for name, parameter in processor.parameters().items()}
    return type(f"{processor.__name__}StartForm", (forms.Form,), {**fields, "required_css_class": "required"})


def start_form(processor: type[Processor], data: Any = None) -> forms.Form:
    initial = {}
    for name, parameter in processor.parameters().items():
        if not parameter.required:
            default = parameter.default
            initial[name] = default.value if isinstance(default, enum.Enum) else default
    return start_form_class(processor)(data, initial=initial, prefix="param")


def add_config_errors(form: forms.Form, error: ValidationError) -> None:
    """Put each error of a config beside its field (the rest above the form)."""
    if hasattr(error, "error_dict"):
        for name, errors in error.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, error)


def form_config(form: forms.Form) -> dict[str, Any]:
    return {name: to_json(value) for name, value in form.cleaned_data.items()}


def item_count(processor: type[Processor], config: dict[str, Any] | None) -> tuple[int | None, str]:
    """Return the number of items the processor would process with this config, or why not."""
    try:
        return processor.from_config(config).count(), ""
    except ValidationError:
        return None, _("Depends on the parameters: fill them in and press “Count items”.")
    except Exception as error:  # user code: show what went wrong rather than crash the page
        return None, _("count() failed: %(error)s") % {"error": f"{type(error).__name__}: {error}"}


# -- the index ---------------------------------------------------------------------------------


@dataclass
class ProcessorRow:
    path: str
    processor: type[Processor] | None
    run: Run | None = None  # the active run, else the latest
    active_runs: int = 0

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def missing(self) -> bool:
        return self.processor is None

    @property
    def description(self) -> str:
        return self.processor.description() if self.processor else ""

    @property
    def group(self) -> str:
        if self.active_runs:
            return "active"
        if self.run is None:
            return "new"
        return "completed"


def processor_rows(query: str = "") -> list[ProcessorRow]:
    """Return a row per discovered processor (and per processor gone from the code that has runs).

    Two queries whatever the number of processors and runs.
    """
    processors = registry.processors()
    latest_ids = Run.objects.order_by().values("task__processor").annotate(last=Max("pk")).values("last")
    latest = {run.task.processor: run for run in Run.objects.filter(pk__in=latest_ids).select_related("task")}
    active: dict[str, list[Run]] = {}
    for run in Run.objects.active().select_related("task").order_by("-created_at", "-id"):
        active.setdefault(run.task.processor, []).append(run)
    rows = []
    for path_ in sorted(set(processors) | set(latest) | set(active), key=lambda p: (p.rsplit(".", 1)[-1].lower(), p)):
        if query and query.lower() not in path_.lower():
            continue
        runs = active.get(path_, [])
        rows.append(ProcessorRow(path_, processors.get(path_), runs[0] if runs else latest.get(path_), len(runs)))
    return rows


# -- model admins ------------------------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    """Maintenance tasks: the index of processors, and a page per processor."""

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("", view(self.index_view), name="maintenance_tasks_task_changelist"),
            path("processor/<str:processor>/", view(self.processor_view), name="maintenance_tasks_processor"),
            path("<path:object_id>/change/", view(self.change_view), name="maintenance_tasks_task_change"),
            path("<path:object_id>/", view(self.change_view)),
        ]

    def context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "run_opts": Run._meta,
            "has_view_run_permission": request.user.has_perm("maintenance_tasks.view_run"),
            **extra,
        }

    def index_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        query = request.GET.get("q", "").strip()
        rows = processor_rows(query)
        groups = [
            ("active", _("Active"), [row for row in rows if row.group == "active"]),
            ("new", _("New"), [row for row in rows if row.group == "new"]),
            ("completed", _("Completed"), [row for row in rows if row.group == "completed"]),
        ]
        context = self.context(request, title=_("Maintenance tasks"), groups=groups, query=query, total=len(rows))
        return TemplateResponse(request, "admin/maintenance_tasks/task/index.html", context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        task = get_object_or_404(Task, pk=object_id) if object_id.isdigit() else None
        if task is None:
            raise Http404(_("No maintenance task with id %(id)r.") % {"id": object_id})
        return HttpResponseRedirect(reverse("admin:maintenance_tasks_processor", args=[task.processor]))

    def processor_view(self, request: HttpRequest, processor: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            if not request.user.has_perm(PERMISSIONS["start"]):
                raise PermissionDenied
            try:
                processor_class = registry.resolve(processor)
            except UnknownProcessor as error:
                self.message_user(request, str(error), messages.ERROR)
                return HttpResponseRedirect(reverse("admin:maintenance_tasks_task_changelist"))
            return self.start(request, registry.path_of(processor_class), processor_class)
        return self.render_processor(request, processor, None)

    def start(self, request: HttpRequest, path_: str, processor: type[Processor]) -> HttpResponse:
        """Validate the posted parameters, then start a run (or only count items with ``_count``)."""
        form = start_form(processor, request.POST)
        if not form.is_valid():
            return self.render_processor(request, path_, form, status=400)
        config = form_config(form)
        if "_count" in request.POST:
            return self.render_processor(request, path_, form, count_config=config)
        try:
            run = Runner.run(path_, config, metadata=admin_actor(request))
        except ValidationError as error:
            add_config_errors(form, error)
            return self.render_processor(request, path_, form, status=400)
        except MaintenanceTaskError as error:
            self.message_user(request, str(error), messages.ERROR)
            return self.render_processor(request, path_, form, status=409)
        message = _("Started run %(id)s of %(name)s: now %(status)s.") % {
            "id": run.pk,
            "name": run.task.name,
            "status": RunStatus(run.status).label,
        }
        self.log_addition(request, run, message)
        self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:maintenance_tasks_run_change", args=[run.pk]))

    def render_processor(
        self,
        request: HttpRequest,
        path_: str,
        form: forms.Form | None,
        *,
        count_config: dict[str, Any] | None = None,
        status: int = 200,
    ) -> HttpResponse:
        processor = registry.processors().get(path_)
        runs = Run.objects.filter(task__processor=path_).select_related("task")
        page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("p"))
        if processor is None and not page.object_list:
            raise Http404(str(UnknownProcessor(f"Unknown processor {path_!r}: no such processor and no runs of it.")))
        allowed = permitted_actions(request)
        can_start = processor is not None and "start" in allowed
        if can_start and form is None:
            form = start_form(processor)
        count, count_note = (None, "")
        if processor is not None:
            if count_config is None:
                count_config = {
                    name: to_json(parameter.default)
                    for name, parameter in processor.parameters().items()
                    if not parameter.required
                }
            count, count_note = item_count(processor, count_config)
        active = [
            (run, run_state(run, allowed, processor_missing=processor is None))
            for run in Run.objects.active().filter(task__processor=path_).select_related("task")
        ]
        schedules = Schedule.objects.filter(task__processor=path_).select_related("task")
        context = self.context(
            request,
            title=path_.rsplit(".", 1)[-1],
            schedules=[(schedule, ScheduleAdmin.describe_next_run(schedule)) for schedule in schedules],
            can_view_schedules=request.user.has_perm("maintenance_tasks.view_schedule"),
            path=path_,
            processor=processor,
            doc=(processor.__doc__ or "").strip() if processor and processor.__doc__ is not Processor.__doc__ else "",
            form=form,
            can_start=can_start,
            count=count,
            count_note=count_note,
            deploy=deploy_state(path_, processor),
            active_runs=active,
            page=page,
            page_range=page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
            action_labels=ACTION_LABELS,
            permitted=allowed,
            next_url=request.get_full_path(),
        )
        return TemplateResponse(request, "admin/maintenance_tasks/task/processor.html", context, status=status)


class ProcessorFilter(admin.SimpleListFilter):
    """Filter runs by processor: every discovered one."""

    title = gettext_lazy("processor")
    parameter_name = "processor"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(path_, path_.rsplit(".", 1)[-1]) for path_ in registry.processors()]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value():
            return queryset.filter(task__processor=self.value())
        return queryset


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    """Maintenance runs: a searchable history, a page per run with its controls."""

    list_display = ("id", "task_name", "status_badge", "progress_display", "started_at", "ended_at", "started_by")
    list_display_links = ("id", "task_name")
    list_filter = ("status", ProcessorFilter)
    date_hierarchy = "created_at"
    search_fields = ("task__processor", "=id")
    list_select_related = ("task",)
    list_per_page = 50
    show_full_result_count = False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or request.user.has_perm("maintenance_tasks.view_task")

    @admin.display(description=gettext_lazy("task"), ordering="task__processor")
    def task_name(self, run: Run) -> str:
        return str(run.task)

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_badge(self, run: Run) -> str:
        return RunStatus(run.status).label

    @admin.display(description=gettext_lazy("progress"))
    def progress_display(self, run: Run) -> str:
        return run_state(run, set())["count_text"]

    @admin.display(description=gettext_lazy("started by"))
    def started_by(self, run: Run) -> str:
        return describe_actor(run.metadata)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:run_id>/progress/", view(self.progress_view), name="maintenance_tasks_run_progress"),
            *(
                path(
                    f"<int:run_id>/{action}/",
                    view(self.action_view),
                    {"action": action},
                    name=f"maintenance_tasks_run_{action}",
                )
                for action in ACTION_LABELS
            ),
            *super().get_urls(),
        ]

    def get_run(self, request: HttpRequest, run_id: Any) -> Run:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(Run.objects.select_related("task"), pk=run_id)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        if not object_id.isdigit():
            raise Http404(_("No maintenance run with id %(id)r.") % {"id": object_id})
        run = self.get_run(request, object_id)
        processor = registry.processors().get(run.task.processor)
        state = run_state(run, permitted_actions(request), processor_missing=processor is None)
        events = [(event, describe_actor(event.detail)) for event in run.events.all()]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "task_opts": Task._meta,
            "title": str(run),
            "run": run,
            "state": state,
            "processor": processor,
            "started_by": describe_actor(run.metadata),
            "events": events,
            "ended": run.status in COMPLETED_STATUSES,
            "action_labels": ACTION_LABELS,
            "next_url": request.get_full_path(),
            "permitted": permitted_actions(request),
            "stuck_after": format_duration(app_settings.STUCK_AFTER),
        }
        return TemplateResponse(request, "admin/maintenance_tasks/run/detail.html", context)

    def progress_view(self, request: HttpRequest, run_id: int) -> JsonResponse:
        run = self.get_run(request, run_id)
        missing = run.task.processor not in registry.processors()
        state = run_state(run, permitted_actions(request), processor_missing=missing)
        del state["controls"]  # the page has the forms; the JSON says which to show
        return JsonResponse(state)

    def action_view(self, request: HttpRequest, run_id: int, action: str) -> HttpResponse:
        return require_POST(self.perform_action)(request, run_id, action)

    def perform_action(self, request: HttpRequest, run_id: int, action: str) -> HttpResponse:
        if not request.user.has_perm(PERMISSIONS[action]):
            raise PermissionDenied
        run = self.get_run(request, run_id)
        actor = admin_actor(request)
        before = run.status
        try:
            if action == "pause":
                Runner.pause(run, actor=actor)
            elif action == "cancel":
                Runner.cancel(run, actor=actor)
            elif action == "force":
                Runner.force_stop(run, actor=actor)
            else:
                if run.task.processor not in registry.processors():
                    raise UnknownProcessor(
                        _("Run %(id)s cannot be resumed: its processor %(path)s is no longer in the code.")
                        % {"id": run.pk, "path": run.task.processor}
                    )
                Runner.resume(run, actor=actor)
                run.refresh_from_db()
        except MaintenanceTaskError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            message = _("%(action)s run %(id)s: %(before)s → %(after)s.") % {
                "action": ACTION_LABELS[action],
                "id": run.pk,
                "before": RunStatus(before).label,
                "after": RunStatus(run.status).label,
            }
            self.log_change(request, run, message)
            self.message_user(request, message, messages.SUCCESS)
        next_url = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
            next_url = reverse("admin:maintenance_tasks_run_change", args=[run.pk])
        return HttpResponseRedirect(next_url)


# -- schedules ---------------------------------------------------------------------------------


class ScheduleForm(forms.ModelForm):
    """A schedule with its task: a discovered processor and a config validated by its parameters."""

    processor = forms.ChoiceField(label=gettext_lazy("Processor"))
    config = forms.JSONField(
        label=gettext_lazy("Config"),
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text=gettext_lazy("A JSON object of the processor's parameters; parameters left out take their default."),
    )

    class Meta:
        model = Schedule
        fields = ["processor", "config", "cron", "run_at", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["processor"].choices = [("", "---------")] + [
            (path_, path_.rsplit(".", 1)[-1] + f" ({path_})") for path_ in registry.processors()
        ]
        if self.instance.pk:
            self.initial.setdefault("processor", self.instance.task.processor)
            self.initial.setdefault("config", self.instance.task.config)
        if self.instance.source == ScheduleSource.CODE:
            for name in ("processor", "config", "cron", "run_at"):
                self.fields[name].disabled = True
                self.fields[name].help_text = _("Set in the code; only pausing is done here.")
        self.canonical_config: dict[str, Any] | None = None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        path_, config = data.get("processor"), data.get("config")
        if path_ and "config" not in self.errors:
            if config is None:
                config = {}
            try:
                self.canonical_config = registry.get(path_).from_config(config).config
            except UnknownProcessor as error:
                self.add_error("processor", str(error))
            except ValidationError as error:
                messages_ = (
                    [
                        f"{name}: {' '.join(errors.messages if hasattr(errors, 'messages') else errors)}"
                        for name, errors in error.message_dict.items()
                    ]
                    if hasattr(error, "error_dict")
                    else error.messages
                )
                self.add_error("config", messages_)
        return data

    def save(self, commit: bool = True) -> Schedule:
        schedule: Schedule = super().save(commit=False)
        if schedule.source != ScheduleSource.CODE and self.canonical_config is not None:
            path_ = self.cleaned_data["processor"]
            config = self.canonical_config
            schedule.task, _created = Task.objects.get_or_create(
                processor=path_, config_digest=Task.digest(config), defaults={"config": config}
            )
        timing_changed = bool({"cron", "run_at", "enabled"} & set(self.changed_data))
        if not schedule.pk or timing_changed:
            now = timezone.now()
            if schedule.cron:
                schedule.next_run_at = schedule.first_due(now)
            elif schedule.last_run_at is None or "run_at" in self.changed_data:
                schedule.next_run_at = schedule.run_at  # not run yet (a paused one that is due runs now)
            else:
                schedule.next_run_at = None  # a one-off schedule that has run
        if commit:
            schedule.save()
        return schedule


@admin.register(Schedule)
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

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.source == ScheduleSource.CODE:
            return False  # it would come back at the next deploy: remove it from the code
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        ensure_scheduler()

    @admin.display(description=gettext_lazy("task"), ordering="task__processor")
    def task_name(self, schedule: Schedule) -> str:
        return schedule.task.name

    @admin.display(description=gettext_lazy("config"))
    def config_display(self, schedule: Schedule) -> str:
        from .models import canonical_json

        if not schedule.task.config:
            return "–"
        config = canonical_json(schedule.task.config)
        return format_html('<span title="{}">{}</span>', config, Truncator(config).chars(40))

    @admin.display(description=gettext_lazy("next run"), ordering="next_run_at")
    def next_run_display(self, schedule: Schedule) -> str:
        return self.describe_next_run(schedule)

    @staticmethod
    def describe_next_run(schedule: Schedule) -> str:
        if not schedule.enabled:
            return _("paused")
        if schedule.next_run_at is None:
            return _("done")
        return timezone.localtime(schedule.next_run_at).strftime("%Y-%m-%d %H:%M %Z")

    @admin.display(description=gettext_lazy("last run"), ordering="last_run_at")
    def last_run_link(self, schedule: Schedule) -> str:
        if schedule.last_run is None:
            return "–"
        url = reverse("admin:maintenance_tasks_run_change", args=[schedule.last_run_id])
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
        count = 0
        for schedule in queryset.filter(enabled=False):
            schedule.enabled = True
            if schedule.cron:
                schedule.next_run_at = schedule.first_due(now)  # from now on: no catching up while paused
            schedule.save(update_fields=["enabled", "next_run_at", "updated_at"])
            count += 1
        self.message_user(request, _("Resumed %(count)d schedule(s).") % {"count": count}, messages.SUCCESS)
