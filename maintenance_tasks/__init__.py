"""Batched, resumable data migrations for Django."""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Processor", "Runner"]

if TYPE_CHECKING:
    from .processor import Processor
    from .runner import Runner


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the package (from INSTALLED_APPS) does not import models.
    if name == "Processor":
        from .processor import Processor

        return Processor
    if name == "Runner":
        from .runner import Runner

        return Runner
    raise AttributeError(f"module 'maintenance_tasks' has no attribute {name!r}")
