"""The run pages: the searchable history, a page per run with its controls, the progress endpoint."""

from __future__ import annotations

import os
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from maintenance_tasks import batching, dryrun, skipping
from maintenance_tasks.actors import admin_actor, describe
from maintenance_tasks.exceptions import MaintenanceTaskError, UnknownProcessor
from maintenance_tasks.jobs import perform_run
from maintenance_tasks.models import Run, Task
from maintenance_tasks.registry import registry, short_name
from maintenance_tasks.runner import Runner
from maintenance_tasks.status import RunStatus
from maintenance_tasks.workers import backend_label

from .display import (
    ACTION_LABELS,
    PERMISSIONS,
    ReadOnlyAdmin,
    admin_url,
    output_state,
    permitted_actions,
    run_state,
    throttled_reason,
)
from .forms import TuningForm


class ProcessorFilter(admin.SimpleListFilter):
    """Filter runs by processor: every discovered one."""

    title = gettext_lazy("processor")
    parameter_name = "processor"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(path_, short_name(path_)) for path_ in registry.processors()]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value():
            return queryset.filter(task__processor=self.value())
        return queryset


class RunAdmin(ReadOnlyAdmin):
    """Maintenance runs: a searchable history, a page per run with its controls."""

    list_display = ("id", "task_name", "status_badge", "progress_display", "started_at", "ended_at", "started_by")
    list_display_links = ("id", "task_name")
    list_filter = ("status", ProcessorFilter, "dry_run")
    date_hierarchy = "created_at"
    search_fields = ("task__processor", "=id")
    list_select_related = ("task",)
    list_per_page = 50
    show_full_result_count = False
    #: The skipped items listed on a run's page (all of them are in its CSV download).
    SKIPPED_SHOWN = 100

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or request.user.has_perm("maintenance_tasks.view_task")

    @admin.display(description=gettext_lazy("task"), ordering="task__processor")
    def task_name(self, run: Run) -> str:
        return str(run.task)

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_badge(self, run: Run) -> str:
        label = RunStatus(run.status).label
        if reason := throttled_reason(run):
            label = format_html('{} <span class="mt-throttled" title="{}">{}</span>', label, reason, _("throttled"))
        if run.dry_run:
            return format_html('{} <span class="mt-dry-run">{}</span>', label, _("dry run"))
        return label

    @admin.display(description=gettext_lazy("progress"))
    def progress_display(self, run: Run) -> str:
        return run_state(run, set(), current_app=self.admin_site.name)["count_text"]

    @admin.display(description=gettext_lazy("started by"))
    def started_by(self, run: Run) -> str:
        return describe(run.metadata)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:run_id>/progress/", view(self.progress_view), name="maintenance_tasks_run_progress"),
            path("<int:run_id>/csv/", view(self.csv_view), name="maintenance_tasks_run_csv"),
            path("<int:run_id>/skipped/", view(self.skipped_view), name="maintenance_tasks_run_skipped"),
            path("<int:run_id>/tune/", view(self.tune_view), name="maintenance_tasks_run_tune"),
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

    def state(self, request: HttpRequest, run: Run) -> dict[str, Any]:
        """Return the run's progress, its output and the controls this user may see, within this site."""
        missing = run.task.processor not in registry.processors()
        state = run_state(run, permitted_actions(request), current_app=self.admin_site.name, processor_missing=missing)
        return {**state, **output_state(run)}

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        request.current_app = self.admin_site.name
        if not object_id.isdigit():
            raise Http404(_("No maintenance run with id %(id)r.") % {"id": object_id})
        run = self.get_run(request, object_id)
        skipped = list(skipping.skipped_rows(run)[: self.SKIPPED_SHOWN + 1]) if run.skipped_count else []
        context = self.page_context(
            request,
            task_opts=Task._meta,
            title=str(run),
            run=run,
            state=self.state(request, run),
            processor=registry.processors().get(run.task.processor),
            started_by=describe(run.metadata),
            tasks_backend=backend_label(perform_run.get_backend()),
            events=[(event, describe(event.detail)) for event in run.events.all()],
            dry_run_writes=dryrun.writes(run.dry_run_report) if run.dry_run else [],
            csv_file=self.csv_file(run),
            skipped_items=skipped[: self.SKIPPED_SHOWN],
            more_skipped=len(skipped) > self.SKIPPED_SHOWN,
            batches=batching.describe(run),
            own_tuning=batching.describe_own(run),
            tune_form=self.tune_form(request, run),
            next_url=request.get_full_path(),
        )
        return TemplateResponse(request, "admin/maintenance_tasks/run/detail.html", context)

    @staticmethod
    def csv_file(run: Run) -> dict[str, Any] | None:
        """Return the name and size (None: gone from its storage) of the CSV file the run reads, if any."""
        if not run.csv_file:
            return None
        try:
            size = run.csv_file.size
        except OSError:
            size = None
        return {"name": os.path.basename(run.csv_file.name), "size": size}

    def csv_view(self, request: HttpRequest, run_id: int) -> FileResponse:
        """Send the run's CSV file, streamed, to a user who may view the run."""
        request.current_app = self.admin_site.name
        run = self.get_run(request, run_id)
        try:
            if not run.csv_file:
                raise FileNotFoundError
            file = run.csv_file.storage.open(run.csv_file.name, "rb")
        except OSError:
            raise Http404(_("Run %(id)s has no CSV file in its storage.") % {"id": run.pk}) from None
        name = os.path.basename(run.csv_file.name)
        return FileResponse(file, as_attachment=True, filename=name, content_type="text/csv")

    def skipped_view(self, request: HttpRequest, run_id: int) -> StreamingHttpResponse:
        """Send the items the run skipped as a CSV file, streamed, to a user who may view the run."""
        request.current_app = self.admin_site.name
        run = self.get_run(request, run_id)
        response = StreamingHttpResponse(skipping.csv_lines(run), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-skipped.csv"'
        return response

    @staticmethod
    def tune_form(request: HttpRequest, run: Run) -> TuningForm | None:
        """Return the form to tune an active run, for a user who may pause it (None otherwise)."""
        if not run.is_active or not request.user.has_perm(PERMISSIONS["pause"]):
            return None
        return TuningForm(initial={name: getattr(run, name) for name in batching.TUNING})

    def tune_view(self, request: HttpRequest, run_id: int) -> HttpResponse:
        """Set an active run's own batch size and batch time (POST): its executor takes them at its next commit."""
        request.current_app = self.admin_site.name
        return require_POST(self.tune)(request, run_id)

    def tune(self, request: HttpRequest, run_id: int) -> HttpResponse:
        if not request.user.has_perm(PERMISSIONS["pause"]):
            raise PermissionDenied
        run = self.get_run(request, run_id)
        form = TuningForm(request.POST)
        try:
            if not form.is_valid():
                raise ValidationError([message for messages_ in form.errors.values() for message in messages_])
            run.tune(**form.tuning(), actor=admin_actor(request))
        except ValidationError as error:
            self.message_user(
                request,
                _("Run %(id)s not tuned: %(error)s") % {"id": run.pk, "error": " ".join(error.messages)},
                messages.ERROR,
            )
        except MaintenanceTaskError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            message = _("Tuned run %(id)s: batch size %(size)s, batch time %(time)s, sleep ratio %(ratio)s.") % {
                "id": run.pk,
                "size": run.batch_size or _("the processor's"),
                "time": _("%(s)ss") % {"s": run.batch_time} if run.batch_time else _("the processor's"),
                "ratio": _("the processor's") if run.sleep_ratio is None else f"{run.sleep_ratio:g}",
            }
            self.log_change(request, run, message)
            self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(admin_url(self.admin_site.name, "run_change", run.pk))

    def progress_view(self, request: HttpRequest, run_id: int) -> JsonResponse:
        request.current_app = self.admin_site.name
        state = self.state(request, self.get_run(request, run_id))
        del state["controls"]  # the page has the forms; the JSON says which to show
        return JsonResponse(state)

    def action_view(self, request: HttpRequest, run_id: int, action: str) -> HttpResponse:
        request.current_app = self.admin_site.name
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
            next_url = admin_url(self.admin_site.name, "run_change", run.pk)
        return HttpResponseRedirect(next_url)
