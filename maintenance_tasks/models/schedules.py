"""Schedule (when a task runs by itself) and SchedulerState (the scheduler's job chain)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from maintenance_tasks.cron import next_cron, validate_cron

from .runs import Run
from .tasks import Task


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
        validators=[validate_cron],
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
    # Who last set what it runs and when (the admin actor): the runs it starts name them.
    changed_by = models.JSONField(_("changed by"), default=dict, blank=True, encoder=DjangoJSONEncoder)
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
        """Refuse both or neither of cron and run_at, and a run_at in the past (``cron`` has its validator)."""
        self.cron = " ".join(self.cron.split())
        if self.cron and self.run_at:
            raise ValidationError({"run_at": _("Give either a cron expression or a time to run at, not both.")})
        if not self.cron and not self.run_at:
            raise ValidationError({"cron": _("Give a cron expression or a time to run at.")})
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
        if self.cron:
            return next_cron(self.cron, now)
        return None

    def reschedule(self, now: datetime, changed: Collection[str] = ()) -> None:
        """Set the next due time of a new schedule, or of one whose ``changed`` fields move it.

        A cron schedule is next due after ``now``. A one-off schedule is due at ``run_at`` until
        it has run (a paused one that is due runs now), or again when ``run_at`` changed.
        """
        if self.cron:
            self.next_run_at = self.following(now)
        elif self.last_run_at is None or "run_at" in changed:
            self.next_run_at = self.run_at
        else:
            self.next_run_at = None  # a one-off schedule that has run

    def resume(self, now: datetime) -> None:
        """Enable a paused schedule and save it: a cron schedule goes on from now, with no catching up."""
        self.enabled = True
        if self.cron:
            self.next_run_at = self.following(now)
        self.save(update_fields=["enabled", "next_run_at", "updated_at"])


class SchedulerState(models.Model):
    """One row: when runs were last pruned (the scheduler's job chain is a ``JobChain``)."""

    last_pruned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"scheduler (last pruned {self.last_pruned_at})"
