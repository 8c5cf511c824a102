"""Sensitive parameters: stored for the run, shown as ******** on every page, output, log line and audit entry."""

import json
import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from maintenance_tasks import Processor
from maintenance_tasks.checks import check_settings
from maintenance_tasks.models import Run, RunEvent, Schedule, Task
from maintenance_tasks.registry import path_of, registry
from maintenance_tasks.runner import Runner
from maintenance_tasks.sensitive import (
    MASK,
    declaration_problems,
    masked,
    masked_keys,
    matches_pattern,
    scrubbed,
    scrubbed_error,
    secret_values,
    sensitive_names,
)
from maintenance_tasks.status import RunStatus
from testproject.testapp.maintenance import CallPartner

from .test_admin import processor_url, run_url

pytestmark = pytest.mark.django_db

PARTNER = path_of(CallPartner)
TOKEN, PASSWORD, PIN = "tok-Zq81xvRt", "pw-Mb40kuYs", "pin-99371"
SECRETS = (TOKEN, PASSWORD, PIN)
SCHEDULES = reverse("admin:maintenance_tasks_schedule_changelist")


def partner_config(**extra):
    return {"api_token": TOKEN, "password": PASSWORD, "pin": PIN, **extra}


def start_post(**extra):
    data = {f"param-{name}": value for name, value in partner_config(**extra).items()}
    return {**data, "_start": "Start"}


def assert_secret_free(text, where):
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} appears in {where}"


# -- what is sensitive, and how it is masked --------------------------------------------


@pytest.mark.parametrize(
    "name, sensitive",
    [("api_token", True), ("PASSWORD", True), ("partnerApiKey", True), ("client_secret", True), ("region", False)],
)
def test_a_name_is_sensitive_when_it_contains_a_pattern_in_any_case(name, sensitive):
    assert matches_pattern(name) is sensitive


def test_the_setting_replaces_the_patterns(settings):
    settings.MAINTENANCE_TASKS = {"SENSITIVE_PARAMETERS": ["region"]}
    assert matches_pattern("region") and not matches_pattern("api_token")
    assert sensitive_names(CallPartner) == {"region", "pin"}  # ``sensitive`` applies whatever the patterns


def test_a_processor_names_its_sensitive_parameters_and_patterns_add_others():
    assert sensitive_names(CallPartner) == {"api_token", "password", "pin"}
    task = Task(processor=PARTNER, config=partner_config(region="eu", fail=False))
    assert task.shown_config == {"api_token": MASK, "password": MASK, "pin": MASK, "region": "eu", "fail": False}
    assert (
        str(task) == f'{PARTNER} {{"api_token":"{MASK}","fail":false,"password":"{MASK}","pin":"{MASK}","region":"eu"}}'
    )
    assert task.secrets == sorted(SECRETS, key=len, reverse=True)


def test_a_processor_gone_from_the_code_still_masks_names_matching_the_patterns():
    task = Task(processor="gone.Processor", config={"api_key": "abcdef", "pin": "1234", "n": 3})
    assert task.shown_config == {"api_key": MASK, "pin": "1234", "n": 3}


def test_a_processor_whose_parameters_do_not_resolve_still_shows_its_runs_masked(monkeypatch):
    class Broken(Processor):
        sensitive = "pin"  # not a tuple: check E037
        pin: "Undefined"  # noqa: F821 (check E004)

    monkeypatch.setattr(registry, "_processors", {"x.Broken": Broken})
    task = Task(processor="x.Broken", config={"pin": "1234", "api_token": "abcdef"})
    assert task.shown_config == {"pin": "1234", "api_token": MASK}  # the patterns still apply
    assert declaration_problems(Broken) == ["sensitive must be a tuple of parameter names, not 'pin'."]


def test_metadata_keys_are_masked_at_any_depth_and_none_is_left_as_it_is():
    metadata = {"ticket": "OPS-1", "partner": {"api_key": "k-1", "hosts": [{"Password": "p"}]}}
    assert masked_keys(metadata) == {"ticket": "OPS-1", "partner": {"api_key": MASK, "hosts": [{"Password": MASK}]}}
    assert masked({"password": None, "n": 1}, {"password"}) == {"password": None, "n": 1}


