"""Typed parameters: a processor's annotated attributes as form fields, and their JSON form."""

from __future__ import annotations

import datetime
import enum
import json
import types
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Union, get_args, get_origin

from django import forms
from django.core.exceptions import ValidationError


class StrictBooleanField(forms.BooleanField):
    """A boolean that refuses anything but a clear yes or no (``"banana"`` is not ``True``)."""

    TRUE = frozenset({"true", "1", "yes", "on"})
    FALSE = frozenset({"false", "0", "no", "off", ""})

    def to_python(self, value: Any) -> bool:
        if value is None or isinstance(value, bool):
            return bool(value)
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in self.TRUE | self.FALSE:
            return value.strip().lower() in self.TRUE
        raise ValidationError("Enter true or false.", code="invalid")

    def validate(self, value: Any) -> None:
        """Accept ``False``: a parameter that is false is still given."""


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


class ListField(forms.Field):
    """A list of values: a JSON list, a JSON array string, or one value per line or comma."""

    widget = forms.Textarea(attrs={"rows": 3})

    def __init__(self, child: forms.Field, **kwargs: Any) -> None:
        self.child = child
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> list[Any]:
        if value in (None, ""):
            return []
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except ValueError as error:
                    raise ValidationError(f"Enter a JSON list: {error}.", code="invalid") from error
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


class DictField(forms.Field):
    """A JSON object, given as a dict or as JSON text."""

    widget = forms.Textarea(attrs={"rows": 4})

    def to_python(self, value: Any) -> dict[str, Any]:
        if value in (None, ""):
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as error:
                raise ValidationError(f"Enter a JSON object: {error}.", code="invalid") from error
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


def field_for(annotation: Any, *, required: bool) -> forms.Field:
    """Return the form field that validates and types values of ``annotation``."""
    options: dict[str, Any] = {"required": required}
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType) and type(None) in args:
        inner = [arg for arg in args if arg is not type(None)]
        if len(inner) == 1:
            return field_for(inner[0], required=False)
    if annotation is bool:
        return StrictBooleanField(required=False)
    if annotation is str:
        return forms.CharField(strip=False, **options)
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
        return ListField(field_for(args[0], required=True), **options)
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
