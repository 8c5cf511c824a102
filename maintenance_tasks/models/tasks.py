"""Task: a processor with one config."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils.translation import gettext_lazy as _

from maintenance_tasks.registry import registry, short_name
from maintenance_tasks.sensitive import masked, secret_values, sensitive_names

if TYPE_CHECKING:
    from maintenance_tasks.processor import Processor


def canonical_json(config: dict[str, Any]) -> str:
    """Return the one JSON text of a config: sorted keys, no spaces."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)


class TaskQuerySet(models.QuerySet["Task"]):
    def for_config(self, processor_path: str, config: dict[str, Any]) -> Task:
        """Return the task of this processor with this canonical config, created if needed."""
        task, _ = self.get_or_create(
            processor=processor_path, config_digest=Task.digest(config), defaults={"config": config}
        )
        return task

    def find(self, processor_path: str, config: dict[str, Any]) -> Task | None:
        """Return the task of this processor with this canonical config, if it exists (no writes)."""
        return self.filter(processor=processor_path, config_digest=Task.digest(config)).first()


class Task(models.Model):
    """A processor with one config. The same pair is one row."""

    processor = models.CharField(_("processor"), max_length=255, db_index=True)
    config = models.JSONField(_("config"), default=dict, blank=True)
    # JSON columns cannot be unique on every database; the digest of the canonical text can.
    config_digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = TaskQuerySet.as_manager()

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
        return f"{self.processor} {canonical_json(self.shown_config)}"

    @property
    def sensitive_names(self) -> frozenset[str]:
        """Return the parameters of the config whose values are shown masked (see ``sensitive``)."""
        return sensitive_names(registry.processors().get(self.processor), self.config)

    @property
    def shown_config(self) -> dict[str, Any]:
        """Return the config as pages, commands and logs show it: sensitive values as ``********``."""
        return masked(self.config, self.sensitive_names)

    @property
    def secrets(self) -> list[str]:
        """Return the texts of the config's sensitive values, to mask in error messages and backtraces."""
        return secret_values(self.config, self.sensitive_names)

    @staticmethod
    def digest(config: dict[str, Any]) -> str:
        return hashlib.sha256(canonical_json(config).encode()).hexdigest()

    @property
    def name(self) -> str:
        return short_name(self.processor)

    def build_processor(self) -> Processor:
        """Return the processor instance this task runs (resolved through the registry)."""
        return registry.get(self.processor).from_config(self.config)
