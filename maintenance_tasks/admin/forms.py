"""The admin's forms: a start form built from a processor's parameters, and the schedule form."""

from __future__ import annotations

import copy
import enum
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import QueryDict
from django.utils import timezone
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from maintenance_tasks import dryrun
from maintenance_tasks.batching import TUNING, tuning_errors
from maintenance_tasks.csvfiles import CSV_FIELD
from maintenance_tasks.exceptions import InvalidParameters, UnknownProcessor, validation_error_text
from maintenance_tasks.models import Schedule, ScheduleSource, Task
from maintenance_tasks.parameters import Parameter, to_json
from maintenance_tasks.processor import Processor
from maintenance_tasks.registry import registry, short_name
from maintenance_tasks.sensitive import MASK, scrubbed_error, secret_values, sensitive_names, unmasked

#: The processor page's own query parameters, never taken for parameters: the run history's page number.
PAGE_QUERY = {"p"}
#: The fields whose change moves a schedule's next run.
TIMING_FIELDS = {"cron", "run_at", "enabled"}
#: The fields that say what a schedule runs and when: setting them starts runs, so it needs ``start_run``.
RUN_FIELDS = {"processor", "config", "cron", "run_at"}


def csv_file_field(processor: type[Processor]) -> dict[str, forms.Field]:
    """Return the file input of a ``csv_collection`` processor's form (none for others).

    Not required here: the runner refuses a missing file, beside this field, so "Count items" works without one.
    """
    if not processor.csv_collection:
        return {}
    columns = ", ".join(processor.csv_headers)
    help_text = _("Its header row must name the columns %(columns)s.") % {"columns": columns} if columns else ""
    return {CSV_FIELD: forms.FileField(label=_("CSV file"), required=False, help_text=help_text)}


class MaskedErrors:
    """A field mixin: its errors never repeat the value it was given (a choice field's would)."""

    def clean(self, value: Any) -> Any:
        try:
            return super().clean(value)  # type: ignore[misc]
        except ValidationError as error:
            raise scrubbed_error(error, secret_values({"value": value}, ["value"])) from None


def secret_field(parameter: Parameter) -> forms.Field:
    """Return a copy of a sensitive parameter's field as a password input that never shows a value."""
    field = copy.deepcopy(parameter.field)
    field.__class__ = type(f"Sensitive{type(field).__name__}", (MaskedErrors, type(field)), {})
    field.widget = forms.PasswordInput(render_value=False)
    field.help_text = _("Sensitive: never shown, not even after an error (then type it again).")
    if not parameter.required:
        field.help_text += " " + _("Left empty, the default applies.")
    return field


def start_form_class(processor: type[Processor]) -> type[forms.Form]:
    """Return a form with one field per parameter (each parameter's field is already a form field).

    A sensitive parameter's field is a password input that never shows a value (``secret_field``).
    """
    secret = sensitive_names(processor)
    fields = {
        name: secret_field(parameter) if name in secret else parameter.field
        for name, parameter in processor.parameters().items()
    }
    fields.update(csv_file_field(processor))
    return type(f"{processor.__name__}StartForm", (forms.Form,), {**fields, "required_css_class": "required"})


def initial_value(value: Any) -> Any:
    """Return a typed parameter value as the start form shows it (an Enum by its value)."""
    return value.value if isinstance(value, enum.Enum) else value


def start_form(processor: type[Processor], data: Any = None, files: Any = None) -> forms.Form:
    """Return the start form of a processor, its optional parameters filled in with their defaults."""
    initial = {}
    for name, parameter in processor.parameters().items():
        if not parameter.required:
            initial[name] = initial_value(parameter.default)
    return start_form_class(processor)(data, files, initial=initial, prefix="param")


class TuningForm(forms.Form):
    """A run's own batch size, batch time and sleep ratio, each empty for the processor's (see ``batching``)."""

    batch_size = forms.IntegerField(
        label=gettext_lazy("Batch size"),
        required=False,
        help_text=gettext_lazy("Items per batch at most. Empty: the processor's batch_size."),
    )
    batch_time = forms.FloatField(
        label=gettext_lazy("Batch time (seconds)"),
        required=False,
        help_text=gettext_lazy(
            "Seconds each transaction should take: fast batches commit together, slow ones shrink. "
            "Empty: the processor's batch_time."
        ),
    )
    sleep_ratio = forms.FloatField(
        label=gettext_lazy("Sleep ratio"),
        required=False,
        help_text=gettext_lazy(
            "After each commit, sleep this many times as long as the transaction took (1: half the time "
            "asleep, leaving the database to the traffic; 0: no sleep). Empty: the processor's sleep_ratio."
        ),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for field, message in tuning_errors(*(data.get(name) for name in TUNING)).items():
            self.add_error(field, message)
        return data

    def tuning(self) -> dict[str, Any]:
        """Return the values entered, as ``Runner.run()`` and ``Run.tune()`` take them."""
        return {name: self.cleaned_data[name] for name in TUNING}


class RunOptionsForm(TuningForm):
    """How to run, beside the parameters (its own prefix: a parameter may be named ``dry_run`` too)."""

    dry_run = forms.BooleanField(
        label=gettext_lazy("Dry run"),
        required=False,
        help_text=gettext_lazy("Roll back every batch and report the writes it would have made."),
    )

    def __init__(self, processor: type[Processor], data: Any = None) -> None:
        super().__init__(data, prefix="run")
        self.processor = processor

    def clean_dry_run(self) -> bool:
        dry_run: bool = self.cleaned_data["dry_run"]
        if dry_run and (problem := dryrun.refusal(self.processor)):
            raise ValidationError(problem, code="autocommit")
        return dry_run


def prefill(form: forms.Form, query: QueryDict) -> list[str]:
    """Fill an unbound start form in from a link's query (``?since=2025-01-01&region=us``); return what was left out.

    Each value is parsed by its parameter's field, as when the form is posted: a valid one becomes
    the field's initial value; a bad one, or one given twice, leaves the field as it was and gets a
    note naming it; names that are not parameters get one note (the run history's ``p`` excepted).
    Nothing is validated as a whole (``clean()``) nor started: that is what Start does. A sensitive
    parameter is never taken from a link (its input never shows a value): a note says so.
    """
    notes, unknown = [], []
    for name, values in query.lists():
        field = form.fields.get(name)
        if field is None:
            if name not in PAGE_QUERY:
                unknown.append(name)
            continue
        if isinstance(field.widget, forms.PasswordInput):  # a sensitive parameter: never shown, so never prefilled
            notes.append(_("“%(name)s” is sensitive: it is not taken from a link; type it in.") % {"name": name})
            continue
        shown = {"name": name, "value": Truncator(values[-1]).chars(80)}
        if len(values) > 1:
            notes.append(_("“%(name)s” is given more than once in the link: it was left out.") % shown)
            continue
        try:
            form.initial[name] = initial_value(field.clean(values[0]))
        except ValidationError as error:
            notes.append(
                _("“%(name)s=%(value)s” from the link was left out: %(error)s")
                % {**shown, "error": validation_error_text(error)}
            )
    if unknown:
        notes.append(_("Not parameters of this task, ignored: %(names)s.") % {"names": ", ".join(unknown)})
    return notes


def add_config_errors(form: forms.Form, error: ValidationError) -> None:
    """Put each error of a config beside its field (the rest above the form)."""
    if hasattr(error, "error_dict"):
        for name, errors in error.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, error)


