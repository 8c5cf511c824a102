"""Run: one execution of a task, and the one writer of its status (its audit trail: ``events``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models, transaction
from django.db.models import Case, F, Q, When
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from maintenance_tasks.actors import local_actor
from maintenance_tasks.batching import TUNING, validate_tuning
from maintenance_tasks.conf import app_settings, csv_storage
from maintenance_tasks.exceptions import ConcurrentChange, InvalidTransition, RunAlreadyActive, RunNotStuck
from maintenance_tasks.sensitive import masked_keys
from maintenance_tasks.status import (
    ACTIVE_STATUSES,
    CANCEL_TARGETS,
    COMPLETED_STATUSES,
    EXECUTING_STATUSES,
    FORCE_TARGETS,
    PAUSE_TARGETS,
    RESUMABLE_STATUSES,
    RESUME_TARGETS,
    RunStatus,
    can_transition,
)
from maintenance_tasks.writelock import write_when_free

from . import lifecycle
from .events import RunEvent
from .tasks import Task

#: What an errored run's audit trail keeps of its error when it is resumed (its fields are then cleared).
ERROR_DETAIL = ("error_class", "error_message", "backtrace", "cursor", "tick_count", "retries", "recoveries")
#: The fields a resumed errored run starts again with: no error, no retries nor recoveries counted.
REOPENED_FIELDS = {"error_class": "", "error_message": "", "backtrace": "", "retries": 0, "recoveries": 0}


@contextlib.contextmanager
def one_active_run(task: Task) -> Iterator[None]:
    """Turn the database's refusal of a second active run of ``task`` into RunAlreadyActive."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError:
        active = task.runs.active().values_list("pk", flat=True).first()
        if active is None:  # not the one-active-run constraint: a real error
            raise
        raise RunAlreadyActive(task, active) from None


class RunQuerySet(models.QuerySet["Run"]):
    def active(self) -> RunQuerySet:
        """Return runs that block a new run of their task."""
        return self.filter(status__in=ACTIVE_STATUSES)

    def completed(self) -> RunQuerySet:
        """Return runs that have ended."""
        return self.filter(status__in=COMPLETED_STATUSES)

    def resumable(self) -> RunQuerySet:
        """Return runs that can be resumed."""
        return self.filter(status__in=RESUMABLE_STATUSES)

    def executing(self) -> RunQuerySet:
        """Return runs an executor is (or should be) working on."""
        return self.filter(status__in=EXECUTING_STATUSES)

    def stale(self, now: Any = None) -> RunQuerySet:
        """Return executing runs whose executor has not been heard from for STALE_AFTER."""
        limit = (now or timezone.now()) - timedelta(seconds=app_settings.STALE_AFTER)
        return self.executing().filter(Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True))

    def unclaimed(self, now: Any = None) -> RunQuerySet:
        """Return enqueued runs nobody has claimed for STALE_AFTER, that wait neither for a slot nor a retry.

        Either their job waits behind others, or no job will ever come (a lost job, a foreground
        command killed before it claimed its run): the caller tells which from ``job_id``.
        """
        now = now or timezone.now()
        limit = now - timedelta(seconds=app_settings.STALE_AFTER)
        return self.filter(status=RunStatus.ENQUEUED, updated_at__lt=limit, waiting_since__isnull=True).filter(
            Q(retry_at__isnull=True) | Q(retry_at__lt=limit)
        )


