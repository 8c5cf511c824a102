"""Durations a date cannot be moved by (inf, nan, 1e15 seconds): refused by the checks, harmless if they slip through."""

import datetime
import math

import pytest
from django.core import checks

from maintenance_tasks import Processor
from maintenance_tasks.conf import MAX_SECONDS, app_settings
from maintenance_tasks.overdue import expected_duration, overdue_for
from maintenance_tasks.registry import path_of, registry
from maintenance_tasks.scheduling import ensure_scheduler, scheduler_pass

from .factories import RunFactory
from .test_admin import INDEX, processor_url, run_url

HUGE = [float("inf"), float("nan"), 1e15, -float("inf")]


def check_ids(settings, value):
    settings.MAINTENANCE_TASKS = value
    return [m.id for m in checks.run_checks(tags=[checks.Tags.compatibility]) if m.id.startswith("maintenance_tasks.")]


@pytest.mark.parametrize("key", ["OVERDUE_AFTER", "STALE_AFTER", "SCHEDULER_INTERVAL", "CHECKPOINT_INTERVAL"])
@pytest.mark.parametrize("value", HUGE)
def test_a_duration_setting_must_be_finite_and_fit_a_date(settings, key, value):
    assert check_ids(settings, {key: value}) == ["maintenance_tasks.E003"]


@pytest.mark.parametrize("days", [1e300, float("inf"), float("nan"), 10**9])
def test_a_retention_must_be_finite_and_fit_a_date(settings, days):
    assert check_ids(settings, {"RETENTION": {"succeeded": days}}) == ["maintenance_tasks.E014"]


def test_a_hundred_years_is_accepted(settings):
    assert check_ids(settings, {"OVERDUE_AFTER": MAX_SECONDS, "RETENTION": {"succeeded": 36500}}) == []


class Endless(Processor):
    expected_duration = float("inf")

    def process(self):
        pass


@pytest.fixture
def endless(monkeypatch):
    monkeypatch.setattr(registry, "_processors", {**registry.processors(), path_of(Endless): Endless})
    return Endless


@pytest.mark.parametrize("value", [*HUGE, datetime.timedelta.max])
def test_an_expected_duration_must_be_finite_and_fit_a_date(endless, monkeypatch, value):
    monkeypatch.setattr(endless, "expected_duration", value)
    assert [m.id for m in endless.check()] == ["maintenance_tasks.E012"]


@pytest.mark.parametrize("value", [*HUGE, datetime.timedelta.max, "1h"])
def test_expected_duration_reads_a_value_that_slipped_through_without_raising(endless, monkeypatch, settings, value):
    monkeypatch.setattr(endless, "expected_duration", value)
    duration = expected_duration(path_of(endless))
    settings.MAINTENANCE_TASKS = {"OVERDUE_AFTER": 60}
    fallback = expected_duration(path_of(endless))
    assert duration <= datetime.timedelta(seconds=MAX_SECONDS) and fallback <= duration


def test_settings_that_slipped_through_read_as_durations(settings):
    settings.MAINTENANCE_TASKS = {"OVERDUE_AFTER": float("inf"), "STALE_AFTER": float("nan"), "SCHEDULER_INTERVAL": 1e300,
                                  "RETENTION": {"succeeded": 1e300, "errored": float("nan")}}  # fmt: skip
    assert (app_settings.OVERDUE_AFTER, app_settings.SCHEDULER_INTERVAL) == (MAX_SECONDS, MAX_SECONDS)
    assert app_settings.STALE_AFTER == 60.0  # the default
    assert app_settings.RETENTION == {"succeeded": MAX_SECONDS / 86400, "cancelled": 30, "errored": 90}
    assert not any(math.isnan(value) for value in (app_settings.STALE_AFTER, *app_settings.RETENTION.values()))


@pytest.mark.django_db
@pytest.mark.parametrize("overdue_after", [float("inf"), float("nan"), 1e15])
def test_pages_and_scheduler_passes_work_with_durations_that_slipped_through(
    endless, admin_client, settings, overdue_after
):
    settings.MAINTENANCE_TASKS = {"OVERDUE_AFTER": overdue_after, "STALE_AFTER": float("nan"),
                                  "SCHEDULER_INTERVAL": float("inf"), "RETENTION": {"succeeded": 1e300}}  # fmt: skip
    endless_run = RunFactory(running=True, task__processor=path_of(endless), task__config={})
    other = RunFactory(running=True)
    assert overdue_for(endless_run) is None and overdue_for(other) is None
    for url in (INDEX, processor_url(path_of(endless)), run_url(endless_run), run_url(other)):
        assert admin_client.get(url).status_code == 200, url
    result = scheduler_pass()
    assert result.overdue == [] and result.pruned == {"succeeded": 0, "cancelled": 0, "errored": 0}
    ensure_scheduler()
