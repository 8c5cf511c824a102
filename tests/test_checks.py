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
        ({"CHECKPOINT_INTERVAL": 0}, ["maintenance_tasks.E003"]),
        ({"CHECKPOINT_INTERVAL": "1"}, ["maintenance_tasks.E003"]),
        ({"STALE_AFTER": True}, ["maintenance_tasks.E003"]),
        ({"CHECKPOINT_INTERVAL": 0.5, "STALE_AFTER": 30}, []),
        ({"SCHEDULER_INTERVAL": 0}, ["maintenance_tasks.E003"]),
        ({"OVERDUE_AFTER": "1h"}, ["maintenance_tasks.E003"]),
        ({"RETENTION": 30}, ["maintenance_tasks.E013"]),
        ({"RETENTION": {"paused": 3}}, ["maintenance_tasks.E013"]),
        ({"RETENTION": {"errored": 0}}, ["maintenance_tasks.E014"]),
        ({"RETENTION": {"errored": "90"}}, ["maintenance_tasks.E014"]),
        ({"RETENTION": {"errored": None, "succeeded": 7.5}}, []),
        ({"OUTPUT_LINES": -1}, ["maintenance_tasks.E018"]),
        ({"OUTPUT_LINES": 10_001}, ["maintenance_tasks.E018"]),
        ({"OUTPUT_LINES": "200"}, ["maintenance_tasks.E018"]),
        ({"OUTPUT_LINES": 2.5}, ["maintenance_tasks.E018"]),
        ({"OUTPUT_LINES": True}, ["maintenance_tasks.E018"]),
        ({"OUTPUT_LINES": 0}, []),
        ({"OUTPUT_LINES": 10_000}, []),
    ],
)
def test_wrong_settings_are_reported(settings, value, expected):
    assert ids(value, settings) == expected


@pytest.mark.parametrize(
    ("old", "new"), [("STUCK_RUN_AFTER", "OVERDUE_AFTER"), ("TICK_INTERVAL", "CHECKPOINT_INTERVAL")]
)
def test_the_old_name_of_a_renamed_setting_names_the_new_one(settings, old, new):
    settings.MAINTENANCE_TASKS = {old: 3600}
    messages = [m for m in checks.run_checks(tags=[checks.Tags.compatibility]) if m.id.startswith("maintenance_tasks.")]
    assert [(m.id, m.msg) for m in messages] == [
        ("maintenance_tasks.E015", f"MAINTENANCE_TASKS[{old!r}] was renamed to {new!r}.")
    ]


def test_a_processor_with_an_unsupported_parameter_is_reported(monkeypatch):
    class Odd(Processor):
        when: complex

    processors = {**registry.processors(), "testproject.testapp.maintenance.Odd": Odd}
    monkeypatch.setattr(registry, "_processors", processors)
    messages = [m for m in checks.run_checks(tags=[checks.Tags.compatibility]) if m.id == "maintenance_tasks.E004"]
    assert len(messages) == 1
    assert "Odd: parameter 'when': unsupported parameter type" in messages[0].msg


def test_a_scheduled_processor_that_needs_a_config_or_a_bad_expected_duration_is_reported(monkeypatch):
    class NeedsShard(Processor):
        schedule = "0 3 * * *"
        expected_duration = -5
        shard: int

    processors = {**registry.processors(), "testproject.testapp.maintenance.NeedsShard": NeedsShard}
    monkeypatch.setattr(registry, "_processors", processors)
    messages = {m.id: m.msg for m in checks.run_checks(tags=[checks.Tags.compatibility]) if m.id.startswith("maint")}
    assert set(messages) == {"maintenance_tasks.E011", "maintenance_tasks.E012"}
    assert "shard: This parameter is required." in messages["maintenance_tasks.E011"]
    assert "expected_duration must be a positive" in messages["maintenance_tasks.E012"]


# -- the admin, permissions and what pages show (i12c) -------------------------------------------


@pytest.mark.parametrize(
    ("options", "warned"),
    [
        ({}, True),
        ({"transaction_mode": "DEFERRED"}, True),
        ({"transaction_mode": "IMMEDIATE"}, False),
        ({"transaction_mode": "immediate", "timeout": 30}, False),
        ({"transaction_mode": "EXCLUSIVE"}, False),
    ],
)
def test_sqlite_without_immediate_transactions_is_warned_naming_the_alias(monkeypatch, options, warned):
    from django.conf import settings

    # Not override_settings: Django warns about changing DATABASES that way; only the check reads this.
    databases = {"reports": {"ENGINE": "django.db.backends.sqlite3", "NAME": "reports.sqlite3", "OPTIONS": options}}
    monkeypatch.setattr(settings, "DATABASES", {**settings.DATABASES, **databases})
    messages = [m for m in checks.run_checks(tags=[checks.Tags.compatibility]) if m.id == "maintenance_tasks.W040"]
    assert len(messages) == warned
    if warned:
        assert "'reports'" in messages[0].msg
        assert '"transaction_mode": "IMMEDIATE"' in messages[0].hint


def test_the_testproject_takes_the_sqlite_write_lock_up_front(settings):
    for alias, database in settings.DATABASES.items():
        if database["ENGINE"].endswith("sqlite3"):
            assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE", alias
    assert not [m for m in checks.run_checks(tags=[checks.Tags.compatibility]) if m.id == "maintenance_tasks.W040"]
