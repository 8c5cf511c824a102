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
