"""Receivers of Django's signals."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connections

logger = logging.getLogger(__name__)


def sync_schedules_after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """Sync the schedules processors declare in code, once this app's tables exist."""
    from .models import Schedule
    from .scheduling import sync_code_schedules

    if using != "default" or Schedule._meta.db_table not in connections[using].introspection.table_names():
        return  # another database, or migrated back to before schedules
    result = sync_code_schedules()
    for verb, paths in (("created", result.created), ("updated", result.updated), ("removed", result.removed)):
        for path in paths:
            logger.info("Code schedule %s: %s.", verb, path)
