"""Task (a processor with one config) and Run (one execution of a task)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Case, F, Q, When
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .exceptions import ConcurrentChange, InvalidTransition
from .status import (
    ACTIVE_STATUSES,
    COMPLETED_STATUSES,
    EXECUTING_STATUSES,
    RESUMABLE_STATUSES,
    RunStatus,
    can_transition,
)

if TYPE_CHECKING:
    from .processor import Processor


def canonical_json(config: dict[str, Any]) -> str:
    """Return the one JSON text of a config: sorted keys, no spaces."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)


class Task(models.Model):
    """A processor with one config. The same pair is one row."""

    processor = models.CharField(_("processor"), max_length=255, db_index=True)
    config = models.JSONField(_("config"), default=dict, blank=True)
    # JSON columns cannot be unique on every database; the digest of the canonical text can.
    config_digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("maintenance task")
        verbose_name_plural = _("maintenance tasks")
        constraints = [
            models.UniqueConstraint(fields=["processor", "config_digest"], name="maintenance_task_unique_config"),
        ]
        default_permissions = ("view",)
        permissions = [
            ("start_run", _("Can start maintenance runs")),
            ("pause_run", _("Can pause and resume maintenance runs")),
            ("cancel_run", _("Can cancel maintenance runs")),
        ]

    def __str__(self) -> str:
        if not self.config:
            return self.processor
        return f"{self.processor} {canonical_json(self.config)}"

    @staticmethod
    def digest(config: dict[str, Any]) -> str:
        return hashlib.sha256(canonical_json(config).encode()).hexdigest()

    @property
    def name(self) -> str:
        return self.processor.rsplit(".", 1)[-1]

    def build_processor(self) -> Processor:
        """Return the processor instance this task runs (resolved through the registry)."""
        from .registry import registry

        return registry.get(self.processor).from_config(self.config)


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

    def stale(self, now: Any = None) -> RunQuerySet:
        """Return executing runs whose executor has not been heard from for STALE_AFTER."""
        from .conf import app_settings

        limit = (now or timezone.now()) - timedelta(seconds=app_settings.STALE_AFTER)
        return self.filter(status__in=EXECUTING_STATUSES).filter(
            Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True)
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
    # When the scheduler flagged the run as stuck (active longer than expected): once per run.
    stuck_flagged_at = models.DateTimeField(_("flagged stuck"), null=True, blank=True)
    time_running = models.FloatField(_("time running (s)"), default=0.0)
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

    # -- derived progress -----------------------------------------------------------------

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
        if not rate or self.tick_total is None or self.status in COMPLETED_STATUSES:
            return None
        return timedelta(seconds=max(0, self.tick_total - self.tick_count) / rate)

    # -- the one writer of ``status`` -----------------------------------------------------

    def transition_to(self, new: str, *, token: int | None = None, action: str | None = None, **fields: Any) -> None:
        """Move to ``new`` if the state machine allows it and nobody changed the run meanwhile.

        Raise InvalidTransition (nothing written) if the move is not allowed from the status
        read, and ConcurrentChange if another process changed the status (or, with
        ``token``, the attempt) since it was read.
        """
        old = self.status
        if not can_transition(old, new):
            raise InvalidTransition(self.pk, old, new, action)
        now = timezone.now()
        fields.setdefault("updated_at", now)
        if new in COMPLETED_STATUSES:
            fields.setdefault("ended_at", now)
        rows = Run.objects.filter(pk=self.pk, status=old)
        if token is not None:
            rows = rows.filter(attempt=token)
        if not rows.update(status=new, **fields):
            raise ConcurrentChange(f"Run {self.pk} changed while it was being moved from {old} to {new}.")
        expressions = [name for name, value in fields.items() if hasattr(value, "resolve_expression")]
        for name, value in fields.items():
            if name not in expressions:
                setattr(self, name, value)
        self.status = new
        if expressions:
            self.refresh_from_db(fields=expressions)

    # -- requests (the admin and the commands use these) ----------------------------------

    def pause(self, *, actor: dict[str, Any] | None = None) -> Run:
        """Ask the run to pause after its current batch."""
        from .runner import Runner

        return Runner.pause(self, actor=actor)

    def resume(self, *, actor: dict[str, Any] | None = None) -> Run:
        """Hand a paused or interrupted run back to the executor; it goes on from its cursor."""
        from .runner import Runner

        return Runner.resume(self, actor=actor)

    def cancel(self, *, actor: dict[str, Any] | None = None) -> Run:
        """Ask the run to stop for good after its current batch."""
        from .runner import Runner

        return Runner.cancel(self, actor=actor)


