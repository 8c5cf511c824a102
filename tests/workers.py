"""``db_worker`` processes for the process tests, each writing its output to a file.

A worker's log may be large (a 5 MB error message, logged with its traceback): in a pipe that
nobody reads until the end, it would block the worker.
"""

import itertools
import signal
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, child_env


class Worker:
    """A ``db_worker`` process with its stdout and stderr in a file."""

    def __init__(self, worker_id: str, log: Path, **env: str) -> None:
        self.worker_id, self.log = worker_id, log
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.05",
                 "--worker-id", worker_id, "-v0"],
                cwd=ROOT, env=child_env(**env), stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, signum: int = signal.SIGKILL) -> int:
        """Send ``signum`` if it is still alive; return its exit status."""
        if self.alive():
            self.process.send_signal(signum)
        return self.process.wait(timeout=60)

    def tail(self, lines: int = 40) -> str:
        """Return its last lines, each cut to 300 characters."""
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(line[:300] for line in text)


class Workers:
    """A pool of ``Worker`` processes, all killed at the end (use as a context manager)."""

    def __init__(self, directory: Path, **env: str) -> None:
        self.directory, self.env = directory, env
        self.numbers = itertools.count()
        self.all: list[Worker] = []

    def start(self) -> Worker:
        number = next(self.numbers)
        worker = Worker(f"worker-{number}", self.directory / f"worker-{number}.log", **self.env)
        self.all.append(worker)
        return worker

    def live(self) -> list[Worker]:
        return [worker for worker in self.all if worker.alive()]

    def describe(self) -> str:
        return "\n".join(f"{worker.worker_id} (exit {worker.process.poll()}):\n{worker.tail()}" for worker in self.all)

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self.all:
            worker.stop()
