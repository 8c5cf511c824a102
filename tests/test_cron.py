"""Cron expressions: one that never matches a date is refused by the check, the field validator and the form."""

import logging
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from maintenance_tasks import Processor
from maintenance_tasks.cron import cron_error, validate_cron
from maintenance_tasks.models import Schedule
from maintenance_tasks.registry import path_of, registry
from maintenance_tasks.scheduling import sync_code_schedules

from .test_admin_schedules import form_errors, post

NEVER = ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"]


@pytest.mark.parametrize("expression", NEVER)
def test_an_expression_that_never_matches_is_refused(expression):
    assert cron_error(expression) == (
        f"{expression!r} never matches a date (e.g. the 31st of a month that has 30 days at most)."
    )
    with pytest.raises(ValidationError):
        validate_cron(expression)


@pytest.mark.parametrize("expression", ["0 0 29 2 *", "0 0 31 * *", "0 0 31 2 1", "*/5 * * * *"])
def test_rare_expressions_are_accepted(expression):
    assert cron_error(expression) is None


class NeverDue(Processor):
    schedule = "0 0 31 2 *"

    def process(self):
        pass


class Nightly(Processor):
    schedule = "0 3 * * *"

    def process(self):
        pass


@pytest.fixture
def never_due(monkeypatch):
    found = {path_of(NeverDue): NeverDue, path_of(Nightly): Nightly}
    monkeypatch.setattr(registry, "_processors", {**registry.processors(), **found})
    return NeverDue


def test_a_schedule_that_never_matches_fails_the_checks(never_due):
    [message] = never_due.check()
    assert message.id == "maintenance_tasks.E010"
    assert "never matches a date" in message.msg


@pytest.mark.django_db
def test_sync_and_the_deploy_hook_skip_it_and_go_on(never_due, caplog):
    with caplog.at_level(logging.ERROR, logger="maintenance_tasks.scheduling"):
        result = sync_code_schedules()
    assert path_of(Nightly) in result.created and path_of(NeverDue) not in result.created
    assert f"{path_of(NeverDue)}: schedule: '0 0 31 2 *' never matches a date" in caplog.text
    call_command("deploy_maintenance_tasks", stdout=StringIO(), stderr=StringIO())  # no CommandError
    assert not Schedule.objects.filter(code_processor=path_of(NeverDue)).exists()


@pytest.mark.django_db
def test_the_schedule_form_refuses_it_beside_the_field(admin_client):
    errors = form_errors(post(admin_client, cron="0 0 31 2 *"))
    assert errors == {
        "cron": ["'0 0 31 2 *' never matches a date (e.g. the 31st of a month that has 30 days at most)."]
    }
    assert not Schedule.objects.exists()


@pytest.mark.django_db
def test_sync_skips_a_schedule_whose_next_time_cannot_be_found(never_due, monkeypatch, caplog):
    monkeypatch.setattr(never_due, "schedule_problem", classmethod(lambda cls: None))  # as if it passed the checks
    with caplog.at_level(logging.ERROR, logger="maintenance_tasks.scheduling"):
        result = sync_code_schedules()
    assert path_of(Nightly) in result.created and path_of(NeverDue) not in result.created
    assert f"{path_of(NeverDue)}: schedule '0 0 31 2 *': failed to find next date (not scheduled)." in caplog.text
