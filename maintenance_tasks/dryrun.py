"""Dry runs: each batch rolled back, and the writes it would have made counted by statement kind and table.

A dry run's batch runs in a savepoint inside the engine's batch transaction. While it runs, an
execute wrapper on the connection counts each INSERT, UPDATE and DELETE by kind and table, with
the rows it affected (``cursor.rowcount``). At the end of the batch the savepoint is rolled back;
the engine then writes the checkpoint (cursor, progress and this report) outside the wrapper,
and the transaction commits it. Only atomic processors can be dry-run: an autocommit processor
commits each item on its own, which nothing could roll back.

The report, ``Run.dry_run_report``, counts the batches that completed, and per write
(``"UPDATE demo_article"``) the rows affected and the statements::

    {"batches": 100, "writes": {"UPDATE demo_article": 9998}, "statements": {"UPDATE demo_article": 9998}}
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from .exceptions import InvalidProcessor
from .models import Run
from .processor import Processor

#: A table name, quoted ("" on PostgreSQL and SQLite, `` on MariaDB and MySQL) or not, maybe schema-qualified.
_NAME = r'(?:"[^"]+"|`[^`]+`|[\w$]+)(?:\.(?:"[^"]+"|`[^`]+`|[\w$]+))?'
_WRITE = re.compile(
    rf"""\s*(?:
        (?:INSERT|REPLACE)\s+(?:(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE|OR\s+\w+)\s+)*(?:INTO\s+)?(?P<insert>{_NAME})
      | UPDATE\s+(?:(?:LOW_PRIORITY|IGNORE|OR\s+\w+)\s+)*(?P<update>{_NAME})
      | DELETE\s+(?:(?:LOW_PRIORITY|QUICK|IGNORE)\s+)*(?:(?P<target>{_NAME})\s+)?FROM\s+(?P<delete>{_NAME})
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_QUOTES = re.compile('[`"]')


def write_of(sql: str) -> str | None:
    """Return what a statement writes, ``"UPDATE table"`` (REPLACE counts as INSERT), or None for a read."""
    match = _WRITE.match(sql)
    if match is None:
        return None
    kind = next(kind for kind in ("insert", "update", "delete") if match[kind])
    name = match["target"] or match[kind]  # MySQL's ``DELETE t FROM t JOIN ...`` deletes from its target
    return f"{kind.upper()} {_QUOTES.sub('', name)}"


def refusal(processor: type[Processor]) -> str:
    """Return why the processor cannot be dry-run ("" if it can)."""
    if processor.atomic:
        return ""
    return (
        f"{processor.__name__} cannot be dry-run: it has atomic = False, so each item commits on its own "
        "and nothing could roll its writes back."
    )


class DryRun:
    """What a run needs from a dry run, batch after batch; for a real run (``enabled`` False), nothing.

    ``report()`` is the report of the batches that completed: a batch that raised was rolled
    back with its counts, and is counted again when it is done again.
    """

    def __init__(self, enabled: bool, report: dict[str, Any] | None = None) -> None:
        report = report or {}
        self.enabled = enabled
        self.batches: int = report.get("batches", 0)
        self.rows: Counter[str] = Counter(report.get("writes", {}))
        self.statements: Counter[str] = Counter(report.get("statements", {}))
        #: The engine's own tables: its writes there are the run's bookkeeping, never the processor's.
        self.ignored = {model._meta.db_table for model in apps.get_app_config("maintenance_tasks").get_models()}

    @classmethod
    def of(cls, run: Run) -> DryRun:
        """Return the dry run of ``run``, going on with the report saved so far (disabled for a real run)."""
        if not run.dry_run:
            return cls(False)
        run.refresh_from_db(fields=["dry_run_report"])
        return cls(True, run.dry_run_report)

    def check(self, processor: Processor) -> None:
        """Refuse to dry-run a processor whose items commit on their own (raise InvalidProcessor)."""
        if self.enabled and (problem := refusal(type(processor))):
            raise InvalidProcessor(problem)

    def batch(self, using: str = DEFAULT_DB_ALIAS) -> AbstractContextManager[None]:
        """Return what a batch runs in: for a dry run, a savepoint rolled back at its end, its writes counted."""
        return self._rolled_back(using) if self.enabled else nullcontext()

    def fields(self) -> dict[str, Any]:
        """Return the run's fields a checkpoint writes besides its cursor: the report, for a dry run."""
        return {"dry_run_report": self.report()} if self.enabled else {}

    def report(self) -> dict[str, Any]:
        """Return the report so far, as ``Run.dry_run_report`` keeps it."""
        return {
            "batches": self.batches,
            "writes": dict(sorted(self.rows.items())),
            "statements": dict(sorted(self.statements.items())),
        }

    @contextmanager
    def _rolled_back(self, using: str) -> Iterator[None]:
        connection = connections[using]
        counter = WriteCounter(connection, self.ignored)
        with transaction.atomic(using=using), connection.execute_wrapper(counter):
            yield
            counter.settle()
            transaction.set_rollback(True, using=using)
        self.batches += 1
        self.rows.update(counter.rows)
        self.statements.update(counter.statements)


class WriteCounter:
    """An execute wrapper counting the statements of each write, and the rows they affected.

    A driver's ``rowcount`` tells the rows once the statement has run, except SQLite's for a
    statement with RETURNING (as Django's inserts and some updates are): SQLite changes those
    rows as they are fetched, after the wrapper has returned. On SQLite the rows are therefore
    read from the connection's ``total_changes`` when the next statement starts, or in ``settle()``.
    """

    def __init__(self, connection: BaseDatabaseWrapper, ignored: set[str]) -> None:
        self.connection, self.ignored = connection, ignored
        self.rows: Counter[str] = Counter()
        self.statements: Counter[str] = Counter()
        self.pending: tuple[str, int] | None = None  # SQLite: the last write, and total_changes before it

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        self.settle()
        write = write_of(sql)
        if write is None or write.partition(" ")[2] in self.ignored:
            return execute(sql, params, many, context)
        self.statements[write] += 1
        if self.connection.vendor == "sqlite":
            self.pending = (write, self.connection.connection.total_changes)
            return execute(sql, params, many, context)
        result = execute(sql, params, many, context)
        self.rows[write] += max(context["cursor"].rowcount, 0)  # -1: the driver does not know
        return result

    def settle(self) -> None:
        """Count the rows of SQLite's last write, now that they have all been fetched."""
        if self.pending is not None:
            write, before = self.pending
            self.rows[write] += self.connection.connection.total_changes - before
            self.pending = None


def writes(report: dict[str, Any]) -> list[tuple[str, int, int]]:
    """Return each write of a report with its rows and statements, most rows first."""
    rows, statements = report.get("writes", {}), report.get("statements", {})
    return sorted(((write, rows[write], statements.get(write, 0)) for write in rows), key=lambda w: (-w[1], w[0]))


def describe(run: Run) -> str:
    """Return a dry run's report as one line: items, batches, time, and the writes it would have made."""
    report = run.dry_run_report or {}
    batches = report.get("batches", 0)
    would = ", ".join(f"{write}: {rows:,} row{'s' * (rows != 1)}" for write, rows, _ in writes(report))
    return (
        f"Dry run of run {run.pk}: {run.tick_count:,} items in {batches:,} batch{'es' * (batches != 1)}, "
        f"{run.time_running:.1f}s; " + (f"would write: {would}." if would else "would write nothing.")
    )