class Run(models.Model):
    """One execution of a task: its status, cursor, progress, timings and errors."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="runs", verbose_name=_("task"))
    status = models.CharField(_("status"), max_length=16, choices=RunStatus, default=RunStatus.ENQUEUED)
    # The token of the current execution attempt: only the executor holding it may write.
    attempt = models.PositiveIntegerField(_("attempt"), default=0)
    cursor = models.TextField(_("cursor"), null=True, blank=True)  # noqa: DJ001 (None: not started)
    tick_count = models.BigIntegerField(_("processed"), default=0)
    tick_total = models.BigIntegerField(_("total"), null=True, blank=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(_("last heartbeat"), null=True, blank=True)
    # Set while an enqueued run waits for a free slot under MAX_CONCURRENT_RUNS (first come, first served).
    waiting_since = models.DateTimeField(_("waiting for a slot since"), null=True, blank=True)
    # Retries after errors in the processor's retry_on, and when the next one is due (if deferred).
    retries = models.PositiveIntegerField(_("retries"), default=0)
    retry_at = models.DateTimeField(_("retry at"), null=True, blank=True)
    # When the scheduler flagged the run as overdue (active longer than expected): once per run.
    overdue_flagged_at = models.DateTimeField(_("flagged overdue"), null=True, blank=True)
    time_running = models.FloatField(_("time running (s)"), default=0.0)
    # While a throttle condition holds (throttling.py): why and since when the run waits; and the seconds
    # it waited in all (throttled periods that ended).
    throttled_reason = models.CharField(_("throttled"), max_length=255, blank=True)
    throttled_since = models.DateTimeField(_("throttled since"), null=True, blank=True)
    throttled_seconds = models.FloatField(_("time throttled (s)"), default=0.0)
    # The tasks backend's id of the job that is to perform the run's next slice ("": none, or a
    # foreground command performs it).
    job_id = models.CharField(_("job id"), max_length=255, blank=True)
    # Recoveries in a row at the same cursor: past MAX_RECOVERIES the run errors instead of going round.
    recoveries = models.PositiveIntegerField(_("recoveries without progress"), default=0)
    recovered_cursor = models.TextField(null=True, blank=True, editable=False)  # noqa: DJ001 (the cursor then)
    # A dry run: every batch is rolled back; ``dry_run_report`` holds what it would have written.
    dry_run = models.BooleanField(_("dry run"), default=False)
    dry_run_report = models.JSONField(_("dry run report"), default=dict, blank=True, encoder=DjangoJSONEncoder)
    # Items skipped after errors in the processor's skip_on (each one a SkippedItem).
    skipped_count = models.PositiveBigIntegerField(_("items skipped"), default=0)
    # What the processor said: its last OUTPUT_LINES lines of ``self.log()`` (and how many were
    # dropped before them), its ``self.status`` line, and what ``on_complete()`` returned.
    output = models.JSONField(_("output"), default=list, blank=True, encoder=DjangoJSONEncoder)
    output_dropped = models.PositiveBigIntegerField(_("output lines dropped"), default=0)
    status_line = models.CharField(_("status line"), max_length=255, blank=True)
    result = models.JSONField(_("result"), null=True, blank=True, encoder=DjangoJSONEncoder)
    # The CSV file a run of a ``csv_collection`` processor reads, in the CSV_STORAGE storage; deleted with the run.
    csv_file = models.FileField(
        _("CSV file"), upload_to="maintenance_tasks/csv/%Y/%m/", storage=csv_storage, max_length=255, blank=True
    )
    # The run's own batch_size, batch_time and sleep_ratio (None: the processor's), changeable while it
    # goes on (``tune()``); and the batch sizes it used (latest, smallest, largest) and its commits.
    batch_size = models.PositiveIntegerField(_("batch size"), null=True, blank=True)
    batch_time = models.FloatField(_("batch time (s)"), null=True, blank=True)
    sleep_ratio = models.FloatField(_("sleep ratio"), null=True, blank=True)
    batch_size_latest = models.PositiveIntegerField(_("latest batch size"), null=True, blank=True)
    batch_size_min = models.PositiveIntegerField(_("smallest batch size"), null=True, blank=True)
    batch_size_max = models.PositiveIntegerField(_("largest batch size"), null=True, blank=True)
    commits = models.PositiveBigIntegerField(_("commits"), default=0)
    error_class = models.CharField(_("error class"), max_length=255, blank=True)
    error_message = models.TextField(_("error message"), blank=True)
    backtrace = models.TextField(_("backtrace"), blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    # The task id while the run is active, NULL otherwise: unique, so the database itself
    # refuses a second active run of a task (a portable partial unique constraint).
    active_task = models.GeneratedField(
        expression=Case(When(status__in=sorted(ACTIVE_STATUSES), then=F("task_id")), default=None),
        output_field=models.BigIntegerField(null=True),
        db_persist=True,
        unique=True,
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        verbose_name = _("maintenance run")
        verbose_name_plural = _("maintenance runs")
        ordering = ["-created_at", "-id"]
        default_permissions = ("view",)
        constraints = [
            models.CheckConstraint(condition=Q(status__in=RunStatus.values), name="maintenance_run_status_valid"),
        ]
        indexes = [
            models.Index(fields=["task", "-created_at"], name="maintenance_run_task_created"),
            models.Index(fields=["status"], name="maintenance_run_status"),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.task.name}"

    @property
    def shown_metadata(self) -> dict[str, Any]:
        """Return the metadata as pages and commands show it: values of sensitive keys as ``********``."""
        return masked_keys(self.metadata)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def progress(self) -> float | None:
        """Return the fraction done, between 0 and 1, or None without a total."""
        if self.status == RunStatus.SUCCEEDED:
            return 1.0
        if not self.tick_total:
            return None
        return min(1.0, self.tick_count / self.tick_total)

    @property
    def rate(self) -> float | None:
        """Return items per second over the time spent running."""
        if self.time_running <= 0:
            return None
        return self.tick_count / self.time_running

    @property
    def eta(self) -> timedelta | None:
        """Return the expected time left, from the rate so far."""
        rate = self.rate
        if not rate or not self.tick_total or self.status in COMPLETED_STATUSES:
            return None  # no total (or 0: more items came than were counted) gives no time left
        if self.tick_count > self.tick_total:
            return None  # more items than counted: how many are left is unknown
        return timedelta(seconds=max(0, self.tick_total - self.tick_count) / rate)

    # -- the one writer of ``status`` -----------------------------------------------------

    def transition_to(
        self,
        new: str,
        *,
        token: int | None = None,
        action: str | None = None,
        error: BaseException | None = None,
        **fields: Any,
    ) -> None:
        """Move to ``new`` if the state machine allows it and nobody changed the run meanwhile.

        Raise InvalidTransition (nothing written) if the move is not allowed from the status
        read, and ConcurrentChange if another process changed the status (or, with
        ``token``, the attempt) since it was read. An ended run made active again (an errored
        run resumed) has no ``ended_at``; RunAlreadyActive is raised if its task has another
        active run by then. Once the change commits, it is announced (``lifecycle``):
        ``error`` is what the run errored with.
        """
        old, first_claim = self.status, self.started_at is None
        if not can_transition(old, new):
            raise InvalidTransition(self.pk, old, new, action)
        now = timezone.now()
        fields.setdefault("updated_at", now)
        if new in COMPLETED_STATUSES:
            fields.setdefault("ended_at", now)
        elif old in COMPLETED_STATUSES:
            fields.setdefault("ended_at", None)
        rows = Run.objects.filter(pk=self.pk, status=old)
        if token is not None:
            rows = rows.filter(attempt=token)
        with one_active_run(self.task) if old in COMPLETED_STATUSES else contextlib.nullcontext():
            moved = rows.update(status=new, **fields)
        if not moved:
            raise ConcurrentChange(f"Run {self.pk} changed while it was being moved from {old} to {new}.")
        expressions = [name for name, value in fields.items() if hasattr(value, "resolve_expression")]
        for name, value in fields.items():
            if name not in expressions:
                setattr(self, name, value)
        self.status = new
        if expressions:
            self.refresh_from_db(fields=expressions)
        lifecycle.announce_change(self, old, new, first_claim=first_claim, error=error)

    def move_if_current(self, new: RunStatus, *, token: int, action: str, actor: dict[str, Any], **fields: Any) -> bool:
        """Move to ``new`` if the run still has its status and the attempt ``token``; log it; return whether it moved."""
        old = self.status
        try:
            with transaction.atomic():  # the change and its audit entry commit together, then are announced
                self.transition_to(new, token=token, action=action, **fields)
                RunEvent.objects.log(self, action, old, new, actor, attempt=token)
        except (ConcurrentChange, InvalidTransition):
            return False  # it moved on meanwhile
        return True

    # -- requests, built on transition_to (starting and resuming enqueue: see runner) --------

    def request(self, action: str, targets: dict[RunStatus, RunStatus], actor: dict[str, Any] | None = None) -> Run:
        """Move the run along ``targets`` (current status -> new) from the status it has now.

        Raise InvalidTransition when its status has no target, and ConcurrentChange when it
        kept changing under this request. The change is in the audit trail.
        """
        actor = actor or local_actor("python")
        for _attempt in range(5):
            self.refresh_from_db(fields=["status", "attempt", "heartbeat_at", "updated_at"])
            old = self.status
            if old not in targets:
                raise InvalidTransition(self.pk, old, "", action)
            try:
                write_when_free(partial(self._request_once, old, targets[RunStatus(old)], action, actor))
            except ConcurrentChange:
                continue
            return self
        raise ConcurrentChange(f"Run {self.pk} kept changing; try again.")

    def _request_once(self, old: str, new: str, action: str, actor: dict[str, Any]) -> None:
        """Move the run from ``old`` to ``new`` and record who asked, in one transaction.

        An errored run that is resumed starts again with no error, retries nor recoveries
        counted: its audit entry keeps the error, with the cursor and counts it had then.
        """
        fields: dict[str, Any] = {}
        detail: dict[str, Any] = {}
        if old == RunStatus.ERRORED:
            detail = Run.objects.select_for_update().filter(pk=self.pk).values(*ERROR_DETAIL).get()
            fields = REOPENED_FIELDS
        self.transition_to(new, action=action, **fields)
        RunEvent.objects.log(self, action, old, self.status, actor, **detail)

    def pause(self, *, actor: dict[str, Any] | None = None) -> Run:
        """Ask the run to pause: at once if nothing runs it, else after the current batch."""
        return self.request("pause", PAUSE_TARGETS, actor)

    def cancel(self, *, actor: dict[str, Any] | None = None) -> Run:
        """Ask the run to stop for good: at once if nothing runs it, else after the current batch."""
        return self.request("cancel", CANCEL_TARGETS, actor)

    def tune(
        self,
        *,
        batch_size: int | None = None,
        batch_time: float | None = None,
        sleep_ratio: float | None = None,
        actor: dict[str, Any] | None = None,
    ) -> Run:
        """Set the run's own batch_size, batch_time and sleep_ratio (None: the processor's), in the audit trail.

        Raise ValidationError for a bad value and InvalidTransition when the run has ended; its
        executor takes the new values at its next commit (within about CHECKPOINT_INTERVAL).
        """
        validate_tuning(batch_size, batch_time, sleep_ratio)
        new = dict(zip(TUNING, (batch_size, batch_time, sleep_ratio), strict=True))

        def tune() -> None:
            status, *old = Run.objects.select_for_update().values_list("status", *TUNING).get(pk=self.pk)
            if status not in ACTIVE_STATUSES:
                raise InvalidTransition(self.pk, status, "", "tune it")
            Run.objects.filter(pk=self.pk).update(**new)
            self.status = status
            for name, value in new.items():
                setattr(self, name, value)
            detail = {name: [before, new[name]] for name, before in zip(TUNING, old, strict=True)}
            RunEvent.objects.log(self, "tune", status, status, actor or local_actor("python"), **detail)

        write_when_free(tune)
        return self

    def read_tuning(self) -> tuple[Any, ...]:
        """Return the run's own batch_size, batch_time and sleep_ratio as stored now (None: the processor's)."""
        return Run.objects.values_list(*TUNING).get(pk=self.pk)

    def is_stuck(self, now: Any = None) -> bool:
        """Return whether the run has waited in pausing/cancelling, unchanged, for STUCK_AFTER."""
        if self.status not in FORCE_TARGETS:
            return False
        age = ((now or timezone.now()) - self.updated_at).total_seconds()
        return age >= app_settings.STUCK_AFTER

    def force_stop(self, *, actor: dict[str, Any] | None = None) -> Run:
        """Force a run stuck in pausing/cancelling to paused/cancelled without waiting for its executor.

        Only after STUCK_AFTER without any change (RunNotStuck otherwise). The attempt token
        moves on, so an executor that is still alive can no longer commit nor move the cursor.
        """
        actor = actor or local_actor("python")
        self.refresh_from_db(fields=["status", "attempt", "updated_at"])
        old = self.status
        if old not in FORCE_TARGETS:
            raise InvalidTransition(self.pk, old, "", "force it")
        if not self.is_stuck():
            waited = (timezone.now() - self.updated_at).total_seconds()
            raise RunNotStuck(
                f"Run {self.pk} has been {old} for {waited:.0f}s: it can be forced only after "
                f"STUCK_AFTER ({app_settings.STUCK_AFTER:.0f}s)."
            )

        def force() -> None:
            self.transition_to(FORCE_TARGETS[RunStatus(old)], attempt=F("attempt") + 1, action="force it")
            RunEvent.objects.log(self, "force", old, self.status, actor, attempt=self.attempt)

        write_when_free(force)
        return self

    def available_actions(self) -> list[str]:
        """Return the requests the run's current status allows: pause, resume, cancel, force."""
        actions = []
        if self.status in PAUSE_TARGETS:
            actions.append("pause")
        if self.status in RESUME_TARGETS:
            actions.append("resume")
        if self.status in CANCEL_TARGETS:
            actions.append("cancel")
        if self.is_stuck():
            actions.append("force")
        return actions
