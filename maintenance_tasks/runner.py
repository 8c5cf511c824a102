"""``Runner``: start runs and change them; the one place the admin, the commands and Python go through.

The state changes themselves are the run's (``Run.pause()``, ``Run.cancel()``, ...); what puts
work on the queue is ``jobs``. The runner ties them together: validate, create, change, enqueue.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from . import jobs, slots
from .actors import local_actor
from .conf import app_settings
from .exceptions import RunAlreadyActive, RunNotResumable
from .models import Run, RunEvent, Task
from .processor import Processor
from .registry import registry
from .status import RESUME_TARGETS, RunStatus


class Runner:
    """Start, pause, resume, cancel, force and recover runs."""

    @staticmethod
    def run(
        processor: str | type[Processor],
        config: dict[str, Any] | None = None,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> Run:
        """Validate the config, create the task if needed and a run, and put it on the queue.

        Raise ValidationError for a bad config and RunAlreadyActive when the task already has
        an active run; nothing is saved then.
        """
        run = Runner.create(processor, config, metadata=metadata)
        jobs.enqueue(run)
        run.refresh_from_db()
        return run

    @staticmethod
    def create(
        processor: str | type[Processor],
        config: dict[str, Any] | None = None,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> Run:
        """Validate, then save an enqueued run without putting it on the queue (the caller performs it)."""
        path = registry.path_of(processor)
        jobs.slice_job(registry.get(path))  # a queue the backend refuses is an error now, not at commit
        canonical = registry.get(path).from_config(config).config
        metadata = metadata if metadata is not None else local_actor("python")
        with transaction.atomic():
            task = Task.objects.for_config(path, canonical)
            try:
                with transaction.atomic():
                    run = Run.objects.create(task=task, metadata=metadata)
            except IntegrityError:
                active = task.runs.active().values_list("pk", flat=True).first()
                raise RunAlreadyActive(task, active) from None
            RunEvent.objects.log(run, "created", "", RunStatus.ENQUEUED, metadata)
        return run

    @staticmethod
    def resume(run: Run, *, actor: dict[str, Any] | None = None, force: bool = False, execute: bool = True) -> Run:
        """Enqueue a paused or interrupted run again; it goes on from its cursor.

        A run still marked running is taken over only when its heartbeat is older than
        STALE_AFTER (its executor died), or with ``force``. Its old executor, if alive,
        can no longer commit. With ``execute=False`` the caller performs it.
        """
        run.refresh_from_db(fields=["status", "heartbeat_at"])
        if execute:
            jobs.route(run)  # a queue the backend refuses is an error now, before the run moves
        targets = dict(RESUME_TARGETS)
        if run.status == RunStatus.RUNNING:
            age = (timezone.now() - run.heartbeat_at).total_seconds() if run.heartbeat_at else None
            if not force and age is not None and age < app_settings.STALE_AFTER:
                raise RunNotResumable(
                    f"Run {run.pk} is running (last heartbeat {age:.0f}s ago). If its process is gone, "
                    f"wait until STALE_AFTER ({app_settings.STALE_AFTER:.0f}s) has passed or force it."
                )
            targets[RunStatus.RUNNING] = RunStatus.ENQUEUED
        if run.status not in targets:
            raise RunNotResumable(f"Run {run.pk} is {run.status}: only paused or interrupted runs can be resumed.")
        run.request("resume", targets, actor)
        if execute:
            jobs.enqueue(run)
        return run

    @staticmethod
    def pause(run: Run, *, actor: dict[str, Any] | None = None) -> Run:
        """Ask the run to pause: at once if nothing runs it, else after the current batch."""
        return run.pause(actor=actor)

    @staticmethod
    def cancel(run: Run, *, actor: dict[str, Any] | None = None) -> Run:
        """Ask the run to stop for good: at once if nothing runs it, else after the current batch."""
        return run.cancel(actor=actor)

    @staticmethod
    def force_stop(run: Run, *, actor: dict[str, Any] | None = None) -> Run:
        """Force a run stuck in pausing/cancelling (see ``Run.force_stop``); its slot goes to a waiting run."""
        run.force_stop(actor=actor)
        jobs.enqueue_each(slots.freed())
        return run

    @staticmethod
    def recover(*, actor: dict[str, Any] | None = None, now: Any = None) -> list[Run]:
        """Take over runs whose executor has not been heard from for STALE_AFTER (see ``jobs.recover``)."""
        return jobs.recover(actor=actor, now=now)

    @staticmethod
    def release_slot() -> None:
        """Give the slot a foreground run held (MAX_CONCURRENT_RUNS) to the run first in line."""
        jobs.enqueue_each(slots.freed())
