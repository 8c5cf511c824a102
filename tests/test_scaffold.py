"""``startmaintenancetask``: a processor and a passing test for it, written into an app."""

import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from maintenance_tasks.registry import registry
from maintenance_tasks.scaffold import module_name_for
from tests.conftest import ROOT, deadline
from tests.test_registry import PROCESSOR


def start(*args):
    call_command("startmaintenancetask", *args, verbosity=0)


def tree(folder):
    """Return every file below ``folder`` with its text."""
    return {str(path.relative_to(folder)): path.read_text() for path in sorted(folder.rglob("*.py"))}


@pytest.mark.parametrize(
    ("name", "module"),
    [("BackfillSlugs", "backfill_slugs"), ("HTTPCleanup", "http_cleanup"), ("Fix2Rows", "fix2_rows")],
)
def test_module_names(name, module):
    assert module_name_for(name) == module


def test_writes_maintenance_py_and_a_test_beside_it(install_app, tmp_path):
    app = install_app({})
    start(app, "BackfillSlugs")
    source = (tmp_path / app / "maintenance.py").read_text()
    assert source.startswith(f'"""Maintenance tasks of {app}."""\n\nfrom maintenance_tasks import Processor\n\n\nclass')
    assert '    """Say in one line what this task does' in source
    assert "    def process(self, item):" in source
    test = (tmp_path / app / "test_backfill_slugs.py").read_text()
    assert f"from {app}.maintenance import BackfillSlugs" in test
    assert "run = run_processor(BackfillSlugs)" in test
    registry.clear()
    assert f"{app}.maintenance.BackfillSlugs" in registry.processors()


def test_appends_to_an_existing_maintenance_py(install_app, tmp_path):
    app = install_app({"maintenance.py": '"""Old tasks."""\n\nVALUE = 1', "tests/__init__.py": ""})
    start(app, "FirstTask", "--batch")
    start(app, "SecondTask", "--no-collection")
    source = (tmp_path / app / "maintenance.py").read_text()
    assert source.startswith(
        '"""Old tasks."""\n\nVALUE = 1\n\nfrom maintenance_tasks import Processor\n\n\nclass FirstTask'
    )
    assert source.count("from maintenance_tasks import Processor") == 1
    assert "    def process_batch(self, items):" in source
    assert "    def process(self):" in source
    compile(source, "maintenance.py", "exec")
    assert sorted(tree(tmp_path / app / "tests")) == ["__init__.py", "test_first_task.py", "test_second_task.py"]


def test_a_module_of_its_own_in_the_package_form(install_app, tmp_path):
    app = install_app({"maintenance/__init__.py": "", "maintenance/billing.py": ""})
    start(app, "BackfillInvoices")
    source = (tmp_path / app / "maintenance" / "backfill_invoices.py").read_text()
    assert source.startswith('"""The maintenance task BackfillInvoices."""\n')
    assert (
        f"from {app}.maintenance.backfill_invoices import BackfillInvoices"
        in (tmp_path / app / "test_backfill_invoices.py").read_text()
    )
    assert (tmp_path / app / "maintenance" / "billing.py").read_text() == ""


def test_package_creates_the_package(install_app, tmp_path):
    app = install_app({})
    start(app, "TrimNames", "--package")
    assert sorted(tree(tmp_path / app)) == [
        "__init__.py",
        "maintenance/__init__.py",
        "maintenance/trim_names.py",
        "test_trim_names.py",
    ]
    registry.clear()
    assert f"{app}.maintenance.trim_names.TrimNames" in registry.processors()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "BackfillSlugs"], "There is no installed app with the label 'nope'."),
        (["{app}", "backfill_slugs"], "'backfill_slugs' is not a class name: give one in CamelCase"),
        (["{app}", "Backfill-Slugs"], "'Backfill-Slugs' is not a class name"),
        (["{app}", "Backfill Slugs"], "'Backfill Slugs' is not a class name"),
        (["{app}", "None"], "'None' is not a class name"),
        (["{app}", "If"], "'If' cannot name a processor"),
        (["{app}", "Processor"], "'Processor' cannot name a processor"),
        (["{app}", "Existing"], "maintenance.py already defines Existing: nothing was written."),
        (["{app}", "Helper"], "maintenance.py already defines Helper: nothing was written."),
        (["{app}", "Tested"], "test_tested.py already exists: nothing was written."),
        (["{app}", "Broken", "--package"], "maintenance.py exists: beside a maintenance/ package it would no longer"),
    ],
)
def test_refusals_write_nothing(install_app, tmp_path, args, message):
    files = {
        "maintenance.py": "from maintenance_tasks import Processor\n\n\nclass Existing(Processor):\n"
        "    def process(self):\n        pass\n\n\nclass Helper:\n    pass\n",
        "test_tested.py": "# a test of its own\n",
    }
    app = install_app(files)
    before = tree(tmp_path)
    with pytest.raises(CommandError) as caught:
        start(*[arg.format(app=app) for arg in args])
    assert message.format(app=app) in str(caught.value)
    assert tree(tmp_path) == before


