import pytest
from django.core import checks

from maintenance_tasks import Processor
from maintenance_tasks.registry import registry


def ids(settings_value, settings):
    settings.MAINTENANCE_TASKS = settings_value
    return [
        message.id
        for message in checks.run_checks(tags=[checks.Tags.compatibility])
        if message.id.startswith("maintenance_tasks.")
    ]


def test_defaults_pass(settings):
    del settings.MAINTENANCE_TASKS
    assert [
        m for m in checks.run_checks(tags=[checks.Tags.compatibility]) if m.id.startswith("maintenance_tasks.")
    ] == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], ["maintenance_tasks.E001"]),
        ({"TICKS": 1}, ["maintenance_tasks.E002"]),
        ({"TICK_INTERVAL": 0}, ["maintenance_tasks.E003"]),
        ({"TICK_INTERVAL": "1"}, ["maintenance_tasks.E003"]),
        ({"STALE_AFTER": True}, ["maintenance_tasks.E003"]),
        ({"TICK_INTERVAL": 0.5, "STALE_AFTER": 30}, []),
    ],
)
def test_wrong_settings_are_reported(settings, value, expected):
    assert ids(value, settings) == expected


def test_a_processor_with_an_unsupported_parameter_is_reported(monkeypatch):
    class Odd(Processor):
        when: complex

    processors = {**registry.processors(), "testproject.testapp.maintenance.Odd": Odd}
    monkeypatch.setattr(registry, "_processors", processors)
    messages = [m for m in checks.run_checks(tags=[checks.Tags.compatibility]) if m.id == "maintenance_tasks.E004"]
    assert len(messages) == 1
    assert "Odd: parameter 'when': unsupported parameter type" in messages[0].msg
