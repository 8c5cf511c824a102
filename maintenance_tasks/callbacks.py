"""The methods a processor may define to hear about its runs: ``on_start()``, ``on_complete()``, ...

``Processor`` inherits them. Each is called once the change of status it names has committed, in
the process that made the change (a worker, the command line, the admin's web process), on an
instance built from the run's config. What one raises is logged and kept in the run's audit
trail; the run's status and cursor stay as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Run

#: The callback of each moment of a run's life, in the order a run may meet them.
CALLBACKS = ("on_start", "on_pause", "on_resume", "on_interrupt", "on_cancel", "on_complete", "on_error")


class LifecycleCallbacks:
    """Do nothing at each moment of a run's life; override the moments to hear about."""

    def on_start(self, run: Run) -> None:
        """Called when an executor claims the run for the first time."""

    def on_pause(self, run: Run) -> None:
        """Called when the run has stopped on request (or was paused before it began)."""

    def on_resume(self, run: Run) -> None:
        """Called when a paused or interrupted run is put back on the queue."""

    def on_interrupt(self, run: Run) -> None:
        """Called when the run's executor was told to stop (a signal, a worker shutting down)."""

    def on_cancel(self, run: Run) -> None:
        """Called when the run was cancelled."""

    def on_complete(self, run: Run) -> Any:
        """Called when the run succeeded; return a small JSON value to keep it as ``run.result``, or None."""
        return None

    def on_error(self, run: Run, error: BaseException) -> None:
        """Called when the run errored, with the error."""

    @classmethod
    def defines_callback(cls, name: str) -> bool:
        """Return whether this class overrides the callback ``name``."""
        return getattr(cls, name) is not getattr(LifecycleCallbacks, name)
