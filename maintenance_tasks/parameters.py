"""Typed parameters: a processor's annotated attributes as form fields, and their JSON form."""

from __future__ import annotations

import datetime
import enum
import json
import math
import sys
import types
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from django import forms
from django.core.exceptions import ValidationError

from .exceptions import InvalidParameters

#: How deep a ``dict`` or ``list`` parameter (and a run's metadata) may nest; JSON deeper than this
#: is refused up front rather than crashing the encoder or the database later (``RecursionError``).
MAX_JSON_DEPTH = 100


def text_problem(text: str) -> str | None:
    """Return why a string cannot be stored in every database (NUL, lone surrogate), or None."""
    if "\x00" in text:
        return "holds a NUL character (\\x00), which databases cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate (not valid Unicode), which databases cannot store"
    return None


def json_problem(value: Any, depth: int = 0) -> str | None:
    """Return why ``value`` is not JSON that every database stores as given, or None.

    Refuses NaN and infinities (``allow_nan=False``), nesting deeper than ``MAX_JSON_DEPTH``,
    NUL characters and lone surrogates in strings and keys, and anything that is not a JSON value.
    """
    if depth > MAX_JSON_DEPTH:
        return f"is nested more than {MAX_JSON_DEPTH} levels deep"
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"holds {value!r}, which is not a JSON number"
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, list | tuple):
        items: Any = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
        for key in value:
            if not isinstance(key, str):
                return f"has the key {key!r}: JSON object keys are strings"
            if problem := text_problem(key):
                return f"has a key that {problem}"
    else:
        return f"holds a {type(value).__name__}, which is not a JSON value"
    for _, item in items:
        if problem := json_problem(item, depth + 1):
            return problem
    return None


def validate_json(value: Any) -> None:
    """Refuse a typed parameter value whose JSON form the database or the encoder would refuse."""
    if problem := json_problem(to_json(value)):
        raise ValidationError(f"The value {problem}.", code="invalid")


def loads(text: str, what: str) -> Any:
    """Parse JSON text; raise ValidationError (not RecursionError) for what cannot be parsed."""
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValidationError(f"Enter {what}: {error}.", code="invalid") from error
    except RecursionError:
        raise ValidationError(f"Enter {what}: nested too deep.", code="invalid") from None


class StrictBooleanField(forms.BooleanField):
    """A boolean that refuses anything but a clear yes or no (``"banana"`` is not ``True``)."""

    TRUE = frozenset({"true", "1", "yes", "on"})
    FALSE = frozenset({"false", "0", "no", "off"})

    def to_python(self, value: Any) -> bool | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # no value (an unchecked checkbox is False: its widget says so)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in self.TRUE | self.FALSE:
            return value.strip().lower() in self.TRUE
        raise ValidationError("Enter true or false.", code="invalid")

    def validate(self, value: Any) -> None:
        """Accept ``False``: a parameter that is false is still given; refuse no value unless optional."""
        if value is None and self.required:
            raise ValidationError(self.error_messages["required"], code="required")


class StrictNumberMixin:
    """Refuse booleans where a number is expected (JSON ``true`` is not ``1``)."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValidationError("Enter a number, not true or false.", code="invalid")
        return super().to_python(value)  # type: ignore[misc]


class IntegerParameterField(StrictNumberMixin, forms.IntegerField):
    pass


class FloatParameterField(StrictNumberMixin, forms.FloatField):
    pass


class DecimalParameterField(StrictNumberMixin, forms.DecimalField):
    pass


class ContainerField(forms.Field):
    """A field whose empty value (``[]``, ``{}``) is a value: only a missing one is refused."""

    def validate(self, value: Any) -> None:
        if value is None and self.required:
            raise ValidationError(self.error_messages["required"], code="required")


class ListField(ContainerField):
    """A list of values: a JSON list, a JSON array string, or one value per line or comma."""

    widget = forms.Textarea(attrs={"rows": 3})

    def __init__(self, child: forms.Field, **kwargs: Any) -> None:
        self.child = child
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> list[Any] | None:
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                value = loads(text, "a JSON list")
            else:
                value = [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]
        if not isinstance(value, list):
            raise ValidationError("Enter a list.", code="invalid")
        items, errors = [], []
        for index, item in enumerate(value):
            try:
                items.append(self.child.clean(item))
            except ValidationError as error:
                errors.append(f"Item {index + 1}: {' '.join(error.messages)}")
        if errors:
            raise ValidationError(errors, code="invalid")
        return items

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(item) for item in value)
        return value


class DictField(ContainerField):
    """A JSON object, given as a dict or as JSON text."""

    widget = forms.Textarea(attrs={"rows": 4})

    def to_python(self, value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = loads(value, "a JSON object") if value.strip() else {}
        if not isinstance(value, dict):
            raise ValidationError("Enter a JSON object.", code="invalid")
        return value

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return json.dumps(value, indent=2, sort_keys=True)
        return value


class ChoiceParameterField(forms.ChoiceField):
    """One of a fixed set of values (an ``Enum`` or a ``Literal``), typed back on clean."""

    def __init__(self, values: dict[str, Any], labels: dict[str, str], **kwargs: Any) -> None:
        self.values = values  # the string form of each choice -> its typed value
        super().__init__(choices=[(key, labels[key]) for key in values], **kwargs)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, enum.Enum):
            value = value.value
        return "" if value is None else str(value)

    def clean(self, value: Any) -> Any:
        key = super().clean(value)
        return self.values.get(key) if key != "" else None


def to_json(value: Any) -> Any:
    """Return the JSON form of a typed parameter value."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.UTC).isoformat()  # one canonical form per instant
    if isinstance(value, datetime.date):  # naive datetimes too
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


