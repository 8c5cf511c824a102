"""Checkpoints on another database: each batch of a processor that writes there commits with its cursor there.

The engine opens the batch's transaction on the processor's database (``databases.batch_database``)
and, inside it, moves the run's Checkpoint row on that database to the batch's end, guarded by
the attempt token as the run itself is: if another executor has taken the run over, no row
matches, StaleAttempt is raised and the batch is rolled back. After the commit the engine mirrors
the position to the Run on the runs' database. So each batch's writes on that database are
applied exactly once; the Run may lag one batch behind if the process dies between the two
commits, and the executor that takes the run over adopts the row's position (``take_over``).
Writes a batch makes on any other database are not in its transaction (at least once).
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from .databases import database_problem, runs_database
from .exceptions import InvalidProcessor, StaleAttempt
from .models import Checkpoint, Run

logger = logging.getLogger(__name__)


def require_table(alias: str) -> None:
    """Raise InvalidProcessor, naming what to do, unless ``alias`` can keep checkpoints."""
    problem = database_problem(alias)
    if problem is None:
        try:
            tables = connections[alias].introspection.table_names()
        except DatabaseError as error:
            problem = f"the database {alias!r} cannot be reached ({error})."
        else:
            if Checkpoint._meta.db_table not in tables:
                problem = (
                    f"the database {alias!r} has no checkpoint table: "
                    f"run manage.py migrate maintenance_tasks --database {alias}"
                )
    if problem is not None:
        raise InvalidProcessor(f"Its batches commit on another database, but {problem}")


class AliasCheckpoint:
    """A run's checkpoint row on the database its batches write to, held by one attempt token."""

    def __init__(self, run_id: int, alias: str, token: int, ahead: tuple[str, int] | None = None) -> None:
        self.run_id, self.alias, self.token = run_id, alias, token
        self.ahead = ahead

    @classmethod
    def take_over(cls, run: Run, alias: str, token: int) -> AliasCheckpoint:
        """Hold the run's row on ``alias`` with ``token``, so that an older attempt can no longer commit there.

        The row is locked first, so a batch that an older attempt is committing ends before.
        ``ahead`` is then the row's ``(cursor, tick_count)`` when it is ahead of ``run`` (that
        attempt's process died before it mirrored its last batch): the run goes on from there.
        """
        require_table(alias)
        rows = Checkpoint.objects.using(alias)
        with transaction.atomic(using=alias):
            row = rows.select_for_update().filter(run_id=run.pk).first()
            if row is None:
                rows.create(run_id=run.pk, attempt=token, cursor=run.cursor, tick_count=run.tick_count)
            else:
                rows.filter(pk=row.pk).update(attempt=token, updated_at=timezone.now())
        if row is None or row.tick_count <= run.tick_count or row.cursor is None:
            return cls(run.pk, alias, token)
        logger.warning(
            "Run %s: %r has its batches committed up to item %s, the run up to %s only: going on from there.",
            *(run.pk, alias, row.tick_count, run.tick_count),
        )
        return cls(run.pk, alias, token, ahead=(row.cursor, row.tick_count))

    def commit(self, cursor: str, tick_count: int) -> None:
        """Record the batch in its transaction; raise StaleAttempt if another attempt holds the run."""
        held = Checkpoint.objects.using(self.alias).filter(run_id=self.run_id, attempt=self.token)
        if held.update(cursor=cursor, tick_count=tick_count, updated_at=timezone.now()) != 1:
            raise StaleAttempt(
                f"Run {self.run_id}: attempt {self.token} no longer holds its checkpoint on {self.alias!r}."
            )

    def forget(self) -> None:
        """Delete the row once the run has walked all its items (the Run has mirrored the last batch)."""
        Checkpoint.objects.using(self.alias).filter(run_id=self.run_id, attempt=self.token).delete()


def take_over(run: Run, alias: str, token: int) -> AliasCheckpoint | None:
    """Return the run's checkpoint on ``alias``, held by ``token``; None when ``alias`` is the runs' own database."""
    if alias == runs_database():
        return None
    return AliasCheckpoint.take_over(run, alias, token)