class Lock(models.Model):
    """A named row that a transaction updates first to take turns with other processes.

    An UPDATE locks the row until commit on PostgreSQL and MySQL, and takes the write lock
    on SQLite, so a check made after it cannot race with the same check elsewhere.
    """

    name = models.CharField(primary_key=True, max_length=64)
    taken_at = models.DateTimeField(null=True)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return self.name

    @classmethod
    def take(cls, name: str) -> None:
        """Hold the lock ``name`` until the current transaction ends."""
        if not cls.objects.filter(name=name).update(taken_at=timezone.now()):
            cls.objects.get_or_create(name=name)
            cls.objects.filter(name=name).update(taken_at=timezone.now())


class ScheduleSource(models.TextChoices):
    """Where a schedule comes from: a processor's ``schedule`` attribute, or the admin."""

    CODE = "code", _("Code")
    ADMIN = "admin", _("Admin")


class Schedule(models.Model):
    """When a task runs by itself: on a cron expression, or once at ``run_at``.

    ``next_run_at`` is the next due time (None: nothing more to do). The scheduler moves it
    with a conditional update, so each due time starts one run whatever the number of schedulers.
    """

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="schedules", verbose_name=_("task"))
    cron = models.CharField(
        _("cron expression"),
        max_length=100,
        blank=True,
        help_text=_("Five fields: minute hour day-of-month month day-of-week, in the site's time zone."),
    )
    run_at = models.DateTimeField(_("run at"), null=True, blank=True, help_text=_("Run once at this time."))
    enabled = models.BooleanField(_("enabled"), default=True, help_text=_("Untick to pause the schedule."))
    next_run_at = models.DateTimeField(_("next run"), null=True, blank=True, db_index=True)
    last_run = models.ForeignKey(
        Run, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("last run")
    )
    last_run_at = models.DateTimeField(_("last started"), null=True, blank=True)
    source = models.CharField(_("source"), max_length=8, choices=ScheduleSource, default=ScheduleSource.ADMIN)
    # The processor path of a code schedule (NULL for the admin's): unique, so that deploy hooks
    # syncing at once on several hosts create one schedule, not two.
    code_processor = models.CharField(max_length=255, null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("maintenance schedule")
        verbose_name_plural = _("maintenance schedules")
        ordering = ["next_run_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(cron="") & Q(run_at__isnull=False)) | (~Q(cron="") & Q(run_at__isnull=True)),
                name="maintenance_schedule_cron_or_run_at",
            ),
            models.CheckConstraint(condition=Q(source__in=ScheduleSource.values), name="maintenance_schedule_source"),
        ]

    def __str__(self) -> str:
        return f"{self.task.name}, {self.timing}"

    @property
    def timing(self) -> str:
        if self.cron:
            return f"cron {self.cron}"
        return f"at {self.run_at.isoformat() if self.run_at else '?'}"

    def clean(self) -> None:
        """Refuse a bad cron expression, both or neither of cron and run_at, and a run_at in the past."""
        from .scheduling import cron_error

        self.cron = " ".join(self.cron.split())
        if self.cron and self.run_at:
            raise ValidationError({"run_at": _("Give either a cron expression or a time to run at, not both.")})
        if not self.cron and not self.run_at:
            raise ValidationError({"cron": _("Give a cron expression or a time to run at.")})
        if self.cron and (error := cron_error(self.cron)):
            raise ValidationError({"cron": error})
        if self.run_at and self.run_at <= timezone.now() and self.run_at != getattr(self, "_loaded_run_at", None):
            raise ValidationError({"run_at": _("This time is in the past.")})

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any, **kwargs: Any) -> Schedule:
        schedule = super().from_db(db, field_names, values, **kwargs)
        schedule._loaded_run_at = schedule.__dict__.get("run_at")
        return schedule

    def first_due(self, now: datetime) -> datetime | None:
        """Return the due time of a new or changed schedule."""
        return self.run_at if not self.cron else self.following(now)

    def following(self, now: datetime) -> datetime | None:
        """Return the first due time after ``now`` (None: a one-off schedule, or nothing left)."""
        from .scheduling import next_cron

        if self.cron:
            return next_cron(self.cron, now)
        return None

    def reschedule(self, now: datetime, changed: tuple[str, ...] | list[str] = ()) -> None:
        """Set ``next_run_at`` of a new schedule, or of one whose ``changed`` fields move it (not saved)."""
        if self.cron:
            self.next_run_at = self.following(now)
        elif self.last_run_at is None or "run_at" in changed:
            self.next_run_at = self.run_at  # not run yet (a paused one that is due runs now)
        else:
            self.next_run_at = None  # a one-off schedule that has run

    def resume(self, now: datetime) -> None:
        """Enable and save the schedule; a cron schedule goes on from ``now``, without catching up."""
        self.enabled = True
        if self.cron:
            self.next_run_at = self.following(now)
        self.save(update_fields=["enabled", "next_run_at", "updated_at"])


