"""The ``Processor`` base class: the contract between a task's author and the engine."""

from __future__ import annotations

import datetime
import inspect
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Literal, get_origin

from django.core.checks import CheckMessage, Error
from django.core.exceptions import ValidationError
from django.db import models

from .batching import sizing_problems
from .callbacks import LifecycleCallbacks
from .conf import SettingDefault
from .cron import cron_error
from .csvsource import csv_problems
from .databases import using_problems
from .definitions import expected_duration_errors, path_of, run_on_deploy_errors
from .exceptions import InvalidParameters, validation_error_text
from .failures import is_error_tuple, skip_problems
from .output import Reporting
from .parameters import MISSING, Parameter, annotations_of, field_for, to_json, validate_json
from .sensitive import declaration_problems, scrubbed_error, secret_values, sensitive_names
from .sources import cursor_problem, open_source, ordering_problem
from .throttles import condition_checks

#: The methods the engine calls and does not await.
SYNC_METHODS = ("process", "process_batch", "collection", "count", "enumerate", "clean")


class Processor(LifecycleCallbacks, Reporting):
    """Base class of maintenance task code.

    Subclass it in an app's ``maintenance.py``. Define ``collection()`` and ``process(item)``
    (or ``process_batch(items)``). Type-annotated class attributes are parameters, validated
    from the run's JSON config and available as ``self.<name>``. Define ``on_start(run)``,
    ``on_complete(run)``, ... to hear about its runs (see ``LifecycleCallbacks``);
    ``self.log("...")`` and ``self.status = "..."`` report on the run page and the command line
    (``Reporting``).
    """

    #: Items per batch, and rows per query for QuerySet collections.
    batch_size: ClassVar[int] = 100
    #: Seconds a transaction should take: fast batches commit together, slow ones shrink (see ``batching``);
    #: None: one transaction per batch of ``batch_size``. Default: the BATCH_TIME setting.
    batch_time: ClassVar[float | None] = SettingDefault("BATCH_TIME")  # type: ignore[assignment]  # a descriptor
    min_batch_size: ClassVar[int] = 1  #: the smallest batch a slow spell shrinks batches to
    #: After each commit, sleep this many times the time the transaction took: 1.0 leaves the database
    #: to others half the time (see ``batching``); 0: no sleep.
    sleep_ratio: ClassVar[float] = 0.0
    #: Run each batch and the checkpoint that records it in one transaction.
    atomic: ClassVar[bool] = True
    #: Columns, unique together, that order a QuerySet collection (default: the primary key).
    cursor_columns: ClassVar[tuple[str, ...] | None] = None
    #: The database alias its batches write to, each committing its checkpoint there (None: the
    #: collection's, by the routers' ``db_for_write``). Migrate this app there too.
    using: ClassVar[str | None] = None
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
    #: Errors for which an item is skipped and recorded (``SkippedItem``) while the run goes on, and the
    #: items skipped past which the run errors (None: no limit), so that a bug is not hidden as skips.
    skip_on: ClassVar[tuple[type[Exception], ...]] = ()
    max_skipped: ClassVar[int | None] = 100
    #: Conditions looked at between batches (see ``maintenance_tasks.throttles``): while one returns a
    #: reason, the run waits, looking again after a backoff that doubles up to ``throttle_backoff_max``.
    throttle_on: ClassVar[Sequence[Callable[[], Any]]] = ()
    throttle_backoff_max: ClassVar[float] = 30.0
    #: A cron expression (5 fields, in settings.TIME_ZONE): run with the default config on it.
    schedule: ClassVar[str | None] = None
    #: How long a run may stay active before it is flagged as overdue (a timedelta or seconds);
    #: None: the OVERDUE_AFTER setting.
    expected_duration: ClassVar[datetime.timedelta | float | None] = None
    #: Started by ``deploy_maintenance_tasks``, with the default parameters: ``"once"`` (until a
    #: run succeeds, like a data migration), ``"always"`` (on every deploy), or None (never).
    run_on_deploy: ClassVar[Literal["once", "always"] | None] = None
    #: Read each run's items from the CSV file it is started with: ``process(row)`` gets a dict
    #: keyed by the header row. ``csv_headers`` are the columns the file must have.
    csv_collection: ClassVar[bool] = False
    csv_headers: ClassVar[tuple[str, ...]] = ()
    csv_encoding: ClassVar[str] = "utf-8-sig"
    #: Parameters shown as ******** everywhere but in the stored config (besides SENSITIVE_PARAMETERS names).
    sensitive: ClassVar[tuple[str, ...]] = ()

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
        return open_source(self).count()

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
            for name, annotation in annotations_of(cls).items():
                if name.startswith("_") or get_origin(annotation) is ClassVar:
                    continue
                if callable(inherited := getattr(Processor, name, None)) or isinstance(inherited, property):
                    raise InvalidParameters(
                        f"parameter {name!r} would hide Processor.{name}, which the engine or your code calls: "
                        "name it otherwise."
                    )
                default = getattr(cls, name, MISSING)
                try:
                    field = field_for(annotation, required=default is MISSING)
                except TypeError as error:
                    raise InvalidParameters(f"parameter {name!r}: {error}") from None
                if default is not MISSING:
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
        for name in sorted(set(config) - set(parameters), key=str):
            known = ", ".join(parameters) or "none"
            errors[str(name)] = [f"Unknown parameter (known: {known})."]
        values = {}
        for name, parameter in parameters.items():
            if name not in config:
                if parameter.required:
                    errors[name] = ["This parameter is required."]
                else:
                    values[name] = parameter.default
                continue
            if config[name] is None:  # null: None for an optional parameter, else no value at all
                if parameter.optional:
                    values[name] = None
                else:
                    errors[name] = ["This parameter is required: only a parameter annotated X | None may be null."]
                continue
            try:
                validate_json(config[name])  # what Python gives: no object(), no NaN, before any str()
                values[name] = parameter.field.clean(to_json(config[name]))
            except ValidationError as error:
                errors[name] = error.messages
        secrets = secret_values(config, sensitive_names(cls, map(str, config)))  # masked in what errors repeat
        if errors:
            raise scrubbed_error(ValidationError(errors), secrets)
        processor = cls(**values)
        size = processor.batch_size  # a parameter may set it
        if "batch_size" in parameters and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValidationError({"batch_size": ["Enter a whole number, 1 or more."]})
        try:
            processor.clean()
        except ValidationError as error:
            raise scrubbed_error(error, secrets) from error.__cause__
        except Exception as error:  # the author's code: its failure is a refusal of this config
            failed = ValidationError(f"{path_of(cls)}.clean() failed: {type(error).__name__}: {error}", code="invalid")
            raise scrubbed_error(failed, secrets) from error
        return processor

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Return the config a processor runs with when nobody gives one; raise ValidationError if refused."""
        return cls.from_config({}).config

    @property
    def config(self) -> dict[str, Any]:
        """Return the canonical JSON config of this instance."""
        return {name: to_json(getattr(self, name)) for name in self.parameters()}

    @classmethod
    def defines_batch(cls) -> bool:
        """Return whether this class overrides ``process_batch()``."""
        return cls.process_batch is not Processor.process_batch

    @classmethod
    def defines_enumerate(cls) -> bool:
        """Return whether this class overrides ``enumerate()`` (a custom source)."""
        return cls.enumerate is not Processor.enumerate

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

    @classmethod
    def schedule_problem(cls) -> str | None:
        """Return why ``schedule`` cannot be used, or None (also None without a schedule)."""
        if cls.schedule is None:
            return None
        if error := cron_error(cls.schedule):
            return f"schedule: {error}"
        try:
            cls.default_config()
        except ValidationError as error:
            return f"schedule: a scheduled processor runs with its default config, which is refused: {validation_error_text(error)}"
        except TypeError as error:
            return f"schedule: {error}"
        return None

    @classmethod
    def check(cls, **kwargs: Any) -> list[CheckMessage]:
        """Return the system check messages about this class, as ``Model.check()`` does for a model."""
        return [
            *cls._check_parameters(),
            *(Error(f"{path_of(cls)}: {message}", obj=cls, id=id) for id, message in cls.definition_problems()),
            *cls._check_collection(),
            *(Error(f"{path_of(cls)}: {p}", obj=cls, id="maintenance_tasks.E036") for p in using_problems(cls)),
            *cls._check_retry(),
            *condition_checks(cls.throttle_on, f"{path_of(cls)}.throttle_on", obj=cls),
            *cls._check_schedule(),
            *expected_duration_errors(cls),
            *run_on_deploy_errors(cls),
        ]

    @classmethod
    def takes_an_item(cls) -> bool:
        """Return whether ``process()`` needs a positional argument besides ``self``."""
        try:
            parameters = list(inspect.signature(cls.process).parameters.values())[1:]
        except (TypeError, ValueError):
            return False
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return any(p.kind in positional and p.default is inspect.Parameter.empty for p in parameters)

    @classmethod
    def definition_problems(cls) -> list[tuple[str, str]]:
        """Return ``(check id, message)`` for what keeps this class from running whatever its config.

        ``check()`` reports them, and ``Runner.create()`` refuses to start a run while there are any.
        """
        problems = []
        for name in SYNC_METHODS:
            if inspect.iscoroutinefunction(method := getattr(cls, name)) or inspect.isasyncgenfunction(method):
                problems.append(
                    ("maintenance_tasks.E030", f"{name}() is async: the engine calls it without awaiting it, so it "
                     "would do nothing. Define it with def (call async code through asgiref's async_to_sync).")
                )  # fmt: skip
        size = cls.batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            problems.append(("maintenance_tasks.E034", f"batch_size must be a whole number, 1 or more, not {size!r}."))
        problems += [("maintenance_tasks.E037", p) for p in declaration_problems(cls)]
        problems += [("maintenance_tasks.E038", problem) for problem in skip_problems(cls.skip_on, cls.max_skipped)]
        problems += [
            ("maintenance_tasks.E035", p) for p in csv_problems(cls, cls.collection is not Processor.collection)
        ] + [("maintenance_tasks.E041", p) for p in sizing_problems(cls)]
        sourced = cls.csv_collection or cls.defines_enumerate()
        if cls.collection is Processor.collection and not sourced and cls.takes_an_item():
            problems.append(
                ("maintenance_tasks.E033", "process() takes an item, but there is no collection() to give it one: "
                 "define collection() returning the items, or process(self) without an item.")
            )  # fmt: skip
        return problems

    @classmethod
    def _check_collection(cls) -> list[CheckMessage]:
        """Report cursor_columns that are not unique and NOT NULL (E031), or an ordering they would override (E032).

        The collection is built with the default config; a processor that has none, or whose
        collection() cannot be built here (it needs the database), is checked when a run opens it.
        """
        if cls.defines_enumerate():
            return []
        try:
            collection = cls.from_config({}).collection()
        except Exception:  # user code that cannot run at check time: checked when a run opens it
            return []
        if not isinstance(collection, models.QuerySet):
            return []
        if problem := cursor_problem(collection.model, cls.cursor_columns):
            return [Error(f"{path_of(cls)}: {problem}", obj=cls, id="maintenance_tasks.E031")]
        if problem := ordering_problem(collection, cls.cursor_columns):
            return [Error(f"{path_of(cls)}: {problem}", obj=cls, id="maintenance_tasks.E032")]
        return []

    @classmethod
    def _check_parameters(cls) -> list[CheckMessage]:
        """Report parameters whose annotation has no form field (E004)."""
        try:
            cls.parameters()
        except TypeError as error:
            return [Error(f"{path_of(cls)}: {error}", obj=cls, id="maintenance_tasks.E004")]
        return []

    @classmethod
    def _check_retry(cls) -> list[CheckMessage]:
        """Report retry settings that cannot be used (E007)."""
        if problem := cls._retry_problem():
            return [Error(f"{path_of(cls)}: {problem}", obj=cls, id="maintenance_tasks.E007")]
        return []

    @classmethod
    def _retry_problem(cls) -> str | None:
        """Return what is wrong with the retry settings, if anything."""
        if not is_error_tuple(retry_on := cls.retry_on):
            return f"retry_on must be a tuple of exception classes, not {retry_on!r}."
        max_retries = cls.max_retries
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            return f"max_retries must be a whole number, 0 or more, not {max_retries!r}."
        for name in ("retry_backoff", "retry_backoff_max", "throttle_backoff_max"):
            value = getattr(cls, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                return f"{name} must be a number of seconds, 0 or more, not {value!r}."
        return None

    @classmethod
    def _check_schedule(cls) -> list[CheckMessage]:
        """Report a ``schedule`` that is not cron (E010) or whose default config is refused (E011)."""
        problem = cls.schedule_problem()
        if problem is None:
            return []
        if cron_error(cls.schedule):
            return [Error(f"{path_of(cls)}: {problem}", obj=cls, id="maintenance_tasks.E010")]
        hint = "Give every parameter a default, or schedule it from the admin with a config."
        return [Error(f"{path_of(cls)}: {problem}", hint=hint, obj=cls, id="maintenance_tasks.E011")]
