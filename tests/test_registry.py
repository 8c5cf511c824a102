import sys
import textwrap

import pytest

from maintenance_tasks.exceptions import UnknownProcessor
from maintenance_tasks.registry import registry
from testproject.demo.maintenance import BackfillSlugs
from testproject.testapp.other import Hidden


def test_discovers_processors_of_installed_apps_by_dotted_path():
    processors = registry.processors()
    assert processors["testproject.demo.maintenance.BackfillSlugs"] is BackfillSlugs
    assert "testproject.testapp.maintenance.EveryType" in processors
    assert all(".maintenance." in path for path in processors)
    assert not any(path.endswith(".Processor") for path in processors)


def test_bare_class_name_when_unique():
    assert registry.resolve("BackfillSlugs") is BackfillSlugs


@pytest.mark.parametrize(
    "name",
    [
        "os.system",
        "subprocess.Popen",
        "testproject.demo.models.Article",  # a model
        "testproject.demo.maintenance",  # a module
        "testproject.testapp.other.Hidden",  # a processor outside maintenance.py
        "testproject.testapp.maintenance.Boom",  # not a processor
        "testproject.testapp.maintenance.Item",  # imported into maintenance.py, defined elsewhere
        "maintenance_tasks.Processor",  # the base class
        "Nope",
        "",
        "__import__('os')",
    ],
)
def test_only_discovered_processors_resolve(name):
    with pytest.raises(UnknownProcessor):
        registry.resolve(name)


def test_unknown_names_are_never_imported(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "antigravity", raising=False)
    with pytest.raises(UnknownProcessor):
        registry.resolve("antigravity.fly")
    assert "antigravity" not in sys.modules


def test_a_class_must_have_been_discovered():
    with pytest.raises(UnknownProcessor, match="is not a discovered processor"):
        registry.path_of(Hidden)
    assert registry.path_of(BackfillSlugs) == "testproject.demo.maintenance.BackfillSlugs"


def test_ambiguous_bare_name(monkeypatch):
    processors = dict(registry.processors())
    processors["testproject.testapp.maintenance.BackfillSlugs"] = type("BackfillSlugs", (BackfillSlugs,), {})
    monkeypatch.setattr(registry, "_processors", processors)
    with pytest.raises(UnknownProcessor, match="ambiguous"):
        registry.resolve("BackfillSlugs")


# -- processors in a maintenance/ package ---------------------------------------------------------


def test_discovers_the_processors_of_each_module_of_a_maintenance_package():
    from testproject.editorial.maintenance.publishing import UnpublishUntitled
    from testproject.editorial.maintenance.titles import TrimTitles

    processors = registry.processors()
    assert processors["testproject.editorial.maintenance.titles.TrimTitles"] is TrimTitles
    assert processors["testproject.editorial.maintenance.publishing.UnpublishUntitled"] is UnpublishUntitled
    assert registry.resolve("TrimTitles") is TrimTitles


PROCESSOR = textwrap.dedent("""
    from maintenance_tasks import Processor

    class {name}(Processor):
        def collection(self):
            return [1]

        def process(self, item):
            pass
""")


def test_the_package_boundary(install_app):
    app = install_app(
        {
            "maintenance/__init__.py": PROCESSOR.format(name="InPackage"),
            "maintenance/billing.py": PROCESSOR.format(name="BackfillInvoices")
            + "\nfrom testproject.testapp.other import Hidden\nfrom testproject.demo.maintenance import BackfillSlugs\n",
            "maintenance/helpers.py": "VALUE = 1\n",
            "maintenance/deeper/__init__.py": "raise AssertionError('sub-packages are never imported')\n",
            "maintenance/notes.txt": "not a module\n",
            "other.py": PROCESSOR.format(name="Outside"),
        }
    )
    found = sorted(path for path in registry.processors() if path.startswith(app))
    assert found == [f"{app}.maintenance.InPackage", f"{app}.maintenance.billing.BackfillInvoices"]
    assert f"{app}.maintenance.deeper" not in sys.modules
    for name in (
        f"{app}.maintenance.billing.Hidden",
        f"{app}.maintenance.billing.BackfillSlugs",
        f"{app}.other.Outside",
    ):
        with pytest.raises(UnknownProcessor):
            registry.resolve(name)


@pytest.mark.parametrize(
    "files",
    [{"maintenance.py": ""}, {"maintenance/__init__.py": "", "maintenance/prices.py": ""}],
    ids=["module", "package"],
)
def test_a_module_that_fails_to_import_raises_its_own_error(install_app, files):
    broken = {path: "import no_such_module_anywhere\n" for path in files if path != "maintenance/__init__.py"}
    install_app({**files, **broken})
    with pytest.raises(ModuleNotFoundError, match="no_such_module_anywhere"):
        registry.processors()


def test_the_package_wins_over_a_maintenance_py_beside_it(install_app):
    app = install_app(
        {"maintenance.py": PROCESSOR.format(name="Shadowed"), "maintenance/__init__.py": PROCESSOR.format(name="Kept")}
    )
    assert [path for path in registry.processors() if path.startswith(app)] == [f"{app}.maintenance.Kept"]
