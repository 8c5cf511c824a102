"""What the engine records and logs when a processor fails: the run's error fields, a retry's detail."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from .exceptions import BACKTRACE_LIMIT, error_class_name, error_message, storable

logger = logging.getLogger("maintenance_tasks.engine")


def errored_fields(run: Any, error: BaseException) -> dict[str, str]:
    """Log the error that ends ``run`` with its traceback and context; return its storable error fields."""
    error_class, message = error_class_name(error), error_message(error)
    logger.error(
        "Run %s of %s errored at cursor %s after %s items: %s: %s",
        run.pk,
        run.task.processor,
        run.cursor,
        run.tick_count,
        error_class,
        message[:1000],
        exc_info=error,
    )
    backtrace = storable("".join(traceback.format_exception(error)), BACKTRACE_LIMIT)
    return {"error_class": error_class, "error_message": message, "backtrace": backtrace}


def retry_detail(run: Any, error: BaseException, *, attempt: int, max_retries: int, delay: float) -> dict[str, Any]:
    """Log a retry of ``run`` after ``error`` (its ``retries`` already counts it); return its audit detail."""
    detail = {
        "attempt": attempt,
        "retry": run.retries,
        "max_retries": max_retries,
        "delay": round(delay, 3),
        "error_class": error_class_name(error),
        "error_message": error_message(error)[:1000],
    }
    logger.warning("Run %s: %s: %s; retry %s of %s in %.1fs.", run.pk, detail["error_class"], detail["error_message"],
                   run.retries, max_retries, delay)  # fmt: skip
    return detail
