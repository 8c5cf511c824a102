"""Stop after the current batch on SIGTERM/SIGINT: one handler for workers and the foreground command."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class StopOnSignal:
    """While a run is performed in the main thread, turn SIGTERM/SIGINT into "stop after this batch".

    With ``chain`` (a worker), the handler the process had installed is called too, so the
    worker also knows it is to shut down once the slice returns (db_worker then exits without
    taking another job). Without it (the foreground command), the first signal is only
    reported. Either way, a second signal acts as it would have without this handler
    (``KeyboardInterrupt``, or the process ends), for an operator who cannot wait.

    SIGRTMIN is what RQ's ``HerokuWorker`` sends its work horse on SIGTERM: it too stops the
    run after its batch, and is not passed on (that handler would raise into the batch).
    """

    def __init__(self, *, chain: bool = False, report: Callable[[str], None] | None = None) -> None:
        self.chain = chain
        self.report = report or logger.warning
        self.signals = (signal.SIGTERM, signal.SIGINT, signal.SIGRTMIN) if chain else (signal.SIGINT, signal.SIGTERM)
        self.requested = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()

    def handle(self, signum: int, frame: Any) -> None:
        first, self.requested = not self.requested, True
        if signum == signal.SIGRTMIN:
            self.report("SIGRTMIN (RQ worker shutting down): stopping after the current batch.")
            return
        previous = self.previous.get(signum)
        if self.chain and callable(previous) and previous is not signal.default_int_handler:
            previous(signum, frame)
        elif first:
            self.report(f"{signal.Signals(signum).name}: stopping after the current batch (again to abort now).")
        else:
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def __call__(self) -> bool:
        return self.requested
