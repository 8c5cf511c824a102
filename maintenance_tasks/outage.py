"""A lost database connection (a server restart, a killed backend): how to tell it from a processor's error."""

from __future__ import annotations

from typing import Any

from django.db import InterfaceError, OperationalError, connections, router

from .models import Run


def lost_connection(error: Exception, before: Any) -> bool:
    """Return whether the error is the loss of the runs' database connection, not the processor's own error.

    ``before`` is the DB-API connection the walk began with. After a failed rollback (the server
    went away) Django drops it and at once opens a new one, so a replaced connection is a lost one.
    """
    if not isinstance(error, OperationalError | InterfaceError):
        return False
    db = connections[router.db_for_write(Run)]
    return (before is not None and db.connection is not before) or not db.is_usable()
