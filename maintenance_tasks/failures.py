"""What the engine records and logs when a processor fails: the run's error fields, a retry's detail,
and the checks of the processor's settings for skipping bad items."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from .exceptions import BACKTRACE_LIMIT, error_class_name, error_message, storable
from .sensitive import log_error, scrubbed

logger = logging.getLogger("maintenance_tasks.engine")


def errored_fields(run: Any, error: BaseException) -> dict[str, str]:
    """Log the error that ends ``run`` with its traceback and context; return its storable error fields.

    The values of the config's sensitive parameters are masked in both (see ``sensitive``).
    """
    secrets = run.task.secrets
    error_class, message = error_class_name(error), scrubbed(error_message(error), secrets)
    log_error(
        logger,
        secrets,
        "Run %s of %s errored at cursor %s after %s items: %s: %s",
        run.pk,
        run.task.processor,
        run.cursor,
        run.tick_count,
        error_class,
        message[:1000],
        error=error,
    )
    backtrace = storable(scrubbed("".join(traceback.format_exception(error)), secrets), BACKTRACE_LIMIT)
    return {"error_class": error_class, "error_message": message, "backtrace": backtrace}


def retry_detail(run: Any, error: BaseException, *, attempt: int, max_retries: int, delay: float) -> dict[str, Any]:
    """Log a retry of ``run`` after ``error`` (its ``retries`` already counts it); return its audit detail."""
    detail = {
        "attempt": attempt,
        "retry": run.retries,
        "max_retries": max_retries,
        "delay": round(delay, 3),
        "error_class": error_class_name(error),
        "error_message": scrubbed(error_message(error), run.task.secrets)[:1000],
    }
    logger.warning("Run %s: %s: %s; retry %s of %s in %.1fs.", run.pk, detail["error_class"], detail["error_message"],
                   run.retries, max_retries, delay)  # fmt: skip
    return detail


def is_error_tuple(value: Any) -> bool:
    """Return whether ``value`` is a tuple of Exception subclasses (as ``retry_on`` and ``skip_on`` are)."""
    return isinstance(value, tuple) and all(isinstance(e, type) and issubclass(e, Exception) for e in value)


def skip_problems(skip_on: Any, max_skipped: Any) -> list[str]:
    """Return what is wrong with ``skip_on`` and ``max_skipped``."""
    problems = [] if is_error_tuple(skip_on) else [f"skip_on must be a tuple of exception classes, not {skip_on!r}."]
    if max_skipped is not None and (
        isinstance(max_skipped, bool) or not isinstance(max_skipped, int) or max_skipped < 0
    ):
        problems.append(f"max_skipped must be a whole number, 0 or more, or None (no limit), not {max_skipped!r}.")
    return problems
