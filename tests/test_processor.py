import datetime
import json
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from maintenance_tasks import Processor
from maintenance_tasks.exceptions import MaintenanceTaskError
from testproject.testapp.maintenance import CleanFails, Color, EveryType, StrictInput


def errors(config, processor=EveryType):
    with pytest.raises(ValidationError) as error:
        processor.from_config(config)
    return error.value.message_dict


def test_values_are_typed_and_the_config_is_canonical():
    processor = EveryType.from_config(
        {
            "name": "n",
            "limit": "5",
            "ratio": 1,
            "dry_run": "yes",
            "amount": "2.25",
            "since": "2025-02-03",
            "at": "2025-02-03T04:05:06+02:00",
            "tags": "a, b",
            "ids": "[1, 2]",
            "options": '{"k": [1]}',
            "color": "green",
            "mode": "fast",
        }
    )
    assert processor.limit == 5 and processor.ratio == 1.0 and processor.dry_run is True
    assert processor.amount == Decimal("2.25")
    assert processor.since == datetime.date(2025, 2, 3)
    assert processor.at == datetime.datetime(2025, 2, 3, 2, 5, 6, tzinfo=datetime.UTC)
    assert (processor.tags, processor.ids, processor.options) == (["a", "b"], [1, 2], {"k": [1]})
    assert processor.color is Color.GREEN and processor.mode == "fast"
    assert processor.config == {
        "name": "n",
        "limit": 5,
        "ratio": 1.0,
        "dry_run": True,
        "amount": "2.25",
        "since": "2025-02-03",
        "at": "2025-02-03T02:05:06+00:00",
        "tags": ["a", "b"],
        "ids": [1, 2],
        "options": {"k": [1]},
        "color": "green",
        "mode": "fast",
    }
    # The canonical config builds the same processor again.
    assert EveryType.from_config(processor.config).config == processor.config


def test_defaults_fill_missing_parameters():
    processor = EveryType.from_config({"name": "n"})
    assert processor.limit == 10 and processor.color is Color.RED and processor.at is None
    assert processor.since == datetime.date(2024, 1, 1)


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({}, "name", "This parameter is required."),
        ({"name": "n", "limit": "ten"}, "limit", "Enter a whole number."),
        ({"name": "n", "limit": 1.5}, "limit", "Enter a whole number."),
        ({"name": "n", "limit": True}, "limit", "Enter a number, not true or false."),
        ({"name": "n", "ratio": "x"}, "ratio", "Enter a number."),
        ({"name": "n", "dry_run": "banana"}, "dry_run", "Enter true or false."),
        ({"name": "n", "amount": "1,5"}, "amount", "Enter a number."),
        ({"name": "n", "since": "2025-13-01"}, "since", "Enter a valid date."),
        ({"name": "n", "at": "yesterday"}, "at", "Enter a valid date/time."),
        ({"name": "n", "tags": "[1"}, "tags", "Enter a JSON list"),
        ({"name": "n", "ids": ["1", "x"]}, "ids", "Item 2: Enter a whole number."),
        ({"name": "n", "options": "[1]"}, "options", "Enter a JSON object."),
        ({"name": "n", "color": "blue"}, "color", "Select a valid choice. blue is not one of the available choices."),
        ({"name": "n", "mode": "slow"}, "mode", "Select a valid choice."),
        ({"name": "n", "extra": 1}, "extra", "Unknown parameter (known: name, limit"),
        ({"name": "forbidden"}, "name", "This name is forbidden."),
    ],
)
def test_bad_values_name_the_field(config, field, message):
    found = errors(config)
    assert field in found
    assert message in " ".join(found[field])


def test_config_must_be_an_object():
    with pytest.raises(ValidationError, match="must be a JSON object, not list"):
        EveryType.from_config([1])


def test_unsupported_parameter_type_is_reported():
    class Odd(Processor):
        when: complex

    with pytest.raises(TypeError, match="parameter 'when': unsupported parameter type"):
        Odd.parameters()


def test_class_settings_are_not_parameters():
    assert "batch_size" not in EveryType.parameters()
    assert "atomic" not in EveryType.parameters()
    assert list(EveryType.parameters())[:3] == ["name", "limit", "ratio"]


def test_description_is_the_first_docstring_line():
    assert EveryType.description() == "Take a parameter of every supported type."

    class Bare(Processor):
        pass

    assert Bare.description() == ""


def test_default_config_is_the_canonical_config_of_no_config():
    class Defaults(Processor):
        limit: int = 3
        color: Color = Color.GREEN

    assert Defaults.default_config() == {"limit": 3, "color": "green"}
    with pytest.raises(ValidationError):
        EveryType.default_config()  # "name" has no default


def test_check_reports_each_problem_of_the_class_with_its_id():
    class Bad(Processor):
        retry_on = ValueError
        schedule = "0 3 * *"
        expected_duration = 0
        run_on_deploy = "sometimes"

    assert [message.id for message in Bad.check()] == [
        "maintenance_tasks.E007",
        "maintenance_tasks.E010",
        "maintenance_tasks.E012",
        "maintenance_tasks.E008",
    ]
    assert Bad.schedule_problem().startswith("schedule: A cron expression has 5 fields")
    assert EveryType.check() == [] and EveryType.schedule_problem() is None


# -- bad input refused up front ------------------------------------------------------------

