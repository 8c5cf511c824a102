"""The task pages: an index of every processor, and a page per processor with its start form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext as _

from maintenance_tasks.actors import admin_actor
from maintenance_tasks.exceptions import MaintenanceTaskError, UnknownProcessor
from maintenance_tasks.models import Run, Schedule, Task
from maintenance_tasks.processor import Processor
from maintenance_tasks.registry import registry
from maintenance_tasks.runner import Runner
from maintenance_tasks.status import RunStatus

from .display import (
    ACTION_LABELS,
    PERMISSIONS,
    ReadOnlyAdmin,
    admin_url,
    deploy_state,
    describe_next_run,
    permitted_actions,
    run_state,
    short_name,
)
from .forms import add_config_errors, default_config, form_config, start_form

RUNS_PER_PAGE = 50


def item_count(processor: type[Processor], config: dict[str, Any] | None) -> tuple[int | None, str]:
    """Return the number of items the processor would process with this config, or why not."""
    try:
        return processor.from_config(config).count(), ""
    except ValidationError:
        return None, _("Depends on the parameters: fill them in and press “Count items”.")
    except Exception as error:  # user code: show what went wrong rather than crash the page
        return None, _("count() failed: %(error)s") % {"error": f"{type(error).__name__}: {error}"}


@dataclass
class ProcessorRow:
    """A line of the index: a processor (None if gone from the code) and its active or latest run."""

    path: str
    processor: type[Processor] | None
    run: Run | None = None  # the active run, else the latest
    active_runs: int = 0

    @property
    def name(self) -> str:
        return short_name(self.path)

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
    for path_ in sorted(set(processors) | set(latest) | set(active), key=lambda p: (short_name(p).lower(), p)):
        if query and query.lower() not in path_.lower():
            continue
        runs = active.get(path_, [])
        rows.append(ProcessorRow(path_, processors.get(path_), runs[0] if runs else latest.get(path_), len(runs)))
    return rows


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
        return self.page_context(
            request,
            run_opts=Run._meta,
            has_view_run_permission=request.user.has_perm("maintenance_tasks.view_run"),
            **extra,
        )

    def index_view(self, request: HttpRequest) -> HttpResponse:
        request.current_app = self.admin_site.name
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
        request.current_app = self.admin_site.name
        task = get_object_or_404(Task, pk=object_id) if object_id.isdigit() else None
        if task is None:
            raise Http404(_("No maintenance task with id %(id)r.") % {"id": object_id})
        return HttpResponseRedirect(admin_url(self.admin_site.name, "processor", task.processor))

    def processor_view(self, request: HttpRequest, processor: str) -> HttpResponse:
        request.current_app = self.admin_site.name
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            if not request.user.has_perm(PERMISSIONS["start"]):
                raise PermissionDenied
            try:
                processor_class = registry.resolve(processor)
            except UnknownProcessor as error:
                self.message_user(request, str(error), messages.ERROR)
                return HttpResponseRedirect(admin_url(self.admin_site.name, "task_changelist"))
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
        return HttpResponseRedirect(admin_url(self.admin_site.name, "run_change", run.pk))

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
                count_config = default_config(processor)
            count, count_note = item_count(processor, count_config)
        site = self.admin_site.name
        active = [
            (run, run_state(run, allowed, current_app=site, processor_missing=processor is None))
            for run in Run.objects.active().filter(task__processor=path_).select_related("task")
        ]
        schedules = Schedule.objects.filter(task__processor=path_).select_related("task")
        context = self.context(
            request,
            title=short_name(path_),
            schedules=[(schedule, describe_next_run(schedule)) for schedule in schedules],
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
