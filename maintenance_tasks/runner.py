"""Start runs and change them: the one place the admin, the commands and Python go through."""

from __future__ import annotations

import getpass
import os
import socket
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .conf import app_settings
from .exceptions import ConcurrentChange, InvalidTransition, RunAlreadyActive, RunNotResumable, RunNotStuck
from .models import Run, Task, record
from .processor import Processor
from .registry import registry
from .slots import release
from .status import RESUMABLE_STATUSES, RunStatus

S = RunStatus

#: What each request does, by the run's current status (current -> new).
PAUSE_TARGETS = {S.RUNNING: S.PAUSING, S.ENQUEUED: S.PAUSED, S.INTERRUPTED: S.PAUSED}
CANCEL_TARGETS = {
    S.RUNNING: S.CANCELLING,
    S.PAUSING: S.CANCELLING,
    S.ENQUEUED: S.CANCELLED,
    S.PAUSED: S.CANCELLED,
    S.INTERRUPTED: S.CANCELLED,
}
RESUME_TARGETS = dict.fromkeys(RESUMABLE_STATUSES, S.ENQUEUED)
#: A run stuck in a request (its executor gone or hung) is forced to where the request leads.
FORCE_TARGETS = {S.PAUSING: S.PAUSED, S.CANCELLING: S.CANCELLED}