class SchedulerState(models.Model):
    """One row: the scheduler's self-re-enqueuing job (by token) and when runs were last pruned."""

    # Only the job holding the current token re-enqueues itself: a duplicate or old job stops.
    token = models.PositiveIntegerField(default=0)
    next_tick_at = models.DateTimeField(null=True, blank=True)
    last_pruned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"scheduler (token {self.token})"

    @classmethod
    def get(cls) -> SchedulerState:
        state, _ = cls.objects.get_or_create(pk=1)
        return state


class RunEvent(models.Model):
    """One entry of a run's audit trail: who did what, when, from where."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    action = models.CharField(max_length=32)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    source = models.CharField(max_length=16, blank=True)  # admin, cli, python, deploy, engine
    user = models.CharField(max_length=150, blank=True)
    detail = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["created_at", "id"]
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.action} by {self.user or self.source}"


def record(
    run: Run, action: str, from_status: str, to_status: str, actor: dict[str, Any] | None, **detail: Any
) -> RunEvent:
    """Add an entry to the run's audit trail."""
    actor = actor or {}
    return RunEvent.objects.create(
        run=run,
        action=action,
        from_status=from_status,
        to_status=to_status,
        source=str(actor.get("source", ""))[:16],
        user=str(actor.get("user", ""))[:150],
        detail={**actor, **detail},
    )


class DeployState(models.TextChoices):
    """What the deploy hook knows of a task whose processor runs on deploy."""

    NEW = "new", _("Not run yet")
    STARTED = "started", _("Started")
    DONE = "done", _("Done")
    SKIPPED = "skipped", _("Skipped")


class DeployRecord(models.Model):
    """The deploy hook's row for one task: the run it counts, and whether the task is done.

    One row per task. The hook locks it while it decides, so that concurrent hooks (a rolling
    deploy) start a run-once task once, and never again after its run succeeded.
    """

    task = models.OneToOneField(Task, on_delete=models.CASCADE, related_name="deploy_record", verbose_name=_("task"))
    state = models.CharField(_("state"), max_length=16, choices=DeployState, default=DeployState.NEW)
    # The latest run the hook started or found; None when reset or never run.
    run = models.ForeignKey(
        Run, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("run")
    )
    deploy_id = models.CharField(_("deploy id"), max_length=100, blank=True)
    changed_at = models.DateTimeField(_("changed"), auto_now=True)
    changed_by = models.JSONField(_("changed by"), default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        verbose_name = _("deploy record")
        verbose_name_plural = _("deploy records")
        default_permissions = ("view",)
        constraints = [
            models.CheckConstraint(condition=Q(state__in=DeployState.values), name="maintenance_deploy_state_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.task}: {self.state}"
