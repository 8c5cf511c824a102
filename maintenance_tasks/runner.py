"""``Runner``: start runs and change them; the one place the admin, the commands and Python go through.

The state changes themselves are the run's (``Run.pause()``, ``Run.cancel()``, ...); what puts
work on the queue is ``jobs``. The runner ties them together: validate, create, change, enqueue.
"""

from __future__ import annotations

import time
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, connections, transaction
from django.utils import timezone

from . import dryrun, jobs, slots
from .actors import local_actor
from .batching import TUNING, validate_tuning
from .conf import app_settings
from .csvfiles import kept_if_saved, store_csv
from .exceptions import (
    ENQUEUE_FAILED,
    ConcurrentChange,
    EnqueueFailed,
    InvalidProcessor,
    InvalidTransition,
    RunNotResumable,
)
from .models import Run, RunEvent, Task
from .models.lifecycle import announce_created
from .models.runs import one_active_run
from .parameters import json_problem
from .processor import Processor
from .registry import registry
from .status import EXECUTING_STATUSES, RESUME_TARGETS, RunStatus

#: A processor class, or its dotted path or unique class name.
type ProcessorName = str | type[Processor]
type JSONObject = dict[str, Any]


class Runner:
    """Start, pause, resume, cancel, force and recover runs."""

    @staticmethod
    def run(
        processor: ProcessorName,
        config: JSONObject | None = None,
        *,
        metadata: JSONObject | None = None,
        dry_run: bool = False,
        csv_file: IO[bytes] | None = None,
        batch_size: int | None = None,
        batch_time: float | None = None,
        sleep_ratio: float | None = None,
    ) -> Run:
        """Validate the config, create the task if needed and a run, and put it on the queue.

        ``csv_file`` (a file object open in binary) is the file a ``csv_collection`` processor reads.

        Raise ValidationError for a bad config and RunAlreadyActive when the task already has
        an active run; nothing is saved then. Raise EnqueueFailed when the tasks backend refuses
        the job: the run is saved, errored, with the backend's message. With ``dry_run``, every
        batch is rolled back and the run reports the writes it would have made (see ``dryrun``).
        ``batch_size``, ``batch_time`` and ``sleep_ratio`` are the run's own (None: the processor's;
        see ``Run.tune()``).
        """
        run = Runner.create(
            processor,
            config,
            metadata=metadata,
            dry_run=dry_run,
            csv_file=csv_file,
            batch_size=batch_size,
            batch_time=batch_time,
            sleep_ratio=sleep_ratio,
        )
        Runner._enqueue(run)
        return run

    @staticmethod
    def _enqueue(run: Run) -> None:
        """Put the run on the queue; raise EnqueueFailed if the backend refused it (the run is then errored)."""
        jobs.enqueue(run)
        run.refresh_from_db()
        if run.status == RunStatus.ERRORED and run.error_class == ENQUEUE_FAILED:
            raise EnqueueFailed(
                f"Run {run.pk} of {run.task} could not be enqueued (it is errored): {run.error_message}"
            )

    @staticmethod
    def create(
        processor: ProcessorName,
        config: JSONObject | None = None,
        *,
        metadata: JSONObject | None = None,
        dry_run: bool = False,
        csv_file: IO[bytes] | None = None,
        batch_size: int | None = None,
        batch_time: float | None = None,
        sleep_ratio: float | None = None,
    ) -> Run:
        """Validate, then save an enqueued run without putting it on the queue (the caller performs it).

        Raise InvalidProcessor when the processor's class cannot run (its ``definition_problems()``),
        or cannot be dry-run when ``dry_run`` is asked for (an autocommit processor).
        ValidationError on ``csv_file`` when the CSV file is missing, not wanted or unreadable, and
        on ``batch_size``, ``batch_time`` or ``sleep_ratio`` when one is out of its range.
        ``run_enqueued`` is sent once the new run commits.
        """
        path = registry.path_of(processor)
        if problems := registry.get(path).definition_problems():
            raise InvalidProcessor(f"{path} cannot run: {' '.join(message for _, message in problems)}")
        if dry_run and (problem := dryrun.refusal(registry.get(path))):
            raise InvalidProcessor(problem)
        jobs.slice_job(registry.get(path))  # a queue the backend refuses is an error now, not at commit
        canonical = registry.get(path).from_config(config).config
        validate_tuning(batch_size, batch_time, sleep_ratio)
        given = (batch_size, batch_time, sleep_ratio)
        tuning = {name: value for name, value in zip(TUNING, given, strict=True) if value is not None}
        metadata = metadata if metadata is not None else local_actor("python")
        Runner.validate_metadata(metadata)
        csv = store_csv(registry.get(path), csv_file)  # checked and stored last, deleted if no run is saved
        with kept_if_saved(csv), transaction.atomic():
            task = Task.objects.for_config(path, canonical)
            with one_active_run(task):
                run = Run.objects.create(task=task, metadata=metadata, dry_run=dry_run, **csv, **tuning)
            RunEvent.objects.log(
                run, "created", "", RunStatus.ENQUEUED, metadata, **({"dry_run": True} if dry_run else {}), **tuning
            )
            announce_created(run)
        return run

    @staticmethod
    def validate_metadata(metadata: Any) -> None:
        """Refuse metadata that is not a JSON object every database stores (raise ValidationError)."""
        if not isinstance(metadata, dict):
            raise ValidationError(
                f"metadata must be a JSON object (a dict), not {type(metadata).__name__}.", code="invalid"
            )
        if problem := json_problem(metadata):
            raise ValidationError(f"metadata {problem}.", code="invalid")

    @staticmethod
    def resume(run: Run, *, actor: dict[str, Any] | None = None, force: bool = False, execute: bool = True) -> Run:
        """Enqueue a paused, interrupted or errored run again; it goes on from its cursor.

        A run still marked running, or enqueued with no job waiting for it (the command meant
        to perform it was killed first), is taken over only when nothing has been heard from
        it for STALE_AFTER, or with ``force``. Its old executor, if alive, can no longer commit.
        An errored run's error moves to its audit trail (see ``Run._request_once``).
        With ``execute=False`` the caller performs it. Raise UnknownProcessor, leaving the run
        as it is, when its processor is no longer in the code, and RunAlreadyActive when it is
        errored and its task has another active run by now.
        """
        run.refresh_from_db(fields=["status", "heartbeat_at", "updated_at", "job_id", "attempt"])
        registry.get(run.task.processor)  # a processor gone from the code cannot go on
        if execute:
            jobs.route(run)  # a queue the backend refuses is an error now, before the run moves
        targets = dict(RESUME_TARGETS)
        if run.status in (RunStatus.RUNNING, RunStatus.ENQUEUED):
            Runner._check_taken_over(run, force)
            targets[RunStatus(run.status)] = RunStatus.ENQUEUED
        if run.status not in targets:
            raise RunNotResumable(
                f"Run {run.pk} is {run.status}: only paused, interrupted or errored runs can be resumed."
            )
        if run.status == RunStatus.ENQUEUED:  # still enqueued: nothing to change but who performs it
            RunEvent.objects.log(run, "resume", run.status, run.status, actor or local_actor("python"))
        else:
            run.request("resume", targets, actor)
        if execute:
            Runner._enqueue(run)
        return run

    @staticmethod
    def _check_taken_over(run: Run, force: bool) -> None:
        """Refuse to take over a running or enqueued run that someone may still be working on."""
        if run.status == RunStatus.ENQUEUED and jobs.job_waiting(run) and not force:
            raise RunNotResumable(
                f"Run {run.pk} is enqueued and its job {run.job_id} waits for a worker; force it to perform it here."
            )
        last = run.heartbeat_at if run.status == RunStatus.RUNNING else run.updated_at
        age = (timezone.now() - last).total_seconds() if last else None
        if not force and age is not None and age < app_settings.STALE_AFTER:
            heard = "last heartbeat" if run.status == RunStatus.RUNNING else "last change"
            raise RunNotResumable(
                f"Run {run.pk} is {run.status} ({heard} {age:.0f}s ago). If its process is gone, "
                f"wait until STALE_AFTER ({app_settings.STALE_AFTER:.0f}s) has passed or force it."
            )

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
    def interrupt_after_outage(run: Run, token: int, *, seconds: float = 10.0) -> bool:
        """Leave a foreground run interrupted after its database connection was lost; return whether it is.

        Tries again for ``seconds`` while the database does not answer (a server restart).
        Only the attempt ``token`` that held the run may move it, so a run taken over meanwhile
        is left alone.
        """
        deadline = time.monotonic() + seconds
        while True:
            connections.close_all()  # the broken connection: the next query opens a new one
            try:
                run.refresh_from_db(fields=["status", "attempt"])
                if run.attempt != token or run.status not in EXECUTING_STATUSES:
                    return False
                old = run.status
                target = {RunStatus.PAUSING: RunStatus.PAUSED, RunStatus.CANCELLING: RunStatus.CANCELLED}.get(
                    RunStatus(old), RunStatus.INTERRUPTED
                )
                with transaction.atomic():  # the change and its audit entry commit together, then are announced
                    run.transition_to(target, token=token, action="interrupt")
                    RunEvent.objects.log(run, "connection_lost", old, target, local_actor("cli"))
                return True
            except (OperationalError, InterfaceError):
                if time.monotonic() >= deadline:
                    return False
                time.sleep(1.0)
            except (ConcurrentChange, InvalidTransition):
                return False

    @staticmethod
    def release_slot() -> None:
        """Give the slot a foreground run held (MAX_CONCURRENT_RUNS) to the run first in line."""
        jobs.enqueue_each(slots.freed())
