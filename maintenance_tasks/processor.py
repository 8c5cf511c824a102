"""The ``Processor`` base class and its typed parameters."""

from __future__ import annotations

import datetime
import enum
import json
import random
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

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


_MISSING: Any = object()


@dataclass(frozen=True)
class Parameter:
    """One typed parameter of a processor."""

    name: str
    annotation: Any
    default: Any
    field: forms.Field

    @property
    def required(self) -> bool:
        return self.default is _MISSING


def _field_for(annotation: Any, *, required: bool) -> forms.Field:
    """Return the form field that validates and types values of ``annotation``."""
    options: dict[str, Any] = {"required": required}
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType) and type(None) in args:
        inner = [arg for arg in args if arg is not type(None)]
        if len(inner) == 1:
            return _field_for(inner[0], required=False)
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
        return ListField(_field_for(args[0], required=True), **options)
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


class Processor:
    """Base class of maintenance task code.

    Subclass it in an app's ``maintenance.py``. Define ``collection()`` and ``process(item)``
    (or ``process_batch(items)``). Type-annotated class attributes are parameters, validated
    from the run's JSON config and available as ``self.<name>``.
    """

    #: Items per batch, and rows per query for QuerySet collections.
    batch_size: ClassVar[int] = 100
    #: Run each batch and the checkpoint that records it in one transaction.
    atomic: ClassVar[bool] = True
    #: Columns, unique together, that order a QuerySet collection (default: the primary key).
    cursor_columns: ClassVar[tuple[str, ...] | None] = None
    #: The ``django.tasks`` queue its background slices go to (None: the default queue). It must
    #: be one of the backend's ``QUEUES``; start workers for it (``db_worker --queue-name heavy``).
    queue_name: ClassVar[str | None] = None
    #: The priority of its slices, from -100 to 100 (None: the default), where the backend has priorities.
    priority: ClassVar[int | None] = None
    #: Errors after which the run goes on from its cursor after a delay, instead of erroring.
    retry_on: ClassVar[tuple[type[Exception], ...]] = ()
    #: Retries over the whole run; the error after the last one leaves the run errored.
    max_retries: ClassVar[int] = 3
    #: Seconds before the first retry, doubled for each next one (with jitter), at most ``retry_backoff_max``.
    retry_backoff: ClassVar[float] = 1.0
    retry_backoff_max: ClassVar[float] = 600.0
    #: A cron expression (5 fields, in settings.TIME_ZONE): run with the default config on it.
    schedule: ClassVar[str | None] = None
    #: How long a run may stay active before it is flagged as stuck (a timedelta or seconds);
    #: None: the STUCK_RUN_AFTER setting.
    expected_duration: ClassVar[datetime.timedelta | float | None] = None
    #: Started by ``deploy_maintenance_tasks``, with the default parameters: ``"once"`` (until a
    #: run succeeds, like a data migration), ``"always"`` (on every deploy), or None (never).
    run_on_deploy: ClassVar[Literal["once", "always"] | None] = None

    _parameters: ClassVar[dict[str, Parameter]]

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.config}>"

    # -- the user's code ------------------------------------------------------------------

    def collection(self) -> Any:
        """Return what to process: a QuerySet, a list or tuple, any finite iterable, or None."""
        return None

    def process(self, *item: Any) -> None:
        """Do the work for one item (called with no item when ``collection()`` is None)."""
        raise NotImplementedError(f"{type(self).__name__} must define process() or process_batch().")

    def count(self) -> int | None:
        """Return the number of items, or None to skip counting."""
        from .iteration import default_count

        return default_count(self)

    def clean(self) -> None:
        """Validate the parameters together; raise ValidationError to refuse the config."""

    def enumerate(self, cursor: str | None) -> Iterator[tuple[Any, str]] | None:
        """Yield ``(item, cursor)`` pairs after ``cursor``, for a custom source.

        Return None (the default) to let the engine walk ``collection()``.
        """
        return None

    # -- parameters -----------------------------------------------------------------------

    @classmethod
    def parameters(cls) -> dict[str, Parameter]:
        """Return the typed parameters declared on this class and its bases."""
        if "_parameters" not in cls.__dict__:
            parameters = {}
            for name, annotation in get_type_hints(cls).items():
                if name.startswith("_") or get_origin(annotation) is ClassVar:
                    continue
                default = getattr(cls, name, _MISSING)
                try:
                    field = _field_for(annotation, required=default is _MISSING)
                except TypeError as error:
                    raise TypeError(f"parameter {name!r}: {error}") from None
                if default is not _MISSING:
                    field.initial = default
                parameters[name] = Parameter(name, annotation, default, field)
            cls._parameters = parameters
        return cls._parameters

    @classmethod
    def from_config(cls, config: Any = None) -> Processor:
        """Return an instance built from a JSON config; raise ValidationError naming each bad field."""
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ValidationError(f"The config must be a JSON object, not {type(config).__name__}.", code="invalid")
        parameters = cls.parameters()
        errors: dict[str, list[str]] = {}
        for name in sorted(set(config) - set(parameters)):
            known = ", ".join(parameters) or "none"
            errors[name] = [f"Unknown parameter (known: {known})."]
        values = {}
        for name, parameter in parameters.items():
            if name not in config:
                if parameter.required:
                    errors[name] = ["This parameter is required."]
                else:
                    values[name] = parameter.default
                continue
            try:
                values[name] = parameter.field.clean(to_json(config[name]))
            except ValidationError as error:
                errors[name] = error.messages
        if errors:
            raise ValidationError(errors)
        processor = cls(**values)
        processor.clean()
        return processor

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Return the config the processor runs with when nobody gives one (schedules, deploys)."""
        return cls.from_config({}).config

    @property
    def config(self) -> dict[str, Any]:
        """Return the canonical JSON config of this instance."""
        return {name: to_json(getattr(self, name)) for name in self.parameters()}

    @classmethod
    def defines_batch(cls) -> bool:
        return cls.process_batch is not Processor.process_batch

    def process_batch(self, items: Iterable[Any]) -> None:
        """Process a whole batch; override it to work on batches (a QuerySet for QuerySets)."""
        raise NotImplementedError

    @classmethod
    def retry_delay(cls, retries: int) -> float:
        """Return the seconds to wait before the retry that follows ``retries`` retries.

        Exponential, capped at ``retry_backoff_max``, with jitter: a random point in the
        upper half, so that runs failing together do not retry together.
        """
        ceiling = min(cls.retry_backoff_max, cls.retry_backoff * 2**retries)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not cryptography)

    @classmethod
    def description(cls) -> str:
        """Return the first line of the docstring."""
        doc = cls.__doc__ if cls.__doc__ is not Processor.__doc__ else None
        return (doc or "").strip().split("\n", 1)[0]
