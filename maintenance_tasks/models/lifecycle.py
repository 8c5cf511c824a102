"""Announce the moments of a run's life: its processor's callback, then the signal.

``Run.transition_to()``, the one writer of ``status``, hands each change here; ``Runner.create()``
hands the creation of a run. The announcement is made once the transaction commits (never for a
change that is rolled back), in the process that made the change, with a copy of the run as the
change left it (the caller's instance may have moved on by the commit). Slice ends and recoveries
(running -> enqueued), requests (pausing, cancelling) and later slices of a run announce nothing.

Nothing here can undo or fail the change: a callback or receiver that raises is logged with its
traceback (a callback's failure also goes on the run's audit trail), and the run keeps its
status and cursor.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import router, transaction
from django.dispatch import Signal

from maintenance_tasks import signals
from maintenance_tasks.actors import local_actor
from maintenance_tasks.exceptions import MaintenanceTaskError, error_class_name, error_message
from maintenance_tasks.parameters import json_problem
from maintenance_tasks.registry import registry
from maintenance_tasks.sensitive import log_error, scrubbed
from maintenance_tasks.status import RESUMABLE_STATUSES, RunStatus

if TYPE_CHECKING:
    from .runs import Run

logger = logging.getLogger(__name__)

#: The longest ``on_complete()`` result a run keeps, in characters of JSON.
RESULT_LIMIT = 10_000


@dataclass(frozen=True)
class Moment:
    """A moment of a run's life: the signal it sends and the processor method it calls."""

    signal: Signal
    callback: str | None


ENQUEUED = Moment(signals.run_enqueued, None)
STARTED = Moment(signals.run_started, "on_start")
RESUMED = Moment(signals.run_resumed, "on_resume")
#: The moments a run reaches by its new status alone, whatever it was before.
BY_STATUS = {
    RunStatus.PAUSED: Moment(signals.run_paused, "on_pause"),
    RunStatus.INTERRUPTED: Moment(signals.run_interrupted, "on_interrupt"),
    RunStatus.CANCELLED: Moment(signals.run_cancelled, "on_cancel"),
    RunStatus.SUCCEEDED: Moment(signals.run_succeeded, "on_complete"),
    RunStatus.ERRORED: Moment(signals.run_errored, "on_error"),
}


def moment_of(old: str, new: str, *, first_claim: bool) -> Moment | None:
    """Return the moment the change from ``old`` to ``new`` is, or None for a change that is no news.

    ``first_claim``: the run had never been claimed (no ``started_at``) before this change.
    """
    if new == RunStatus.RUNNING:
        return STARTED if first_claim else None  # a later slice is not a new start
    if new == RunStatus.ENQUEUED:
        return RESUMED if old in RESUMABLE_STATUSES else None  # a slice end, a retry, a recovery
    return BY_STATUS.get(RunStatus(new))


def announce_change(run: Run, old: str, new: str, *, first_claim: bool, error: BaseException | None) -> None:
    """Announce the run's change of status once the current transaction commits (if it is news)."""
    moment = moment_of(old, new, first_claim=first_claim)
    if moment is None:
        return
    if new == RunStatus.ERRORED and error is None:  # no exception at hand: one that says what the run says
        error = MaintenanceTaskError(f"{run.error_class}: {run.error_message}")
    arguments = {"error": error} if new == RunStatus.ERRORED else {}
    on_commit(run, partial(announce, copy.copy(run), moment, **arguments))


def announce_created(run: Run) -> None:
    """Send ``run_enqueued`` for a new run once the current transaction commits."""
    on_commit(run, partial(announce, copy.copy(run), ENQUEUED))


def on_commit(run: Run, announcement: Any) -> None:
    """Make the announcement once the transaction of the run's database commits."""
    transaction.on_commit(announcement, using=router.db_for_write(type(run), instance=run), robust=True)


def announce(run: Run, moment: Moment, **arguments: Any) -> None:
    """Call the processor's callback for the moment, then send its signal; never raise."""
    try:
        if moment.callback is not None:
            returned = call_back(run, moment.callback, *arguments.values())
            if moment.callback == "on_complete" and returned is not None:
                keep_result(run, returned)
        for receiver, response in moment.signal.send_robust(sender=type(run), run=run, **arguments):
            if isinstance(response, Exception):
                message = "Run %s: a receiver of its signal failed: %r"
                log_error(logger, run.task.secrets, message, run.pk, receiver, error=response)
    except Exception:  # recording a failure failed (the database went away): the change itself stands
        logger.exception("Run %s: announcing its change to %s failed.", run.pk, run.status)


def call_back(run: Run, name: str, *arguments: Any) -> Any:
    """Return what the processor's callback ``name`` returns; log and record what it raises (None then).

    A processor gone from the code, or whose config it now refuses, counts as a failed callback.
    """
    try:
        processor_class = registry.get(run.task.processor)
        if not processor_class.defines_callback(name):
            return None
        return getattr(run.task.build_processor(), name)(run, *arguments)
    except Exception as failure:
        secrets = run.task.secrets
        message = "Run %s: %s.%s() failed; the run is left as it is."
        log_error(logger, secrets, message, run.pk, run.task.processor, name, error=failure)
        message = scrubbed(error_message(failure), secrets)[:1000]
        detail = {"callback": name, "error_class": error_class_name(failure), "error_message": message}
        run.events.log(run, "callback_failed", run.status, run.status, local_actor("callback"), **detail)
        return None


def result_problem(result: Any) -> str | None:
    """Return why ``result`` cannot be kept as the run's result, or None."""
    if problem := json_problem(result):
        return f"The result {problem}."
    size = len(json.dumps(result, cls=DjangoJSONEncoder))
    if size > RESULT_LIMIT:
        return f"The result is {size:,} characters of JSON, more than {RESULT_LIMIT:,}: return a summary."
    return None


def keep_result(run: Run, result: Any) -> None:
    """Store what ``on_complete()`` returned as the run's result, or record on the audit trail why not."""
    if problem := result_problem(result):
        logger.warning("Run %s: the result of %s.on_complete() is not kept: %s", run.pk, run.task.processor, problem)
        run.events.log(run, "result_refused", run.status, run.status, local_actor("callback"), problem=problem)
        return
    type(run).objects.filter(pk=run.pk).update(result=result)
    run.result = result
