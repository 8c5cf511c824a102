"""Ready throttle conditions, for a processor's ``throttle_on`` or the THROTTLE_ON setting.

A condition is a callable taking no argument that returns why a run must wait (a string), or
something falsy when it may go on. A ``Critical`` reason pauses the run instead (see throttling.py).
The conditions here measure a database through its Django connection; on a database they cannot
measure (SQLite) they never hold, and the system checks warn about them (W041).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.checks import CheckMessage, Error, Warning
from django.db import DEFAULT_DB_ALIAS, connections

#: The vendors the ready conditions can measure.
MEASURED_VENDORS = ("postgresql", "mysql")


class Critical(str):
    """A reason past a condition's ``critical`` limit: the run is paused, not made to wait."""

    __slots__ = ()


class DatabaseCondition:
    """Hold while a measure of the ``using`` database passes ``limit``; critically past ``critical``."""

    #: What the measure is, for the reason: "{value} {what} on {alias}".
    what = ""

    def __init__(self, limit: float, *, critical: float | None = None, using: str = DEFAULT_DB_ALIAS) -> None:
        self.limit, self.critical, self.using = limit, critical, using

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.limit!r}, critical={self.critical!r}, using={self.using!r})"

    def __call__(self) -> str | None:
        """Return why the run must wait (a ``Critical`` reason past ``critical``), or None."""
        connection = connections[self.using]
        if connection.vendor not in MEASURED_VENDORS:
            return None
        value = self.measure(connection)
        if value is None or value <= self.limit:
            return None
        if self.critical is not None and value > self.critical:
            return Critical(f"{self.describe(value)} (critical {self.critical:g})")
        return f"{self.describe(value)} (max {self.limit:g})"

    def measure(self, connection: Any) -> float | None:
        """Return the measure now, or None when there is nothing to measure."""
        raise NotImplementedError

    def describe(self, value: float) -> str:
        return f"{value:g} {self.what} on {self.using}"

    def problems(self) -> list[tuple[str, str]]:
        """Return ``(check id, message)`` for a database this condition cannot measure."""
        if self.using not in connections.settings:
            return [
                ("maintenance_tasks.E040", f"{self!r} measures the database {self.using!r}, which is not in DATABASES.")
            ]
        if (vendor := connections[self.using].vendor) not in MEASURED_VENDORS:
            return [("maintenance_tasks.W041", f"{self!r} cannot measure a {vendor} database: it never holds.")]
        return []


class ReplicationLag(DatabaseCondition):
    """Hold while a replica replays more than ``max_seconds`` behind.

    On a PostgreSQL primary, the largest replay lag of ``pg_stat_replication``; on a PostgreSQL
    replica alias, how long its replay has been behind what it received; on a MariaDB/MySQL
    replica alias, ``Seconds_Behind_Master`` (MySQL: ``Seconds_Behind_Source``) of ``SHOW REPLICA
    STATUS`` (a replica whose replication is stopped holds too). A server that is neither gives no lag.
    """

    what = "s of replication lag"

    def __init__(self, max_seconds: float = 5, *, critical: float | None = None, using: str = DEFAULT_DB_ALIAS) -> None:
        super().__init__(max_seconds, critical=critical, using=using)

    def measure(self, connection: Any) -> float | None:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN "
                    "(SELECT max(extract(epoch FROM replay_lag)) FROM pg_stat_replication) "
                    "WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
                    "ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END"
                )
                lag = cursor.fetchone()[0]
                return None if lag is None else round(float(lag), 1)
            cursor.execute("SHOW REPLICA STATUS")
            row = cursor.fetchone()
            if row is None:
                return None
            status = dict(zip([column[0] for column in cursor.description], row, strict=True))
            lag = status.get("Seconds_Behind_Master", status.get("Seconds_Behind_Source"))  # MariaDB; MySQL 8
            return float("inf") if lag is None else float(lag)

    def describe(self, value: float) -> str:
        if value == float("inf"):
            return f"replication stopped on {self.using}"
        return super().describe(value)


class DatabaseLoad(DatabaseCondition):
    """Hold while more than ``max_active`` other queries run on the database.

    PostgreSQL: client backends of ``pg_stat_activity`` in the ``active`` state (this one left
    out); MariaDB/MySQL: ``Threads_running`` less this connection's own.
    """

    what = "active queries"

    def __init__(self, max_active: int, *, critical: int | None = None, using: str = DEFAULT_DB_ALIAS) -> None:
        super().__init__(max_active, critical=critical, using=using)

    def measure(self, connection: Any) -> float | None:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                )
                return float(cursor.fetchone()[0])
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Threads_running'")
            return float(cursor.fetchone()[1]) - 1


def condition_checks(conditions: Any, where: str, *, obj: Any = None) -> list[CheckMessage]:
    """Check a ``throttle_on`` list (or THROTTLE_ON): callables only (E039), databases they can measure.

    A ready condition on a database other than the default (the runs') is a warning, but for
    ``ReplicationLag``: a replica alias is where it measures.
    """
    if isinstance(conditions, str) or not isinstance(conditions, list | tuple):
        return [
            Error(f"{where} must be a list of callables, not {conditions!r}.", obj=obj, id="maintenance_tasks.E039")
        ]
    messages: list[CheckMessage] = []
    for condition in conditions:
        if not callable(condition):
            messages.append(
                Error(f"{where} holds {condition!r}, which is not callable.", obj=obj, id="maintenance_tasks.E039")
            )
            continue
        if not isinstance(condition, DatabaseCondition):
            continue
        problems = condition.problems()
        if not problems and condition.using != DEFAULT_DB_ALIAS and not isinstance(condition, ReplicationLag):
            problems = [("maintenance_tasks.W041", f"{condition!r} measures another database than the runs'.")]
        for id, message in problems:
            kind: Callable[..., CheckMessage] = Error if id.endswith("E040") else Warning
            messages.append(kind(f"{where}: {message}", obj=obj, id=id))
    return messages
