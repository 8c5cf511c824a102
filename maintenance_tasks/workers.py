"""Whether background workers take the runs' jobs: what the admin warns about when none seems to.

A worker that claims a slice writes ``heartbeat_at`` (and keeps writing it while it works), so
"no run has a heartbeat newer than STALE_AFTER" means no executor claimed anything in that time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count
from django.tasks import DEFAULT_TASK_QUEUE_NAME
from django.tasks.backends.dummy import DummyBackend
from django.tasks.backends.immediate import ImmediateBackend
from django.utils import timezone

from .conf import app_settings
from .models import Run
from .registry import registry

#: Backends without workers: ``ImmediateBackend`` performs a job inside ``enqueue()``, ``DummyBackend``
#: (for tests) keeps its jobs and never performs them. Nothing to start for either.
WITHOUT_WORKERS = (ImmediateBackend, DummyBackend)


@dataclass(frozen=True)
class MissingWorker:
    """Runs whose jobs wait for a worker while none has claimed a slice for STALE_AFTER."""

    backend: str  # the tasks backend, as ``backend_label()`` names it
    runs: int  # how many runs wait
    queues: list[str]  # the queues their jobs are on
    command: str  # how to start a worker for them ("": this app does not know that backend)
    seconds: float  # STALE_AFTER


def backend_label(backend: Any) -> str:
    """Return how the pages name a tasks backend: its alias and class name (``“default” (DatabaseBackend)``)."""
    return f"“{backend.alias}” ({type(backend).__name__})"


def worker_command(backend: Any, queues: list[str]) -> str:
    """Return the command that starts a worker of ``backend`` on ``queues`` ("" for a backend this app does not know)."""
    for cls in type(backend).__mro__:  # a subclass of a known backend has the same workers
        known = (cls.__module__.partition(".")[0], cls.__name__)
        if known == ("django_tasks_db", "DatabaseBackend"):
            queue_option = "" if queues == [DEFAULT_TASK_QUEUE_NAME] else f" --queue-name {','.join(queues)}"
            return f"manage.py db_worker{queue_option}"
        if known == ("django_tasks_rq", "RQBackend"):
            return (
                "manage.py rqworker --job-class django_tasks_rq.Job --worker-class rq.worker.HerokuWorker "
                f"--with-scheduler {' '.join(queues)}"
            )
    return ""


def queue_of(processor_path: str) -> str:
    """Return the queue the slices of the processor's runs go to (the default one if it is gone from the code)."""
    processor = registry.processors().get(processor_path)
    return (processor.queue_name if processor is not None else None) or DEFAULT_TASK_QUEUE_NAME


def missing_worker(backend: Any, now: datetime | None = None) -> MissingWorker | None:
    """Return the runs that wait for a worker if none seems to take their jobs, else None.

    A run waits when it has been enqueued on ``backend`` (it has a job id) for STALE_AFTER, is not
    in line for a slot (MAX_CONCURRENT_RUNS) nor waiting out a retry delay: ``Run.objects.unclaimed()``.
    A worker seems missing when, besides, no run was claimed nor had a heartbeat in that time: busy
    workers with runs in a backlog are not missing. Never for a backend without workers.

    Cost: one query on the status index per call; the heartbeats are read only while runs wait.
    """
    if isinstance(backend, WITHOUT_WORKERS):
        return None
    now = now or timezone.now()
    waiting = dict(
        Run.objects.unclaimed(now)
        .exclude(job_id="")  # no job: a foreground command was meant to perform it (the watchdog's business)
        .order_by()
        .values_list("task__processor")
        .annotate(runs=Count("pk"))
    )
    if not waiting:
        return None
    since = now - timedelta(seconds=app_settings.STALE_AFTER)
    if Run.objects.filter(heartbeat_at__gte=since).exists():
        return None
    queues = sorted({queue_of(path) for path in waiting})
    return MissingWorker(
        backend=backend_label(backend),
        runs=sum(waiting.values()),
        queues=queues,
        command=worker_command(backend, queues),
        seconds=app_settings.STALE_AFTER,
    )
