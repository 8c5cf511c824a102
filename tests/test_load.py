"""1,000 runs enqueued at once, performed by two real db_workers with default settings (PostgreSQL).

Before the watchdog was one chain of jobs, every slice enqueued a watchdog of its own; due
watchdogs sort before slice jobs in django-tasks-db, and each watchdog of a waiting run
enqueued another slice and another watchdog: with 3,000 runs the workers ran only watchdogs.
Here every run must end, each row be updated once, the jobs performed stay within the slices
needed plus a few, and the last runs finish about as fast as the first ones.
"""

import importlib.util
import sys

import pytest
from django.db import connection
from django.test import override_settings

from .conftest import ROOT, child_env, deadline

pytestmark = [
    pytest.mark.processes,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the load test runs on PostgreSQL"),
]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_load", ROOT / "bench" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_a_thousand_runs_at_once_all_end_without_starving_the_queue():
    bench = load_bench()
    env = child_env()
    for name in [key for key in env if key.startswith("MAINTENANCE_")]:
        del env[name]  # default settings
    with override_settings(TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}):
        figures = bench.measure(1000, workers=2, env=env, timeout=deadline(900))
    report = "\n".join(figures.lines())
    assert figures.statuses == {"succeeded": 1000}, report
    assert figures.rows_not_once == 0, report
    assert figures.slices == 1000, report  # one slice each: a small run ends within SLICE_SECONDS
    assert 0 <= figures.extra_slice_jobs <= 5, report
    assert figures.jobs.get("watchdog", 0) + figures.jobs.get("scheduler_job", 0) <= 10, report
    assert figures.ratio >= 0.8, report