def test_a_processor_of_the_same_name_in_another_module_of_the_package_is_refused(install_app, tmp_path):
    app = install_app({"maintenance/__init__.py": "", "maintenance/billing.py": PROCESSOR.format(name="FixTotals")})
    before = tree(tmp_path)
    with pytest.raises(CommandError, match=rf"already has a processor FixTotals: {app}.maintenance.billing.FixTotals."):
        start(app, "FixTotals")
    assert tree(tmp_path) == before


def test_a_maintenance_py_that_does_not_parse_is_refused(install_app, tmp_path):
    app = install_app({"maintenance/__init__.py": "", "tests/__init__.py": ""})
    (tmp_path / app / "maintenance.py").write_text("def broken(:\n")
    (tmp_path / app / "maintenance" / "__init__.py").unlink()
    (tmp_path / app / "maintenance").rmdir()
    with pytest.raises(CommandError, match=r"maintenance.py does not parse \(.*line 1\): fix it first"):
        start(app, "Anything")


def test_batch_and_no_collection_exclude_each_other(install_app):
    app = install_app({})
    with pytest.raises(CommandError, match="not allowed with argument"):
        start(app, "Both", "--batch", "--no-collection")


SETTINGS = """
from testproject.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "genmodule", "genpackage"]  # noqa: F405
MEDIA_ROOT = {media!r}  # where the CSV files of the generated tests' runs go
"""


@pytest.mark.processes
def test_the_generated_processors_pass_the_checks_and_their_tests_pass(tmp_path):
    """Each kind, in each form, written by the command, checked, and its tests run by pytest."""
    for app, files in {"genmodule": ["__init__.py"], "genpackage": ["__init__.py", "tests/__init__.py"]}.items():
        for name in files:
            (tmp_path / app / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / app / name).write_text("")
    (tmp_path / "gensettings.py").write_text(SETTINGS.format(media=str(tmp_path / "media")))
    (tmp_path / "pytest.ini").write_text("[pytest]\nDJANGO_SETTINGS_MODULE = gensettings\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "DJANGO_SETTINGS_MODULE": "gensettings"}
    # The generated tests get a test database of their own, beside the one of this suite.
    env["TEST_DB_NAME"] = f"{os.environ.get('TEST_DB_NAME') or 'test'}_generated"

    def run(*args):
        result = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=deadline(300)
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    for args in (
        ["genmodule", "EachItem"],
        ["genmodule", "EachBatch", "--batch"],
        ["genmodule", "OnceOnly", "--no-collection"],
        ["genpackage", "EachItem", "--package"],
        ["genpackage", "EachBatch", "--batch"],
        ["genpackage", "OnceOnly", "--no-collection"],
        ["genmodule", "EachRow", "--csv"],
        ["genpackage", "EachRow", "--csv"],
    ):
        out = run("-m", "django", "startmaintenancetask", *args)
        assert "Created" in out
    assert "System check identified no issues" in run("-m", "django", "check")
    listed = run("-m", "django", "shell", "-v0", "-c", "from maintenance_tasks.registry import registry; "
                 "print(sorted(p for p in registry.processors() if p.startswith('gen')))")  # fmt: skip
    assert listed.strip() == str(
        [
            "genmodule.maintenance.EachBatch",
            "genmodule.maintenance.EachItem",
            "genmodule.maintenance.EachRow",
            "genmodule.maintenance.OnceOnly",
            "genpackage.maintenance.each_batch.EachBatch",
            "genpackage.maintenance.each_item.EachItem",
            "genpackage.maintenance.each_row.EachRow",
            "genpackage.maintenance.once_only.OnceOnly",
        ]
    )
    ini, apps = (
        ["-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path)],
        [str(tmp_path / "genmodule"), str(tmp_path / "genpackage")],
    )
    out = run("-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "--create-db", *ini, *apps)
    assert "8 passed" in out, out
