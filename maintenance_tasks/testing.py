"""Test helpers for processors' authors: ``run_processor(BackfillSlugs)`` runs one to the end.

The run is performed in the calling process, as ``run_maintenance_task`` performs it: no
worker, no queue, no waiting. It works inside a test's transaction (pytest-django's ``db``
fixture, Django's ``TestCase``), where no other connection could see the run.
"""

from __future__ import annotations

from typing import IO

from .engine import AT_ONCE, Engine
from .models import Run
from .runner import JSONObject, ProcessorName, Runner
from .status import RunStatus

__all__ = ["run_processor"]


def run_processor(
    processor: ProcessorName, config: JSONObject | None = None, *, csv_file: IO[bytes] | None = None
) -> Run:
    """Run the processor with ``config`` to the end in this process; return the ended run.

    ``csv_file`` is the file (open in binary) a ``csv_collection`` processor reads; it is stored
    in ``CSV_STORAGE`` as any run's file is.

    ``processor`` is a discovered processor class (or its dotted path). A bad config raises
    ValidationError and nothing is saved, as with ``Runner.run``. Errors the processor retries
    (``retry_on``) are retried at once, without the backoff delay. When the run errors, the
    processor's own exception is raised, with the errored run as its ``run`` attribute::

        with pytest.raises(ValueError) as caught:
            run_processor(ImportPrices, {"path": "missing.csv"})
        assert caught.value.run.status == "errored"
    """
    run = Runner.create(processor, config, csv_file=csv_file)
    while True:
        engine = Engine(run, retry=AT_ONCE)
        engine.perform()
        if run.status != RunStatus.ENQUEUED:  # enqueued: handed back to retry after an error
            break
    Runner.release_slot()  # as the foreground command does: a run waiting for a slot gets it
    run.refresh_from_db()
    if engine.error is not None:
        engine.error.run = run  # type: ignore[attr-defined]
        raise engine.error
    return run
