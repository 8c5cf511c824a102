"""Checkpoint: a run's position, kept on the database its processor writes to."""

from __future__ import annotations

from django.db import models


class Checkpoint(models.Model):
    """The cursor of a run whose batches commit on another database, written in each batch's transaction there.

    It lives on that database (``migrate --database <alias>``), so it holds the run's id as a
    plain integer: a foreign key cannot cross databases. ``attempt`` is the attempt token of the
    executor that holds the run: a batch commits only while it is still that one's.
    """

    run_id = models.BigIntegerField(unique=True)
    attempt = models.PositiveIntegerField(default=0)
    cursor = models.TextField(null=True, blank=True)  # noqa: DJ001 (None: not started, as Run.cursor)
    tick_count = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"run {self.run_id} at {self.tick_count}"
