"""SkippedItem: an item (or a whole batch) a run skipped after an error in its processor's ``skip_on``."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .runs import Run


class SkippedItem(models.Model):
    """One item a run skipped, or a batch of them (``items`` > 1): where it is, and the error it raised.

    ``item_key`` is the source's cursor at the item, as the run's cursor would name the position
    after it: ``[42]`` for the QuerySet row of primary key 42 (its ``cursor_columns`` values, as a
    JSON list), ``7`` for the 7th item of a list or iterable, ``"<byte offset>:<lines>"`` for a CSV
    row. A batch skipped as a whole also has the key of its last item, ``last_key``.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="skipped_items", verbose_name=_("run"))
    item_key = models.TextField(_("item key"))
    last_key = models.TextField(_("last item key"), blank=True)
    items = models.PositiveIntegerField(_("items"), default=1)
    error_class = models.CharField(_("error class"), max_length=255)
    error_message = models.TextField(_("error message"), blank=True)
    created_at = models.DateTimeField(_("skipped at"), auto_now_add=True)

    class Meta:
        verbose_name = _("skipped item")
        verbose_name_plural = _("skipped items")
        ordering = ["run", "id"]
        default_permissions = ()
        indexes = [models.Index(fields=["run", "id"], name="maintenance_skipped_run")]

    def __str__(self) -> str:
        key = f"{self.item_key}..{self.last_key}" if self.last_key else self.item_key
        return f"{key}: {self.error_class}"