def test_free_text_masks_each_value_longest_first_and_skips_very_short_ones():
    secrets = secret_values({"a": "abcd", "b": "abcdef", "c": "ab", "d": ["wxyz1"], "e": True}, "abcde")
    assert secrets == ["abcdef", "wxyz1", "abcd"]  # "ab" is too short to mask in free text, True is no text
    assert scrubbed("abcdef then abcd, ab", secrets) == f"{MASK} then {MASK}, ab"


def test_a_validation_error_keeps_its_fields_and_codes_with_the_values_masked():
    error = ValidationError({"api_token": [ValidationError(f"bad {TOKEN}", code="bad")], "n": ["Required."]})
    masked_error = scrubbed_error(error, [TOKEN])
    assert masked_error.message_dict == {"api_token": [f"bad {MASK}"], "n": ["Required."]}
    assert masked_error.error_dict["api_token"][0].code == "bad"


# -- checks -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["token", ["token", ""], [1]])
def test_a_bad_setting_is_check_e018(settings, value):
    settings.MAINTENANCE_TASKS = {"SENSITIVE_PARAMETERS": value}
    assert [error.id for error in check_settings()] == ["maintenance_tasks.E019"]


def test_sensitive_naming_no_parameter_is_check_e036_and_refused_at_start():
    class Typo(Processor):
        sensitive = ("api_tokn",)
        api_token: str

    (problem,) = Typo.definition_problems()
    assert problem == (
        "maintenance_tasks.E037",
        "sensitive names api_tokn, which are not parameters (known: api_token).",
    )


# -- errors that would repeat a value -------------------------------------------------------


def test_config_errors_never_repeat_a_sensitive_value():
    with pytest.raises(ValidationError) as caught:
        CallPartner.from_config(partner_config(api_token=f"revoked-{TOKEN}"))
    assert caught.value.message_dict == {"api_token": [f"The token {MASK} is revoked."]}


def test_the_start_form_uses_password_inputs_and_never_echoes_a_value(admin_client):
    page = admin_client.get(processor_url(PARTNER)).content.decode()
    assert 'type="password" name="param-api_token"' in page and 'type="password" name="param-pin"' in page
    assert 'type="text" name="param-region"' in page
    response = admin_client.post(processor_url(PARTNER), start_post(api_token=f"revoked-{TOKEN}", region="us"))
    assert response.status_code == 400
    html = response.content.decode()
    assert f"The token {MASK} is revoked." in html
    assert 'value="us"' in html  # what is not sensitive is shown again
    assert_secret_free(html, "the start form after an error")
    assert not Run.objects.exists()