STRICT = {"payload": {}, "names": []}


def deep(levels):
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("given", "field", "message"),
    [
        ({"payload": {"x": float("nan")}}, "payload", "holds nan, which is not a JSON number"),
        ({"payload": {"x": [float("inf")]}}, "payload", "holds inf, which is not a JSON number"),
        ({"payload": '{"x": NaN}'}, "payload", "holds nan"),
        ({"payload": '{"x": -Infinity}'}, "payload", "holds -inf"),
        ({"payload": '{"x": ' + deep(5000) + "}"}, "payload", "nested too deep"),
        ({"payload": {"x": json.loads(deep(500))}}, "payload", "nested more than 100 levels deep"),
        ({"payload": {"x": "a\x00b"}}, "payload", "NUL character"),
        ({"payload": {"a\x00": 1}}, "payload", "has a key that holds a NUL character"),
        ({"payload": {"x": "\udcff"}}, "payload", "lone surrogate"),
        ({"payload": {"x": object()}}, "payload", "holds a object, which is not a JSON value"),
        ({"payload": {1: 2}}, "payload", "JSON object keys are strings"),
        ({"payload": object()}, "payload", "holds a object"),
        ({"payload": "[1]"}, "payload", "Enter a JSON object."),
        ({"names": ["a", "b\x00"]}, "names", "NUL character"),
        ({"names": '["a", "b\\u0000"]'}, "names", "Item 2: Null characters are not allowed."),
        ({"names": ["\ud800"]}, "names", "lone surrogate"),
        ({"names": deep(5000)}, "names", "nested too deep"),
        ({"label": "a\x00b"}, "label", "NUL character"),
        ({"label": "caf\udce9"}, "label", "lone surrogate"),
        ({"label": object()}, "label", "holds a object, which is not a JSON value"),
        ({"n": float("nan")}, "n", "holds nan"),
    ],
)
def test_values_no_database_stores_are_refused_naming_the_parameter(given, field, message):
    found = errors({**STRICT, **given}, StrictInput)
    assert list(found) == [field]
    assert message in " ".join(found[field])


@pytest.mark.parametrize("empty", [None, ""])
@pytest.mark.parametrize("name", ["n", "payload", "names", "flag"])
def test_a_parameter_that_is_not_optional_is_never_none(name, empty):
    config = {**STRICT, name: empty}
    if empty == "" and name in ("payload", "names"):  # empty text is an empty list or object: a value
        assert StrictInput.from_config(config).config[name] in ([], {})
        return
    found = errors(config, StrictInput)
    assert list(found) == [name]
    assert "This parameter is required" in found[name][0] or found[name] == ["This field is required."]


def test_only_an_optional_parameter_may_be_null():
    processor = StrictInput.from_config({**STRICT, "limit": None, "n": 3, "maybe": None})
    assert (processor.limit, processor.n, processor.maybe) == (None, 3, None)
    assert StrictInput.from_config({**STRICT, "maybe": ""}).maybe is None
    config = StrictInput.from_config({**STRICT, "maybe": "no", "flag": "off"}).config
    assert (config["maybe"], config["flag"]) == (False, False)
    assert StrictInput.from_config({**STRICT, "limit": ""}).limit is None


def test_an_empty_dict_or_list_is_a_value():
    processor = StrictInput.from_config({"payload": {}, "names": []})
    assert (processor.payload, processor.names) == ({}, [])
    assert StrictInput.from_config({"payload": "{}", "names": "[]"}).config["payload"] == {}
    assert set(errors({}, StrictInput)) == {"payload", "names"}  # missing is still missing


def test_clean_raising_another_error_is_a_validation_error_naming_the_processor():
    with pytest.raises(ValidationError) as error:
        CleanFails.from_config({})
    assert error.value.messages == ["testproject.testapp.maintenance.CleanFails.clean() failed: KeyError: 'missing'"]


def test_an_annotation_that_does_not_resolve_is_reported_as_e004():
    class Unresolved(Processor):
        fine: int = 1
        x: "UndefinedName" = 1  # noqa: F821

    with pytest.raises(TypeError, match=r"parameter 'x': the annotation 'UndefinedName' does not resolve") as error:
        Unresolved.parameters()
    assert isinstance(error.value, MaintenanceTaskError)  # the CLI and the admin report it in one line
    messages = Unresolved.check()
    assert [message.id for message in messages] == ["maintenance_tasks.E004"]
    assert "Unresolved: parameter 'x'" in messages[0].msg and "NameError" in messages[0].msg


@pytest.mark.parametrize("name", ["log", "status", "process", "collection", "on_complete", "config"])
def test_a_parameter_that_would_hide_the_processor_api_is_reported_as_e004(name):
    hiding = type("Hiding", (Processor,), {"__annotations__": {name: str}, name: "x", "__module__": __name__})
    with pytest.raises(TypeError, match=rf"parameter '{name}' would hide Processor.{name}, .*name it otherwise"):
        hiding.parameters()
    assert [message.id for message in hiding.check()] == ["maintenance_tasks.E004"]


def test_parameters_may_share_the_name_of_a_processor_setting():
    class Tunable(Processor):
        batch_size: int = 100  # a setting the bench varies per run: a value, nothing hidden
        region: str = "eu"

    assert list(Tunable.parameters()) == ["batch_size", "region"]
