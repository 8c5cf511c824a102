"""DeployRecord: what the deploy hook knows of each task that runs on deploy."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .runs import Run
from .tasks import Task


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