MISSING: Any = object()  # the default of a parameter that has none


@dataclass(frozen=True)
class Parameter:
    """One typed parameter of a processor."""

    name: str
    annotation: Any
    default: Any
    field: forms.Field

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def optional(self) -> bool:
        """Return whether the parameter may be None (annotated ``X | None``)."""
        return is_optional(self.annotation)


def is_optional(annotation: Any) -> bool:
    """Return whether ``annotation`` is ``X | None``."""
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def field_for(annotation: Any, *, required: bool) -> forms.Field:
    """Return the form field that validates and types values of ``annotation``.

    Only an ``X | None`` field may be left empty (then None). A ``str`` without a default must not
    be empty; one with a default may be ``""``. Every value must be storable JSON (``validate_json``).
    """
    field = _field_for(annotation, required=required, optional=False)
    field.validators.append(validate_json)
    return field


def _field_for(annotation: Any, *, required: bool, optional: bool) -> forms.Field:
    origin, args = get_origin(annotation), get_args(annotation)
    if is_optional(annotation):
        inner = [arg for arg in args if arg is not type(None)]
        if len(inner) == 1:
            return _field_for(inner[0], required=False, optional=True)
    # Empty is no value: refused unless the parameter is optional.
    options: dict[str, Any] = {"required": not optional}
    if annotation is bool:
        return StrictBooleanField(**options)
    if annotation is str:
        return forms.CharField(strip=False, required=required and not optional)
    if annotation is int:
        return IntegerParameterField(**options)
    if annotation is float:
        return FloatParameterField(**options)
    if annotation is Decimal:
        return DecimalParameterField(**options)
    if annotation is datetime.datetime:
        return forms.DateTimeField(
            widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"), **options
        )
    if annotation is datetime.date:
        return forms.DateField(widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"), **options)
    if origin is list and args in ((str,), (int,)):
        return ListField(_field_for(args[0], required=True, optional=False), **options)
    if annotation is dict or origin is dict:
        return DictField(**options)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = {str(member.value): member for member in annotation}
        labels = {str(member.value): str(getattr(member, "label", member.name)) for member in annotation}
        return ChoiceParameterField(values, labels, **options)
    if origin is Literal:
        values = {str(value): value for value in args}
        return ChoiceParameterField(values, {key: key for key in values}, **options)
    raise TypeError(
        f"unsupported parameter type {annotation!r}; use str, int, float, bool, Decimal, date, "
        "datetime, list[str], list[int], dict, an Enum or a Literal"
    )


def annotations_of(cls: type) -> dict[str, Any]:
    """Return a class's resolved annotations; raise InvalidParameters naming one that does not resolve."""
    try:
        return get_type_hints(cls)
    except Exception as error:  # NameError, SyntaxError, TypeError: whatever an annotation raises
        raise InvalidParameters(_unresolved(cls, error)) from None


def _unresolved(cls: type, error: Exception) -> str:
    """Return which annotation of ``cls`` does not resolve, tried one by one, and why."""
    for klass in cls.__mro__:
        module = sys.modules.get(klass.__module__)
        for name, annotation in klass.__dict__.get("__annotations__", {}).items():

            def probe() -> None: ...

            probe.__annotations__ = {name: annotation}
            try:
                get_type_hints(probe, vars(module) if module else {}, dict(vars(klass)))
            except Exception as own:  # the same errors as above, for this annotation alone
                return (
                    f"parameter {name!r}: the annotation {annotation!r} does not resolve ({type(own).__name__}: {own})."
                )
    return f"the annotations do not resolve ({type(error).__name__}: {error})."
