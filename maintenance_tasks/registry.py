"""Discover processors in each installed app's maintenance module and resolve names to them.

An app's maintenance module is ``<app>/maintenance.py``, or a ``<app>/maintenance/`` package:
then the package and each module directly in it (not its sub-packages). This is a security
boundary: names come from forms and command lines, so only the processors defined in those
modules can ever be resolved. Nothing else is imported by name.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import threading
from collections.abc import Iterator
from types import ModuleType

from django.apps import apps

from .exceptions import UnknownProcessor
from .processor import Processor, path_of

MODULE_NAME = "maintenance"
#: How the places processors may live in read in messages.
WHERE = f"an installed app's {MODULE_NAME}.py or {MODULE_NAME}/ package"


def short_name(processor_path: str) -> str:
    """Return the class name at the end of a processor's dotted path."""
    return processor_path.rsplit(".", 1)[-1]


def maintenance_modules(module_name: str) -> Iterator[ModuleType]:
    """Import and yield an app's maintenance module and, for a package, each module directly in it.

    An error raised while importing one of them is raised as it is, as for any module of the app.
    """
    if importlib.util.find_spec(module_name) is None:
        return
    module = importlib.import_module(module_name)
    yield module
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if not info.ispkg:
            yield importlib.import_module(f"{module_name}.{info.name}")


class Registry:
    """The processors defined in installed apps' ``maintenance`` modules, by dotted path."""

    def __init__(self) -> None:
        self._processors: dict[str, type[Processor]] | None = None
        self._lock = threading.Lock()

    def processors(self) -> dict[str, type[Processor]]:
        """Return every discovered processor by dotted path, sorted by path."""
        if self._processors is None:
            with self._lock:
                if self._processors is None:
                    self._processors = self._discover()
        return self._processors

    def _discover(self) -> dict[str, type[Processor]]:
        found: dict[str, type[Processor]] = {}
        for app_config in apps.get_app_configs():
            for module in maintenance_modules(f"{app_config.name}.{MODULE_NAME}"):
                for _, value in inspect.getmembers(module, inspect.isclass):
                    if (
                        issubclass(value, Processor)
                        and value is not Processor
                        and value.__module__ == module.__name__
                        and not value.__dict__.get("abstract", False)
                    ):
                        found[path_of(value)] = value
        return dict(sorted(found.items()))

    def clear(self) -> None:
        """Forget what was discovered (for tests that change INSTALLED_APPS)."""
        self._processors = None

    def get(self, name: str) -> type[Processor]:
        """Return the processor with this dotted path; raise UnknownProcessor otherwise."""
        processors = self.processors()
        if isinstance(name, str) and name in processors:
            return processors[name]
        raise UnknownProcessor(f"Unknown processor {name!r}: only processors defined in {WHERE} can be run.")

    def resolve(self, name: str) -> type[Processor]:
        """Return the processor named by a dotted path or by a unique bare class name."""
        if not isinstance(name, str) or not name:
            raise UnknownProcessor("No processor given.")
        if "." in name:
            return self.get(name)
        matches = [path for path, processor in self.processors().items() if processor.__qualname__ == name]
        if len(matches) == 1:
            return self.processors()[matches[0]]
        if matches:
            raise UnknownProcessor(f"{name!r} is ambiguous: {', '.join(matches)}. Give the dotted path.")
        return self.get(name)

    def path_of(self, processor: type[Processor] | str) -> str:
        """Return the dotted path of a processor class or name, checking that it was discovered."""
        if isinstance(processor, str):
            return path_of(self.resolve(processor))
        if isinstance(processor, type) and issubclass(processor, Processor):
            path = path_of(processor)
            if self.processors().get(path) is processor:
                return path
            raise UnknownProcessor(f"{path} is not a discovered processor: define it in {WHERE}.")
        raise UnknownProcessor(f"{processor!r} is not a processor.")


registry = Registry()