def form_config(form: forms.Form) -> dict[str, Any]:
    """Return the config a valid start form gives, as JSON values (the CSV file is not a parameter).

    A sensitive parameter left empty is left out: its input never shows the default, so the default applies.
    """
    return {
        name: to_json(value)
        for name, value in form.cleaned_data.items()
        if name != CSV_FIELD and not (value in (None, "") and isinstance(form.fields[name].widget, forms.PasswordInput))
    }


def optional_defaults(processor: type[Processor]) -> dict[str, Any]:
    """Return the config of a processor's optional parameters left at their defaults."""
    return {
        name: to_json(parameter.default) for name, parameter in processor.parameters().items() if not parameter.required
    }


class ConfigField(forms.JSONField):
    """Django's JSONField, refusing JSON nested too deep to parse instead of raising RecursionError."""

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except RecursionError:
            raise ValidationError(_("Enter a valid JSON: nested too deep."), code="invalid") from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)


class ScheduleForm(forms.ModelForm):
    """A schedule with its task: a discovered processor and a config validated by its parameters."""

    processor = forms.ChoiceField(label=gettext_lazy("Processor"))
    config = ConfigField(
        label=gettext_lazy("Config"),
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text=gettext_lazy("A JSON object of the processor's parameters; parameters left out take their default."),
    )

    #: Whether the user may start runs (``start_run``); the admin sets it per request.
    can_start = True

    class Meta:
        model = Schedule
        fields = ["processor", "config", "cron", "run_at", "enabled"]

    @property
    def sets_runs(self) -> bool:
        """Return whether saving sets what the schedule runs or when: a new schedule, or a changed field of it."""
        if not self.instance.pk:
            return True
        changed = RUN_FIELDS & set(self.changed_data)
        if "config" in changed and self.canonical_config == self.instance.task.config:
            changed.discard("config")  # the same config, written otherwise (defaults left out)
        return bool(changed)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["processor"].choices = [("", "---------")] + [
            (path, f"{short_name(path)} ({path})") for path in registry.processors()
        ]
        if self.instance.pk:
            self.initial.setdefault("processor", self.instance.task.processor)
            self.initial.setdefault("config", self.instance.task.shown_config)  # sensitive values masked
            if self.instance.task.sensitive_names:
                self.fields["config"].help_text = _(
                    "A JSON object of the processor's parameters; parameters left out take their default. "
                    "Sensitive values show as %(mask)s: left so, they keep their stored value."
                ) % {"mask": MASK}
        if self.instance.source == ScheduleSource.CODE:
            for name in ("processor", "config", "cron", "run_at"):
                self.fields[name].disabled = True
                self.fields[name].help_text = _("Set in the code; only pausing is done here.")
        self.canonical_config: dict[str, Any] | None = None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        path, config = data.get("processor"), data.get("config")
        if self.instance.pk and path == self.instance.task.processor:  # the masked values shown keep theirs
            config = unmasked(config, self.instance.task.config, self.instance.task.sensitive_names)
        if path and "config" not in self.errors:
            try:
                self.canonical_config = registry.get(path).from_config({} if config is None else config).config
            except (UnknownProcessor, InvalidParameters) as error:
                self.add_error("processor", str(error))
            except ValidationError as error:
                self.add_error("config", validation_error_text(error))
        if self.sets_runs and not self.can_start:
            raise ValidationError(
                _("Changing what a schedule runs or when needs the permission to start runs; you may only pause it.")
            )
        return data

    def save(self, commit: bool = True) -> Schedule:
        schedule: Schedule = super().save(commit=False)
        if schedule.source != ScheduleSource.CODE and self.canonical_config is not None:
            schedule.task = Task.objects.for_config(self.cleaned_data["processor"], self.canonical_config)
        if not schedule.pk or TIMING_FIELDS & set(self.changed_data):
            schedule.reschedule(timezone.now(), self.changed_data)
        if commit:
            schedule.save()
        return schedule
