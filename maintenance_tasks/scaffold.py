"""Write a new processor and a passing test for it into an app (``startmaintenancetask``).

The processor goes into the app's maintenance package as a module of its own when the app
has one (``maintenance/__init__.py``; ``package=True`` creates it), else into ``maintenance.py``
(created, or appended to). The test goes into the app's ``tests/`` folder when it has one, else
beside ``maintenance.py``. Nothing is ever overwritten: every refusal is a CommandError raised
before anything is written.
"""

from __future__ import annotations

import ast
import keyword
import re
from dataclasses import dataclass
from pathlib import Path

from django.apps import AppConfig
from django.core.management.base import CommandError

from .registry import MODULE_NAME, registry, short_name

#: What the processor's skeleton walks: items one by one, whole batches, no collection, or a CSV file's rows.
ITEMS, BATCH, NO_COLLECTION, CSV = "items", "batch", "no_collection", "csv"

PROCESSOR_IMPORT = "from maintenance_tasks import Processor\n"

MODULE_HEADER = (
    '''"""{docstring}"""

'''
    + PROCESSOR_IMPORT
)

CLASS_HEADER = '''

class {name}(Processor):
    """Say in one line what this task does: the admin shows it."""

    # Parameters are type-annotated class attributes, given when a run starts, e.g.:
    # since: datetime.date
    # limit: int | None = None

    # batch_size = 100  # items per batch, and rows per query
    # atomic = True  # each batch commits with its checkpoint; False when it calls other systems
'''

COLLECTION = """
    def collection(self):
        # A QuerySet (walked by primary key, in batches), a list, or any finite iterable:
        # return Post.objects.filter(slug="")
        return []
"""

BODIES = {
    ITEMS: COLLECTION
    + """
    def process(self, item):
        # The work for one item:
        # item.slug = slugify(item.title)
        # item.save(update_fields=["slug"])
        pass
""",
    BATCH: COLLECTION
    + """
    def process_batch(self, items):
        # The work for one batch; for a QuerySet, items is a QuerySet of this batch:
        # items.update(published=True)
        pass
""",
    NO_COLLECTION: """
    def process(self):
        # Without a collection(), process() is called once and does the whole task.
        pass
""",
    CSV: """
    csv_collection = True  # each run reads the CSV file it is started with, row by row
    csv_headers = ("id",)  # the columns the file must have

    def process(self, row):
        # The work for one row, a dict keyed by the header row:
        # Post.objects.filter(pk=row["id"]).update(published=True)
        pass
""",
}

TEST = '''"""Tests of the maintenance task {name}."""
{imports}
from django.test import TestCase

from maintenance_tasks.testing import run_processor
from {module} import {name}


class {name}Tests(TestCase):
    def test_runs_to_the_end(self):
        # Create the rows it should change, run it, then check them.
        run = run_processor({name}{arguments})
        self.assertEqual(run.status, "succeeded")
'''

#: What the test of each kind of processor imports and gives ``run_processor`` besides the class.
TEST_INPUT = {CSV: ("\nimport io\n", ', csv_file=io.BytesIO(b"id\\n1\\n2\\n")')}

PACKAGE_INIT = '''"""Maintenance tasks of {label}: one module per task, each found by maintenance_tasks."""
'''


@dataclass
class Change:
    """One file to write: created (it must not exist), or appended to."""

    path: Path
    text: str
    append: bool = False


def module_name_for(name: str) -> str:
    """Return the module name of a processor class name: ``BackfillSlugs`` -> ``backfill_slugs``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def check_name(name: str) -> None:
    """Refuse a NAME that is not a CamelCase class name of letters and digits."""
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", name) or keyword.iskeyword(name):
        raise CommandError(
            f"{name!r} is not a class name: give one in CamelCase, letters and digits, like BackfillSlugs."
        )
    if name == "Processor" or keyword.iskeyword(module_name_for(name)):
        raise CommandError(f"{name!r} cannot name a processor: choose another name.")


def plan(app_config: AppConfig, name: str, *, kind: str = ITEMS, package: bool = False) -> list[Change]:
    """Return the files that writing the processor ``name`` and its test into the app changes.

    Raise CommandError, naming the problem, for a bad name or anything that would be overwritten.
    """
    check_name(name)
    app = Path(app_config.path)
    module_file, package_init = app / f"{MODULE_NAME}.py", app / MODULE_NAME / "__init__.py"
    module = f"{app_config.name}.{MODULE_NAME}"  # where the test imports the processor from
    body = CLASS_HEADER.format(name=name) + BODIES[kind]
    changes = []
    if package_init.exists() or package:
        if not package_init.exists():
            if module_file.exists():
                raise CommandError(
                    f"{module_file} exists: beside a {MODULE_NAME}/ package it would no longer be imported. "
                    f"Move its processors into {package_init.parent}/ first, or leave out --package."
                )
            changes.append(Change(package_init, PACKAGE_INIT.format(label=app_config.label)))
        module = f"{module}.{module_name_for(name)}"
        header = MODULE_HEADER.format(docstring=f"The maintenance task {name}.")
        changes.append(Change(package_init.parent / f"{module_name_for(name)}.py", header + body))
    elif module_file.exists():
        changes.append(Change(module_file, appended(module_file, name, body), append=True))
    else:
        header = MODULE_HEADER.format(docstring=f"Maintenance tasks of {app_config.label}.")
        changes.append(Change(module_file, header + body))
    tests = app / "tests" if (app / "tests").is_dir() else app
    imports, arguments = TEST_INPUT.get(kind, ("", ""))
    test = TEST.format(name=name, module=module, imports=imports, arguments=arguments)
    changes.append(Change(tests / f"test_{module_name_for(name)}.py", test))
    for change in changes:
        if not change.append and change.path.exists():
            raise CommandError(f"{change.path} already exists: nothing was written.")
    prefix = f"{app_config.name}.{MODULE_NAME}."
    if same := [path for path in registry.processors() if path.startswith(prefix) and short_name(path) == name]:
        raise CommandError(f"The app {app_config.label!r} already has a processor {name}: {same[0]}.")
    return changes


def appended(module_file: Path, name: str, body: str) -> str:
    """Return the text to append to an existing ``maintenance.py`` for a new class; refuse a clash."""
    source = module_file.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, str(module_file))
    except SyntaxError as error:
        raise CommandError(f"{module_file} does not parse ({error.msg}, line {error.lineno}): fix it first.") from None
    if any(isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == name for node in tree.body):
        raise CommandError(f"{module_file} already defines {name}: nothing was written.")
    imports_processor = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "maintenance_tasks"
        and any(alias.name == "Processor" and alias.asname is None for alias in node.names)
        for node in tree.body
    )
    separator = "" if source.endswith("\n") or not source else "\n"
    return separator + ("" if imports_processor else "\n" + PROCESSOR_IMPORT) + body


def write(changes: list[Change]) -> None:
    """Write the planned files: new ones are created (never replaced), the others appended to."""
    for change in changes:
        change.path.parent.mkdir(parents=True, exist_ok=True)
        with change.path.open("a" if change.append else "x", encoding="utf-8") as file:
            file.write(change.text)
