"""Wait for SQLite's write lock without being starved by a process that takes it batch after batch.

SQLite's own busy handler sleeps longer and longer between tries (up to 100 ms): a run whose
atomic batches hold the lock almost all the time, letting it go for a millisecond between two
batches, would keep a pause request waiting until the run ends. Here the lock is tried every
millisecond instead, for as long as the connection's ``timeout`` allows. Other databases queue
writers on row locks: the write is simply done.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db import OperationalError, connections, transaction

POLL = 0.001


def write_when_free[T](write: Callable[[], T], using: str = "default") -> T:
    """Return ``write()`` run in a transaction; on SQLite, retried every millisecond while the database is locked."""
    connection = connections[using]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        with transaction.atomic(using=using):
            return write()
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        (timeout_ms,) = cursor.fetchone()
        cursor.execute("PRAGMA busy_timeout = 0")
    deadline = time.monotonic() + timeout_ms / 1000
    try:
        while True:
            try:
                with transaction.atomic(using=using):
                    return write()
            except OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
            time.sleep(POLL)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
