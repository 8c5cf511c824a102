"""A run's output: the lines its processor logs and the one-line status it sets, kept bounded.

``self.log("...")`` adds a line and ``self.status = "..."`` sets the status, in memory; the
engine saves them with its checkpoints and when the run stops. Only the last OUTPUT_LINES
lines are kept, in memory and in ``Run.output`` across slices and resumes; the others are
counted in ``Run.output_dropped``. A saved line is ``{"at": "2026-11-30T14:02:03+00:00",
"text": "..."}``: when it was logged (UTC, to the second) and its text.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from django.utils import timezone

from .conf import app_settings
from .exceptions import escaped, storable

#: The longest line a run keeps (characters); a longer one is cut, with a note.
LINE_LIMIT = 1000
#: The longest status (``Run.status_line``).
STATUS_LIMIT = 255


def one_line(text: Any) -> str:
    """Return ``text`` as a status: its first line, at most STATUS_LIMIT characters ("" for None)."""
    lines = escaped("" if text is None else str(text)).splitlines()
    line = lines[0].strip() if lines else ""
    return line if len(line) <= STATUS_LIMIT else line[: STATUS_LIMIT - 1] + "…"


def line_parts(line: Any) -> tuple[str, str]:
    """Return a saved line's local time (``14:02:03``) and text; a line of another shape is all text."""
    if not isinstance(line, dict):
        return "", str(line)
    try:
        at = timezone.localtime(datetime.fromisoformat(line["at"])).strftime("%H:%M:%S")
    except (KeyError, TypeError, ValueError):
        at = ""
    return at, str(line.get("text", ""))


def line_text(line: Any) -> str:
    """Return a saved line as the command line prints it: ``14:02:03 text``."""
    at, text = line_parts(line)
    return f"{at} {text}" if at else text


class Output:
    """The lines logged and the status set since the last save: the last ``limit`` lines, the others counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines: deque[tuple[float, str]] = deque(maxlen=limit)  # (time.time(), text)
        self.logged = 0  # lines logged since the last save, kept or not
        self.status = ""
        self.status_set = False

    def log(self, message: Any) -> None:
        """Add a line (the message as ``str()`` gives it); the oldest goes once there are ``limit``."""
        self.lines.append((time.time(), message if type(message) is str else str(message)))
        self.logged += 1

    def set_status(self, text: Any) -> None:
        self.status, self.status_set = one_line(text), True

    def take(self, run: Any) -> dict[str, Any]:
        """Return the run fields to save for what changed since the last save ({} if nothing did).

        New lines are added to ``run.output``, which keeps its last ``limit`` lines; the ones
        that go are added to ``run.output_dropped``. ``run`` gets the new values too.
        """
        fields: dict[str, Any] = {}
        if self.logged:
            new = [
                {
                    "at": datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds"),
                    "text": storable(text, LINE_LIMIT),
                }
                for at, text in self.lines
            ]
            lines = [*run.output, *new]
            kept = lines[max(0, len(lines) - self.limit) :]
            dropped = run.output_dropped + (self.logged - len(new)) + (len(lines) - len(kept))
            run.output, run.output_dropped = fields["output"], fields["output_dropped"] = kept, dropped
            self.lines.clear()
            self.logged = 0
        if self.status_set:
            if self.status != run.status_line:
                run.status_line = fields["status_line"] = self.status
            self.status_set = False
        return fields


class Reporting:
    """What a processor reports with while it runs: ``self.log("...")`` and ``self.status = "..."``.

    Both are shown on the run page, beside its progress, and by ``run_maintenance_task``.
    """

    @cached_property
    def _output(self) -> Output:
        return Output(app_settings.OUTPUT_LINES)

    def log(self, message: Any) -> None:
        """Add a line to the run's output (it keeps the last OUTPUT_LINES, each cut to LINE_LIMIT characters)."""
        self._output.log(message)

    @property
    def status(self) -> str:
        """The run's one-line status: set it to say where the run is (its first line, at most 255 characters)."""
        return self._output.status

    @status.setter
    def status(self, text: Any) -> None:
        self._output.set_status(text)

    def output_changes(self, run: Any) -> dict[str, Any]:
        """Return the run fields to save for the lines logged and the status set since the last save."""
        return self._output.take(run)


class OutputFollower:
    """Tell which lines of a run's output were not shown yet, as the command line prints them."""

    def __init__(self, run: Any) -> None:
        self.shown = run.output_dropped + len(run.output)  # lines ever logged, as of the last look

    def new_lines(self, run: Any) -> list[str]:
        """Return the lines logged since the last look, with a note for those no longer kept."""
        kept = run.output
        total = run.output_dropped + len(kept)
        new, self.shown = total - self.shown, total
        if new <= 0:
            return []
        lines = [line_text(line) for line in kept[max(0, len(kept) - new) :]]
        if new > len(kept):
            lines.insert(0, f"[{new - len(kept):,} lines not kept]")
        return lines
