"""The ``django.tasks`` entry point: perform one run, identified by its id."""

from __future__ import annotations

import logging

from django.tasks import task

from .models import Run
from .status import RunStatus

logger = logging.getLogger(__name__)


@task()
def perform_run(run_id: int) -> str:
    """Perform an enqueued run; a run that is not enqueued any more (a duplicate job) is left alone."""
    from .engine import Engine

    run = Run.objects.select_related("task").filter(pk=run_id).first()
    if run is None or run.status != RunStatus.ENQUEUED:
        logger.info("Run %s is not enqueued any more; nothing to do.", run_id)
        return run.status if run else "missing"
    return Engine(run).perform().status
