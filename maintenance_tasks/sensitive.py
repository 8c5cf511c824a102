"""Sensitive values: which parameters and metadata keys they are, and how they are shown (``********``).

A run keeps its config as given: the processor needs the values. Everything that shows a
config, metadata, an error or a log line shows them masked. What is sensitive:

- a parameter named in the processor's ``sensitive`` tuple;
- a parameter, or a metadata key at any depth, whose name contains one of the
  ``SENSITIVE_PARAMETERS`` patterns, case-insensitively (``api_token`` contains ``token``),
  as Django's error reports hide settings whose name contains ``KEY`` or ``TOKEN``.

The values of a config's sensitive parameters (of MIN_SECRET_LENGTH characters or more) are also
masked wherever they occur in an error message or a backtrace (``ValueError(f"bad token {self.api_token}")``).
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError

from .conf import app_settings

#: What a sensitive value is shown as.
MASK = "********"
#: The shortest value masked in free text (errors, backtraces): masking every "0" or "eu" there
#: would garble line numbers and words, and tell which characters the value is made of.
MIN_SECRET_LENGTH = 4


def matches_pattern(name: Any) -> bool:
    """Return whether ``name`` contains one of the SENSITIVE_PARAMETERS patterns (case-insensitive)."""
    lowered = str(name).lower()
    return any(pattern.lower() in lowered for pattern in app_settings.SENSITIVE_PARAMETERS)


def sensitive_names(processor: Any, names: Iterable[str] = ()) -> frozenset[str]:
    """Return the sensitive parameters of a processor class (None: gone from the code) among ``names``.

    Those in its ``sensitive`` tuple and every name (its parameters' and ``names``) that matches
    a SENSITIVE_PARAMETERS pattern. A broken declaration never raises here: checks report it.
    """
    candidates = set(names)
    if processor is None:
        return frozenset(name for name in candidates if matches_pattern(name))
    declared = processor.sensitive if isinstance(processor.sensitive, tuple) else ()
    with contextlib.suppress(TypeError):  # an annotation that does not resolve (check E004): the names given count
        candidates |= set(processor.parameters())
    matching = {name for name in candidates if matches_pattern(name)}
    return frozenset({name for name in declared if isinstance(name, str)} | matching)


def masked(config: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``config`` with the value of each parameter in ``names`` shown as MASK."""
    names = set(names)
    return {name: MASK if name in names and value is not None else value for name, value in config.items()}


def masked_keys(value: Any) -> Any:
    """Return a copy of free-form JSON (metadata, audit detail) with the value of each sensitive key masked."""
    if isinstance(value, Mapping):
        return {key: MASK if matches_pattern(key) else masked_keys(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked_keys(item) for item in value]
    return value


def secret_values(config: Any, names: Iterable[str]) -> list[str]:
    """Return the texts of the values of the parameters in ``names``, longest first, to mask in free text.

    Values shorter than MIN_SECRET_LENGTH characters are left out.
    """
    if not isinstance(config, Mapping):
        return []
    found: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, Mapping):
            for item in value.values():
                collect(item)
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item)
        elif value is not None and not isinstance(value, bool) and len(str(value)) >= MIN_SECRET_LENGTH:
            found.add(str(value))

    for name in set(names) & set(config):
        collect(config[name])
    return sorted(found, key=len, reverse=True)  # "abcd" before "abc": no piece of a longer one left over


def scrubbed(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every occurrence of each secret replaced by MASK."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def scrubbed_error(error: ValidationError, secrets: list[str]) -> ValidationError:
    """Return ``error`` with the secrets masked in its messages (``error`` itself when there are none)."""
    if not secrets:
        return error

    def each(errors: Iterable[ValidationError]) -> list[ValidationError]:
        return [ValidationError(scrubbed(" ".join(part.messages), secrets), code=part.code) for part in errors]

    if hasattr(error, "error_dict"):
        return ValidationError({name: each(errors) for name, errors in error.error_dict.items()})
    return ValidationError(each(error.error_list))


def log_error(log: logging.Logger, secrets: list[str], message: str, *args: Any, error: BaseException) -> None:
    """Log ``message`` with the traceback of ``error`` at ERROR, the secrets masked in both.

    Without secrets the error goes as ``exc_info`` (error trackers group by it); with some, its
    traceback is formatted here, masked, and appended to the message.
    """
    if not secrets:
        log.error(message, *args, exc_info=error, stacklevel=2)
        return
    text = message % args if args else message
    log.error("%s", scrubbed(f"{text}\n{''.join(traceback.format_exception(error)).rstrip()}", secrets), stacklevel=2)


def declaration_problems(processor: Any) -> list[str]:
    """Return what is wrong with a processor class's ``sensitive`` tuple (check E037; refused at start)."""
    declared = processor.sensitive
    if not isinstance(declared, tuple) or not all(isinstance(name, str) for name in declared):
        return [f"sensitive must be a tuple of parameter names, not {declared!r}."]
    try:
        parameters = processor.parameters()
    except TypeError:  # an unusable annotation: check E004 says so
        return []
    unknown = [name for name in declared if name not in parameters]
    if unknown:
        known = ", ".join(parameters) or "none"
        return [f"sensitive names {', '.join(unknown)}, which are not parameters (known: {known})."]
    return []


def unmasked(config: Any, stored: Mapping[str, Any], names: Iterable[str]) -> Any:
    """Return ``config`` with each sensitive parameter still shown as MASK given its ``stored`` value back.

    A form that showed a stored config masked gets the mask back when the value was left as it was.
    """
    if not isinstance(config, Mapping):
        return config
    return {
        name: stored[name] if value == MASK and name in names and name in stored else value
        for name, value in config.items()
    }
