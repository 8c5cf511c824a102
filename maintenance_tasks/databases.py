"""Which database a processor's batches write to, and what a database other than the runs' needs.

A processor writes to its ``using`` alias when it names one; else a QuerySet collection writes
where its model's rows are written (the QuerySet's ``.using()``, or the routers' ``db_for_write``);
else to the database of the runs. On another database, each batch commits with a checkpoint row
kept there, in this app's Checkpoint table: that database must have it (``migrate --database``),
so its router must allow it. A CSV processor reads a file, not rows: it runs on the runs' database.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import connections, router

from .sources import QuerySetSource, Source


def runs_database() -> str:
    """Return the alias of the database the runs are written to."""
    return router.db_for_write(apps.get_model("maintenance_tasks", "Run"))


def batch_database(processor: Any, source: Source) -> str:
    """Return the alias a processor's batches write to (see the module's docstring)."""
    if processor.using:
        return str(processor.using)
    if isinstance(source, QuerySetSource):
        queryset = source.collection
        # What QuerySet.update() and delete() write to: the one given to .using(), else the routers' choice.
        return queryset._db or router.db_for_write(queryset.model, **queryset._hints)
    return runs_database()


def database_problem(alias: str) -> str | None:
    """Return why batches cannot commit their checkpoint on ``alias`` (without looking into it), or None."""
    if alias not in connections.settings:
        return f"the database {alias!r} is not in DATABASES."
    if alias != runs_database() and not router.allow_migrate_model(
        alias, apps.get_model("maintenance_tasks", "Checkpoint")
    ):
        return (
            f"the database {alias!r} needs this app's checkpoint table, but DATABASE_ROUTERS do not allow it "
            f"there: let allow_migrate() return True for app_label 'maintenance_tasks' on {alias!r}."
        )
    return None


def using_problems(processor: Any) -> list[str]:
    """Return why a processor's ``using`` cannot be used (an empty list without one)."""
    using = processor.using
    if using is None:
        return []
    if not isinstance(using, str) or not using:
        return [f"using must be the alias of a database in DATABASES, or None, not {using!r}."]
    if processor.csv_collection:
        return ["using: a CSV processor (csv_collection) runs on the database of the runs; remove using."]
    return [f"using: {problem}"] if (problem := database_problem(using)) else []
