import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from maintenance_tasks.registry import registry

ROOT = Path(__file__).resolve().parent.parent
#: How much slower than a quiet machine this one may be: every deadline of the tests is scaled by it.
TIME_FACTOR = float(os.environ.get("TEST_TIME_FACTOR") or 1)


def deadline(seconds: float) -> float:
    """Return ``seconds`` (a deadline on a quiet machine) scaled by TEST_TIME_FACTOR (default 1).

    Every timeout of the tests goes through here, so that a slow or busy machine only needs a
    larger factor. Tests wait for conditions (``wait_for``), never for fixed times.
    """
    return seconds * TIME_FACTOR


def subprocess_database_url(alias: str = "default") -> str:
    """Return a DATABASE_URL that points a child process at the current test database of ``alias``."""
    db = settings.DATABASES[alias]
    engine, name = db["ENGINE"], db["NAME"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{name}"
    scheme = "postgres" if "postgresql" in engine else "mysql"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"{scheme}://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{name}"


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "PYTHONUNBUFFERED": "1", **extra}
    if "legacy" in settings.DATABASES:
        env["LEGACY_DATABASE_URL"] = subprocess_database_url("legacy")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


class Command:
    """A ``manage.py`` command running in a child process, in its own process group."""

    def __init__(self, *args: str, **env: str) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=child_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=deadline(30))  # reap it and close its pipes

    def wait(self, timeout: float = 120) -> tuple[int, str, str]:
        """Wait for the command to end (``timeout`` is scaled by TEST_TIME_FACTOR)."""
        out, err = self.process.communicate(timeout=deadline(timeout))
        return self.process.returncode, out, err


@pytest.fixture
def manage():
    """Start ``manage.py`` commands in child processes; kill any left at the end."""
    started: list[Command] = []

    def start(*args: str, **env: str) -> Command:
        command = Command(*args, **env)
        started.append(command)
        return command

    yield start
    for command in started:
        if command.process.poll() is None:
            command.process.kill()
        if command.process.stdout and not command.process.stdout.closed:
            command.process.communicate(timeout=deadline(30))


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds,
    scaled by TEST_TIME_FACTOR."""
    seconds = deadline(timeout)
    end = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {seconds:g}s (TEST_TIME_FACTOR={TIME_FACTOR:g}) waiting for {predicate}")


@pytest.fixture
def install_app(tmp_path, monkeypatch, settings):
    """Write an app's files into a fresh directory on sys.path and add it to INSTALLED_APPS."""
    monkeypatch.syspath_prepend(str(tmp_path))
    installed = []

    def install(files):
        name = f"app_{uuid.uuid4().hex[:12]}"
        for path, text in {"__init__.py": "", **files}.items():
            target = tmp_path / name / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        installed.append(name)
        settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, name]
        registry.clear()
        return name

    yield install
    for name in installed:
        for module in [module for module in sys.modules if module == name or module.startswith(f"{name}.")]:
            del sys.modules[module]


@pytest.fixture(autouse=True)
def _fresh_registry():
    yield
    registry.clear()


def listening(port: int) -> bool:
    """Return whether a server listens on 127.0.0.1:``port`` (the replicas scripts/services starts)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def on_sqlite() -> bool:
    return connection.vendor == "sqlite"


def kill_9_and_resume(manage, command: Command, run, seed: int, after_kill=None, *, kills=3, longest=0.4, **env):
    """Kill -9 ``command`` at random moments (from ``seed``), resuming ``run`` with --force after each.

    Up to ``kills`` times: wait up to ``longest`` seconds, kill it, and unless the run has ended, check that it was
    left running (and ``after_kill(run)``, if given) and take it over in a new command (with ``env``). Then wait
    for the last command to succeed. Return the run, refreshed.
    """
    from maintenance_tasks.models import Run
    from maintenance_tasks.status import RunStatus

    rng = random.Random(seed)
    for killed in range(1, kills + 1):
        time.sleep(rng.uniform(0.0, longest))
        command.kill()
        run.refresh_from_db()
        if run.status == RunStatus.SUCCEEDED:
            break
        assert run.status == RunStatus.RUNNING, f"seed {seed}"  # killed: nobody could record anything
        if after_kill is not None:
            after_kill(run)
        # Its heartbeat is fresh, so take it over explicitly.
        command = manage("run_maintenance_task", "--resume", str(run.pk), "--force", **env)
        wait_for(lambda n=killed: Run.objects.get(pk=run.pk).attempt > n, timeout=60)
    else:
        code, out, err = command.wait(timeout=600)
        assert code == 0, f"seed {seed}: {err}"
    run.refresh_from_db()
    return run


def active_runs_lines() -> list[str]:
    """Describe the runs still active, with their audit trails: what a failed process test prints."""
    from maintenance_tasks.models import Run

    lines = ["Runs still active:"]
    for run in Run.objects.active():
        events = list(run.events.values_list("action", "source", "detail__attempt"))
        lines.append(
            f"  {run.pk} {run.status} attempt {run.attempt} at {run.tick_count} ({run.heartbeat_at}): {events}"
        )
    return lines
