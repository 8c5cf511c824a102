"""RunEvent: one entry of a run's audit trail (who did what, when, from where)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from maintenance_tasks.sensitive import masked_keys

if TYPE_CHECKING:
    from .runs import Run


class RunEventQuerySet(models.QuerySet["RunEvent"]):
    def log(
        self, run: Run, action: str, from_status: str, to_status: str, actor: dict[str, Any] | None, **detail: Any
    ) -> RunEvent:
        """Add an entry to the run's audit trail (values of sensitive keys masked: it is for display)."""
        actor = actor or {}
        return self.create(
            run=run,
            action=action,
            from_status=from_status,
            to_status=to_status,
            source=str(actor.get("source", ""))[:16],
            user=str(actor.get("user", ""))[:150],
            detail=masked_keys({**actor, **detail}),
        )


class RunEvent(models.Model):
    """One entry of a run's audit trail: who did what, when, from where."""

    run = models.ForeignKey("Run", on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    action = models.CharField(max_length=32)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    source = models.CharField(max_length=16, blank=True)  # admin, cli, python, deploy, engine
    user = models.CharField(max_length=150, blank=True)
    detail = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    objects = RunEventQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.action} by {self.user or self.source}"
