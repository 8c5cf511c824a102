"""The foreground command refuses bad input in one line (exit 2), and records no value it was given."""

import json
import sys

import pytest
from django.core import checks
from django.core.management import ManagementUtility, call_command
from django.core.management.base import CommandError

from maintenance_tasks import Processor
from maintenance_tasks.actors import command_line
from maintenance_tasks.models import Run, Task
from maintenance_tasks.registry import registry
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Seen

STRICT = "testproject.testapp.maintenance.StrictInput"


class Unresolved(Processor):
    """A parameter annotated with a name that does not resolve."""

    x: "UndefinedName" = 1  # noqa: F821

    def process(self):
        pass


def cli(capsys, *argv):
    """Run the command as from a shell, in this process; return its exit status and stderr lines."""
    with pytest.raises(SystemExit) as exit_:
        ManagementUtility(["manage.py", "run_maintenance_task", *argv]).execute()
    return exit_.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--config", "{not json"],
            "CommandError: --config: Enter a JSON object: Expecting property name enclosed in double quotes: line 1 column 2 (char 1).",
        ),
        (["--config", "[" * 5000], "CommandError: --config: Enter a JSON object: nested too deep."),
        (["--config", "[1]"], "CommandError: --config must be a JSON object, not list."),
        (["--arg", "novalue"], "CommandError: --arg: expected NAME=VALUE, got 'novalue'."),
        (["--force"], "CommandError: --force goes only with --resume RUN_ID."),
    ],
)
def test_bad_options_are_one_line_and_exit_2(capsys, argv, message):
    code, lines = cli(capsys, "RecordOnce", *argv)
    assert (code, lines) == (2, [message])


def refused(*argv):
    with pytest.raises(CommandError) as error:
        call_command("run_maintenance_task", *argv, verbosity=0)
    assert error.value.returncode == 2
    assert "\n" not in str(error.value)
    return str(error.value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arg", "n="], "n: This field is required."),
        (
            ["--config", '{"n": null}'],
            "n: This parameter is required: only a parameter annotated X | None may be null.",
        ),
        (["--config", '{"payload": {"x": NaN}}'], "payload: The value holds nan, which is not a JSON number."),
        (["--arg", 'payload={"x": Infinity}'], "payload: The value holds inf"),
        (["--arg", "label=a\x00b"], "label: The value holds a NUL character"),
        (["--arg", "label=caf\udce9"], "label: The value holds a lone surrogate"),
        (["--arg", "names=a,\udce9"], "names: The value holds a lone surrogate"),
    ],
)
def test_values_no_database_stores_are_refused_and_nothing_is_saved(argv, message):
    base = ["--arg", "names=[]"] if "payload" in " ".join(argv) else ["--arg", "names=[]", "--arg", "payload={}"]
    assert message in refused(STRICT, *base, *argv)
    assert not Task.objects.exists() and not Run.objects.exists()


@pytest.mark.django_db
def test_empty_dict_and_list_and_a_null_optional_run():
    call_command("run_maintenance_task", STRICT, "--config", '{"payload": {}, "names": [], "limit": null}', verbosity=0)
    assert list(Seen.objects.values_list("value", flat=True)) == ["strict:0:0:0:None"]


@pytest.mark.django_db
def test_clean_raising_another_error_is_bad_input():
    assert refused("CleanFails") == (
        "Invalid config for CleanFails: testproject.testapp.maintenance.CleanFails.clean() failed: KeyError: 'missing'"
    )
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_an_unresolved_annotation_is_check_e004_and_refuses_only_its_processor(monkeypatch):
    path = f"{__name__}.Unresolved"
    monkeypatch.setattr(registry, "_processors", {**registry.processors(), path: Unresolved})
    found = [m for m in checks.run_checks(tags=[checks.Tags.compatibility]) if m.id.startswith("maintenance_tasks.")]
    assert [(m.id, m.obj) for m in found] == [("maintenance_tasks.E004", Unresolved)]
    assert found[0].msg.startswith(f"{path}: parameter 'x': the annotation 'UndefinedName' does not resolve")
    message = refused("Unresolved")
    assert message.startswith("parameter 'x': the annotation 'UndefinedName' does not resolve (NameError")
    call_command("run_maintenance_task", "RecordOnce", verbosity=0)  # every other processor runs
    assert Run.objects.get().status == RunStatus.SUCCEEDED


@pytest.mark.django_db
def test_the_recorded_command_line_has_names_and_no_values(monkeypatch):
    argv = [
        "manage.py",
        "run_maintenance_task",
        STRICT,
        "--arg",
        "api_token=s3cret",
        "--config",
        '{"payload": {"k": "s3cret"}, "names": []}',
    ]
    monkeypatch.setattr(sys, "argv", argv)
    call_command(*argv[1:], verbosity=0)
    run = Run.objects.get()
    expected = ["run_maintenance_task", STRICT, "--arg", "api_token=…", "--config", '{"payload": "…", "names": "…"}']
    assert run.metadata["argv"] == expected
    created = run.events.get(action="created")
    assert created.detail["argv"] == expected
    assert all("s3cret" not in json.dumps(event.detail) for event in run.events.all())
    assert "s3cret" not in json.dumps(run.metadata)


def test_command_line_keeps_names_and_hides_values():
    assert command_line(
        ["run_maintenance_task", "Proc", "--arg", "api_token=x", "--resume", "3", "--x=y=z", "--", "q"]
    ) == [
        "run_maintenance_task",
        "Proc",
        "--arg",
        "api_token=…",
        "--resume",
        "…",
        "--x=y=…",
        "--",
        "…",
    ]
    assert command_line(["deploy_maintenance_tasks", "--skip", "bad\udcff"]) == [
        "deploy_maintenance_tasks",
        "--skip",
        "…",
    ]
    assert command_line(["cmd", "na\udcffme"]) == ["cmd", "na\\udcffme"]
