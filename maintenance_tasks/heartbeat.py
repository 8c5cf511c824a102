"""Writes guarded by a run's attempt token: the engine's checkpoints, and the heartbeat thread.

Only the executor holding a run's current attempt token may write to it. Both writers here
filter on that token, so an executor whose run was taken over can no longer move anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from .models import Run
from .status import EXECUTING_STATUSES, RunStatus

logger = logging.getLogger(__name__)


def guarded_update_sql(connection: BaseDatabaseWrapper, names: tuple[str, ...]) -> str:
    """``UPDATE`` the run's fields ``names`` where pk, attempt and status are the parameters after theirs."""
    quote, meta = connection.ops.quote_name, Run._meta
    sets = ", ".join(f"{quote(meta.get_field(name).column)} = %s" for name in names)
    where = " AND ".join(f"{quote(meta.get_field(name).column)} = %s" for name in (meta.pk.name, "attempt", "status"))
    return f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {where}"  # noqa: S608 (names of the model's own columns)


class GuardedWriter:
    """Update a run's fields only while one attempt token holds it and it is running.

    The same as ``Run.objects.filter(pk=..., attempt=token, status=RUNNING).update(**fields)``,
    with the statement built once per set of fields: a checkpoint follows every atomic batch,
    and building the ORM query cost as much as running it.
    """

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.token = 0
        self._sql: dict[tuple[str, tuple[str, ...]], str] = {}

    def update_if_running(self, fields: dict[str, Any]) -> bool:
        """Write ``fields`` if this attempt holds the run and it is running; return whether it did."""
        connection = connections[router.db_for_write(Run)]
        names = tuple(fields)
        sql = self._sql.get((connection.alias, names))
        if sql is None:
            sql = self._sql[connection.alias, names] = guarded_update_sql(connection, names)
        params = [Run._meta.get_field(name).get_db_prep_save(value, connection) for name, value in fields.items()]
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, self.run_id, self.token, RunStatus.RUNNING.value])
            return cursor.rowcount > 0


class Heartbeat(threading.Thread):
    """Keep ``heartbeat_at`` fresh while a run is performed, also during a long item or batch.

    It writes only when the executor itself has not written for a beat (``last_write()``,
    a ``time.monotonic()`` value), and only while the attempt ``token()`` is current. It
    uses its own database connection, so it does not start inside a transaction (a test's):
    there its writes would wait on the run's row, which that transaction holds.
    """

    def __init__(self, run_id: int, token: Callable[[], int], last_write: Callable[[], float], interval: float) -> None:
        super().__init__(name=f"heartbeat-run-{run_id}", daemon=True)
        self.run_id, self.token, self.last_write = run_id, token, last_write
        self.interval = interval
        self.stopped = threading.Event()

    def start(self) -> None:
        if not connections[router.db_for_write(Run)].in_atomic_block:
            super().start()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval):
                if time.monotonic() - self.last_write() < self.interval:
                    continue
                try:
                    Run.objects.filter(pk=self.run_id, attempt=self.token(), status__in=EXECUTING_STATUSES).update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError as error:  # a lock held by a long batch (SQLite): beat again later
                    logger.warning("Run %s: heartbeat not written (%s).", self.run_id, error)
        finally:
            connections.close_all()  # this thread's connections only

    def stop(self) -> None:
        self.stopped.set()
        if self.is_alive():
            self.join()
