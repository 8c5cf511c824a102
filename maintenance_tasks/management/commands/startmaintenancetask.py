"""Write a new processor and a passing test for it into an app, as ``startapp`` writes an app."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from maintenance_tasks import scaffold


class Command(BaseCommand):
    help = (
        "Write a new processor into an app's maintenance module (a module of its own when the app has a "
        "maintenance/ package), with a docstring and a commented skeleton, and a test for it. Never overwrites."
    )
    requires_system_checks = []  # as startapp: a project whose checks fail can still get a new processor

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("app_label", help="The label of an installed app.")
        parser.add_argument("name", help="The processor's class name, in CamelCase (BackfillSlugs).")
        kind = parser.add_mutually_exclusive_group()
        for flag, const, text in (
            (
                "--batch",
                scaffold.BATCH,
                "Define process_batch(items) instead of process(item).",
            ),
            ("--no-collection", scaffold.NO_COLLECTION, "No collection(): process() is called once."),
            ("--csv", scaffold.CSV, "Read each run's CSV file: process(row) gets each row as a dict."),
        ):
            kind.add_argument(flag, dest="kind", action="store_const", const=const, help=text)
        parser.set_defaults(kind=scaffold.ITEMS)
        parser.add_argument(
            "--package",
            action="store_true",
            help="Create the app's maintenance/ package (if it has none) and put the processor in a module of its own.",
        )

    def handle(self, *, app_label: str, name: str, kind: str, package: bool, verbosity: int, **options: Any) -> None:
        try:
            app_config = apps.get_app_config(app_label)
        except LookupError:
            raise CommandError(f"There is no installed app with the label {app_label!r}.") from None
        changes = scaffold.plan(app_config, name, kind=kind, package=package)
        scaffold.write(changes)
        if verbosity:
            for change in changes:
                self.stdout.write(f"{'Appended to' if change.append else 'Created'} {change.path}")
