"""The task pages: an index of every processor, and a page per processor with its start form."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
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
from maintenance_tasks.conf import app_settings
from maintenance_tasks.counting import count_within
from maintenance_tasks.csvfiles import CSV_FIELD
from maintenance_tasks.exceptions import CountTimedOut, InvalidParameters, MaintenanceTaskError, UnknownProcessor
from maintenance_tasks.models import Run, Schedule, Task
from maintenance_tasks.processor import Processor
from maintenance_tasks.registry import registry, short_name
from maintenance_tasks.runner import Runner
from maintenance_tasks.sensitive import scrubbed, secret_values, sensitive_names
from maintenance_tasks.status import RunStatus

from .display import (
    PERMISSIONS,
    ReadOnlyAdmin,
    admin_url,
    deploy_state,
    describe_next_run,
    permitted_actions,
    run_state,
)
from .forms import RunOptionsForm, add_config_errors, form_config, optional_defaults, prefill, start_form

RUNS_PER_PAGE = 50


def item_count(processor: type[Processor], config: dict[str, Any] | None) -> tuple[int | None, str]:
    """Return the number of items the processor would process with this config, or why not."""
    try:
        return count_within(processor.from_config(config).count), ""
    except CountTimedOut:
        return None, _("Too many to count quickly (counting takes longer than COUNT_TIMEOUT, %(seconds)ss).") % {
            "seconds": f"{app_settings.COUNT_TIMEOUT:g}"
        }
    except ValidationError:
        return None, _("Depends on the parameters: fill them in and press “Count items”.")
    except Exception as error:  # user code: show what went wrong rather than crash the page
        secrets = secret_values(config, sensitive_names(processor))
        return None, _("count() failed: %(error)s") % {"error": scrubbed(f"{type(error).__name__}: {error}", secrets)}


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


class ProcessorPage:
    """What a processor's page shows, like Django's ``ChangeList`` for a change list.

    The template reads ``page.<attribute>``; each query runs once, when the template first needs it.
    Raise Http404 for a path that is neither a discovered processor nor one with runs.
    """

    def __init__(
        self,
        model_admin: TaskAdmin,
        request: HttpRequest,
        path: str,
        form: forms.Form | None = None,
        *,
        count_config: dict[str, Any] | None = None,
        options: RunOptionsForm | None = None,
    ) -> None:
        self.path = path
        self.current_app = model_admin.admin_site.name
        self.processor = registry.processors().get(path)
        self.permitted = permitted_actions(request)
        runs = Run.objects.filter(task__processor=path).select_related("task")
        self.runs = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("p"))
        if self.processor is None and not self.runs.object_list:
            raise Http404(str(UnknownProcessor(f"Unknown processor {path!r}: no such processor and no runs of it.")))
        self.problem = ""  # why the processor cannot be started (its parameters cannot be used)
        try:
            if self.processor is not None:
                self.processor.parameters()
        except InvalidParameters as error:
            self.problem = str(error)
        self.can_start = self.processor is not None and "start" in self.permitted and not self.problem
        self.form = start_form(self.processor) if self.can_start and form is None else form
        self.options = RunOptionsForm(self.processor) if self.can_start and options is None else options
        # A runbook link (``?since=2025-01-01``) fills in the form a GET shows; it never starts anything.
        self.prefill_notes = prefill(self.form, request.GET) if self.form is not None and form is None else []
        self.can_view_schedules = request.user.has_perm("maintenance_tasks.view_schedule")
        self.count_config = count_config

    @property
    def title(self) -> str:
        return short_name(self.path)

    @property
    def error_count(self) -> int:
        """Return how many fields of the start form (parameters and run options) have errors."""
        return sum(len(form.errors) for form in (self.form, self.options) if form is not None)

    @cached_property
    def doc(self) -> str:
        """Return the processor's own docstring (not the base class's)."""
        if self.processor is None or self.processor.__doc__ is Processor.__doc__:
            return ""
        return (self.processor.__doc__ or "").strip()

    @property
    def count_requested(self) -> bool:
        """Return whether the user pressed *Count items*: a page view never counts (a full COUNT(*))."""
        return self.processor is not None and self.count_config is not None

    @cached_property
    def counted(self) -> tuple[int | None, str]:
        """Return the number of items to process with the posted config, or why not."""
        if self.processor is None or self.count_config is None:
            return None, ""
        if self.problem:
            return None, _("Not counted: the parameters cannot be used (see above).")
        return item_count(self.processor, self.count_config)

    @property
    def count(self) -> int | None:
        return self.counted[0]

    @property
    def count_note(self) -> str:
        return self.counted[1]

    @cached_property
    def deploy(self) -> dict[str, Any] | None:
        return deploy_state(self.path, self.processor)

    @cached_property
    def active_runs(self) -> list[tuple[Run, dict[str, Any]]]:
        """Return each active run with its progress and controls."""
        missing = self.processor is None
        return [
            (run, run_state(run, self.permitted, current_app=self.current_app, processor_missing=missing))
            for run in Run.objects.active().filter(task__processor=self.path).select_related("task")
        ]

    @cached_property
    def schedules(self) -> list[tuple[Schedule, str]]:
        """Return each schedule of the processor with when it runs next."""
        schedules = Schedule.objects.filter(task__processor=self.path).select_related("task")
        return [(schedule, describe_next_run(schedule)) for schedule in schedules]

    @property
    def page_range(self) -> Any:
        return self.runs.paginator.get_elided_page_range(self.runs.number, on_each_side=2, on_ends=1)


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
        if not self.has_view_permission(request):
            raise PermissionDenied  # before any lookup: the redirect would tell the processor's path
        task = get_object_or_404(Task, pk=object_id) if object_id.isdigit() else None
        if task is None:
            raise Http404(_("No maintenance task with id %(id)r.") % {"id": object_id})
        return HttpResponseRedirect(admin_url(self.admin_site.name, "processor", task.processor))

    def processor_view(self, request: HttpRequest, processor: str) -> HttpResponse:
        request.current_app = self.admin_site.name
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            can_start = request.user.has_perm(PERMISSIONS["start"])
            if "_count" in request.POST and not can_start and processor in registry.processors():
                # Counting starts nothing: the view permission is enough (with the default parameters).
                defaults = optional_defaults(registry.processors()[processor])
                return self.render_processor(request, processor, None, count_config=defaults)
            if not can_start:
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
        try:
            form = start_form(processor, request.POST, request.FILES)
        except InvalidParameters as error:
            self.message_user(request, f"{path_}: {error}", messages.ERROR)
            return self.render_processor(request, path_, None, status=400)
        options = RunOptionsForm(processor, request.POST)
        if not form.is_valid() or not options.is_valid():
            return self.render_processor(request, path_, form, status=400, options=options)
        config = form_config(form)
        if "_count" in request.POST:
            return self.render_processor(request, path_, form, count_config=config, options=options)
        dry_run, csv_file = options.cleaned_data["dry_run"], form.cleaned_data.get(CSV_FIELD)
        try:
            run = Runner.run(
                path_, config, metadata=admin_actor(request), dry_run=dry_run, csv_file=csv_file, **options.tuning()
            )
        except ValidationError as error:
            add_config_errors(form, error)
            return self.render_processor(request, path_, form, status=400, options=options)
        except MaintenanceTaskError as error:
            self.message_user(request, str(error), messages.ERROR)
            return self.render_processor(request, path_, form, status=409, options=options)
        started = (
            _("Started dry run %(id)s of %(name)s: now %(status)s.")
            if dry_run
            else _("Started run %(id)s of %(name)s: now %(status)s.")
        )
        message = started % {
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
        options: RunOptionsForm | None = None,
    ) -> HttpResponse:
        page = ProcessorPage(self, request, path_, form, count_config=count_config, options=options)
        context = self.context(request, title=page.title, page=page, next_url=request.get_full_path())
        return TemplateResponse(request, "admin/maintenance_tasks/task/processor.html", context, status=status)