def test_a_sensitive_parameter_left_empty_takes_its_default(admin_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(processor_url(PARTNER), start_post(pin=""))
    assert response.status_code == 302
    assert Run.objects.get().task.config["pin"] == ""


def test_a_link_never_prefills_a_sensitive_parameter(admin_client):
    html = admin_client.get(processor_url(PARTNER), {"api_token": TOKEN, "region": "us"}).content.decode()
    assert "“api_token” is sensitive: it is not taken from a link; type it in." in html
    assert 'value="us"' in html
    assert_secret_free(html, "a prefilled start form")


def test_a_schedule_shown_masked_keeps_its_stored_values_when_saved(admin_client):
    task = Task.objects.for_config(PARTNER, CallPartner.from_config(partner_config()).config)
    schedule = Schedule.objects.create(task=task, cron="0 3 * * *", next_run_at=timezone.now() + timedelta(days=1))
    url = reverse("admin:maintenance_tasks_schedule_change", args=[schedule.pk])
    html = admin_client.get(url).content.decode()
    assert_secret_free(html, "the schedule's change page")
    assert f"Sensitive values show as {MASK}" in html
    shown = {**task.shown_config, "region": "us"}
    data = {"processor": PARTNER, "config": json.dumps(shown), "cron": "0 4 * * *", "enabled": "on"}
    response = admin_client.post(url, {**data, "run_at_0": "", "run_at_1": ""})
    assert response.status_code == 302, response.content.decode()
    schedule.refresh_from_db()
    assert schedule.task.config == partner_config(region="us", fail=False)


# -- every page, output, log line and audit entry of runs with sensitive values -----------


def test_no_page_output_log_or_audit_entry_shows_a_sensitive_value(
    admin_client, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG, logger="maintenance_tasks")
    outputs = []

    def command(*args):
        out, err = StringIO(), StringIO()
        try:
            call_command(*args, stdout=out, stderr=err)
        except CommandError as error:
            outputs.append(str(error))
        outputs.extend([out.getvalue(), err.getvalue()])

    with django_capture_on_commit_callbacks(execute=True):
        # Started from the admin, the command line (with an error in the config, then fine) and Python.
        assert admin_client.post(processor_url(PARTNER), start_post(region="eu")).status_code == 302
        cli = ["--arg", f"api_token={TOKEN}", "--arg", f"password={PASSWORD}", "--arg", f"pin={PIN}"]
        command("run_maintenance_task", PARTNER, *cli, "--arg", "region=us")
        command("run_maintenance_task", PARTNER, "--config", json.dumps(partner_config(api_token=f"revoked-{TOKEN}")))
        metadata = {"ticket": "OPS-1", "partner_api_key": f"{TOKEN}-meta"}
        Runner.run(PARTNER, partner_config(region="asia"), metadata=metadata)
        # A run that errors with a message repeating the values, whose on_error() fails saying the token.
        command("run_maintenance_task", PARTNER, *cli, "--arg", "fail=true")
        # A schedule made in the admin, started by the scheduler.
        schedule_add = reverse("admin:maintenance_tasks_schedule_add")
        config = json.dumps(partner_config(region="sched"))
        response = admin_client.post(
            schedule_add, {"processor": PARTNER, "config": config, "cron": "0 3 * * *", "enabled": "on"}
        )
        assert response.status_code == 302
        Schedule.objects.update(next_run_at=timezone.now() - timedelta(minutes=1))
        command("maintenance_scheduler", "--once")
        command("deploy_maintenance_tasks", "--status")
        command("deploy_maintenance_tasks", "--todo")
        command("recover_maintenance_runs")
        command("maintenance_runs", "list")
        command("maintenance_runs", "list", "--json")

    for run in Run.objects.all():
        command("maintenance_runs", "show", str(run.pk))
        command("maintenance_runs", "show", str(run.pk), "--json")
    runs = list(Run.objects.select_related("task").order_by("pk"))
    assert [run.task.config["region"] for run in runs] == ["eu", "us", "asia", "eu", "sched"]
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * 3 + [RunStatus.ERRORED, RunStatus.SUCCEEDED]
    assert all(run.task.config["api_token"] == TOKEN for run in runs)  # stored as given: the processor needs it
    errored = runs[3]
    assert errored.error_message == f"the partner refused token {MASK} (password {MASK}, pin {MASK})"
    assert "ValueError: the partner refused token ********" in errored.backtrace

    pages = [
        "/admin/",
        reverse("admin:maintenance_tasks_task_changelist"),
        processor_url(PARTNER),
        reverse("admin:maintenance_tasks_run_changelist"),
        SCHEDULES,
        reverse("admin:maintenance_tasks_schedule_change", args=[Schedule.objects.get().pk]),
        *(run_url(run) for run in runs),
        *(reverse("admin:maintenance_tasks_run_progress", args=[run.pk]) for run in runs),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert_secret_free(response.content.decode(), url)
    assert MASK in admin_client.get(run_url(runs[2])).content.decode()  # the config and the metadata key, masked

    said = "\n".join(outputs)
    assert f'Run {runs[1].pk} of {PARTNER} {{"api_token":"{MASK}"' in said  # the command names the task, masked
    assert f"Started run {runs[4].pk} of {PARTNER} {{" in said  # so does the scheduler
    assert f"The token {MASK} is revoked." in said
    assert f"errored: ValueError: the partner refused token {MASK}" in said
    assert_secret_free(said, "the commands' output")

    assert "could not report the failure of ********" in caplog.text  # on_error() failed, logged masked
    assert_secret_free(caplog.text, "the logs")
    for record in caplog.records:
        assert_secret_free(record.getMessage(), "a log record")

    events = json.dumps(list(RunEvent.objects.values("action", "source", "detail")), ensure_ascii=False)
    assert '"partner_api_key": "********"' in events and "callback_failed" in events
    assert_secret_free(events, "the audit trail")
    stored = json.dumps(
        list(Run.objects.values("error_message", "backtrace", "output", "status_line", "result", "dry_run_report")),
        ensure_ascii=False,
    )
    assert_secret_free(stored, "the runs' stored errors and output")