def local_actor(source: str, **extra: Any) -> dict[str, Any]:
    """Describe who acts from this process: the OS user, host and process id."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else ""
    return {"source": source, "user": user, "host": socket.gethostname(), "pid": os.getpid(), **extra}


class Runner:
    """Start, pause, resume and cancel runs."""

    @staticmethod
    def run(
        processor: str | type[Processor],
        config: dict[str, Any] | None = None,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> Run:
        """Validate the config, create the task if needed and a run, and hand it to the executor.

        Raise ValidationError for a bad config and RunAlreadyActive when the task already has
        an active run; nothing is saved then.
        """
        run = Runner.create(processor, config, metadata=metadata)
        Runner.enqueue(run)
        run.refresh_from_db()
        return run

    @staticmethod
    def create(
        processor: str | type[Processor],
        config: dict[str, Any] | None = None,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> Run:
        """Validate, then save an enqueued run without handing it to any executor."""
        from .jobs import slice_task

        path = registry.path_of(processor)
        slice_task(registry.get(path))  # a queue the backend refuses is an error now, not at commit
        canonical = registry.get(path).from_config(config).config
        metadata = metadata if metadata is not None else local_actor("python")
        with transaction.atomic():
            task, _ = Task.objects.get_or_create(
                processor=path, config_digest=Task.digest(canonical), defaults={"config": canonical}
            )
            try:
                with transaction.atomic():
                    run = Run.objects.create(task=task, metadata=metadata)
            except IntegrityError:
                active = task.runs.active().values_list("pk", flat=True).first()
                raise RunAlreadyActive(task, active) from None
            record(run, "created", "", S.ENQUEUED, metadata)
        return run

    @staticmethod
    def enqueue(run: Run) -> None:
        """Hand the enqueued run to the executor once the current transaction commits.

        The job carries the run's id and its current attempt token: only one job per token
        can claim the run, so a duplicate does nothing.
        """
        from .jobs import hand_over, route

        task_, run_id, attempt = route(run), run.pk, run.attempt
        transaction.on_commit(lambda: hand_over(task_, run_id, attempt))

    @staticmethod
    def requeue(run: Run, *, actor: dict[str, Any] | None = None) -> Run:
        """Give an interrupted run back to the queue (its worker is shutting down)."""
        Runner._request(run, "requeue", {S.INTERRUPTED: S.ENQUEUED}, actor or local_actor("worker"))
        Runner.enqueue(run)
        return run

    @staticmethod
    def recover(*, actor: dict[str, Any] | None = None, now: Any = None) -> list[Run]:
        """Take over runs whose executor has not been heard from for STALE_AFTER.

        A running run gets a new attempt token (its old executor, if it wakes up, can no
        longer commit) and a new slice; a pausing run becomes paused and a cancelling one
        cancelled, since nothing is left to wait for. Running it again does nothing more.
        """
        actor = actor or local_actor("recovery")
        targets = {S.RUNNING: S.ENQUEUED, S.PAUSING: S.PAUSED, S.CANCELLING: S.CANCELLED}
        recovered = []
        for run in Run.objects.stale(now).select_related("task"):
            old, token, heartbeat_at = run.status, run.attempt, run.heartbeat_at
            fields: dict[str, Any] = {"attempt": F("attempt") + 1} if old == S.RUNNING else {}
            try:
                run.transition_to(targets[old], token=token, action="recover", **fields)
            except (ConcurrentChange, InvalidTransition):
                continue  # it moved on meanwhile: not ours to recover
            record(run, "recovered", old, run.status, actor, stale_attempt=token, last_heartbeat=heartbeat_at)
            if run.status == S.ENQUEUED:
                Runner.enqueue(run)
            recovered.append(run)
        if recovered:
            release()
        return recovered

    # -- requests -------------------------------------------------------------------------

    @staticmethod
    def _request(run: Run, action: str, targets: dict[str, str], actor: dict[str, Any] | None) -> Run:
        """Move the run along ``targets`` (current status -> new) from its current status."""
        actor = actor or local_actor("python")
        for _ in range(5):
            run.refresh_from_db(fields=["status", "attempt", "heartbeat_at"])
            old = run.status
            if old not in targets:
                raise InvalidTransition(run.pk, old, "", action)
            try:
                run.transition_to(targets[old], action=action)
            except ConcurrentChange:
                continue
            record(run, action, old, run.status, actor)
            return run
        raise ConcurrentChange(f"Run {run.pk} kept changing; try again.")

    @staticmethod
    def pause(run: Run, *, actor: dict[str, Any] | None = None) -> Run:
        """Ask the run to pause: at once if nothing runs it, else after the current batch."""
        return Runner._request(run, "pause", PAUSE_TARGETS, actor)

    @staticmethod
    def cancel(run: Run, *, actor: dict[str, Any] | None = None) -> Run:
        """Ask the run to stop for good: at once if nothing runs it, else after the current batch."""
        return Runner._request(run, "cancel", CANCEL_TARGETS, actor)

    @staticmethod
    def resume(run: Run, *, actor: dict[str, Any] | None = None, force: bool = False, execute: bool = True) -> Run:
        """Enqueue a paused or interrupted run again; it goes on from its cursor.

        A run still marked running is taken over only when its heartbeat is older than
        STALE_AFTER (its executor died), or with ``force``. Its old executor, if alive,
        can no longer commit. With ``execute=False`` the caller performs it.
        """
        run.refresh_from_db(fields=["status", "heartbeat_at"])
        if execute:
            from .jobs import route

            route(run)  # a queue the backend refuses is an error now, before the run moves
        targets = dict(RESUME_TARGETS)
        if run.status == S.RUNNING:
            age = (timezone.now() - run.heartbeat_at).total_seconds() if run.heartbeat_at else None
            if not force and age is not None and age < app_settings.STALE_AFTER:
                raise RunNotResumable(
                    f"Run {run.pk} is running (last heartbeat {age:.0f}s ago). If its process is gone, "
                    f"wait until STALE_AFTER ({app_settings.STALE_AFTER:.0f}s) has passed or force it."
                )
            targets[S.RUNNING] = S.ENQUEUED
        if run.status not in targets:
            raise RunNotResumable(f"Run {run.pk} is {run.status}: only paused or interrupted runs can be resumed.")
        Runner._request(run, "resume", targets, actor)
        if execute:
            Runner.enqueue(run)
        return run

    # -- what may be asked of a run now ---------------------------------------------------

    @staticmethod
    def is_stuck(run: Run, now: Any = None) -> bool:
        """Return whether the run has waited in pausing/cancelling, unchanged, for STUCK_AFTER."""
        if run.status not in FORCE_TARGETS:
            return False
        age = ((now or timezone.now()) - run.updated_at).total_seconds()
        return age >= app_settings.STUCK_AFTER

    @staticmethod
    def available_actions(run: Run) -> list[str]:
        """Return the requests the run's current status allows: pause, resume, cancel, force."""
        actions = []
        if run.status in PAUSE_TARGETS:
            actions.append("pause")
        if run.status in RESUME_TARGETS:
            actions.append("resume")
        if run.status in CANCEL_TARGETS:
            actions.append("cancel")
        if Runner.is_stuck(run):
            actions.append("force")
        return actions

    @staticmethod
    def force_stop(run: Run, *, actor: dict[str, Any] | None = None) -> Run:
        """Force a run stuck in pausing/cancelling to paused/cancelled without waiting for its executor.

        Only after STUCK_AFTER without any change (RunNotStuck otherwise). The attempt token
        moves on, so an executor that is still alive can no longer commit nor move the cursor.
        """
        actor = actor or local_actor("python")
        run.refresh_from_db(fields=["status", "attempt", "updated_at"])
        old = run.status
        if old not in FORCE_TARGETS:
            raise InvalidTransition(run.pk, old, "", "force it")
        if not Runner.is_stuck(run):
            waited = (timezone.now() - run.updated_at).total_seconds()
            raise RunNotStuck(
                f"Run {run.pk} has been {old} for {waited:.0f}s: it can be forced only after "
                f"STUCK_AFTER ({app_settings.STUCK_AFTER:.0f}s)."
            )
        run.transition_to(FORCE_TARGETS[old], attempt=F("attempt") + 1, action="force it")
        record(run, "force", old, run.status, actor, attempt=run.attempt)
        release()
        return run
