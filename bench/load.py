"""Many runs at once through db_worker processes, with default settings: does every run reach its end, fast?

Usage: DATABASE_URL=postgres://... .venv/bin/python bench/load.py [--runs 10000] [--workers 2]

Enqueues RUNS runs of a small processor (one shard of a table each, ITEMS rows per shard) with
nobody working, then starts WORKERS ``db_worker`` processes and waits until no run is active.
Prints:
- how long enqueueing took, and how long the workers took to end every run;
- jobs performed by kind, against the slices the runs needed (one per claim): the watchdog
  and the scheduler cost O(1) jobs per period, not O(runs);
- runs/s of the first and of the last tenth of the runs to end (at most 1,000 each) and their
  ratio: a queue that starves late runs shows a ratio far below 1.

``tests/test_load.py`` runs ``measure()`` with 1,000 runs as part of the suite (PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROCESSOR = "testproject.testapp.maintenance.LogShardBatches"
ITEMS = 3


@dataclass
class Figures:
    runs: int
    enqueue_seconds: float
    work_seconds: float
    statuses: dict[str, int]
    rows_not_once: int
    slices: int
    jobs: dict[str, int]
    first_rate: float
    last_rate: float
    window: int

    @property
    def ratio(self) -> float:
        return self.last_rate / self.first_rate

    @property
    def extra_slice_jobs(self) -> int:
        return self.jobs.get("perform_run", 0) - self.slices

    def lines(self) -> list[str]:
        jobs = ", ".join(f"{name} {count:,}" for name, count in sorted(self.jobs.items()))
        return [
            f"{self.runs:,} runs enqueued in {self.enqueue_seconds:.1f}s; all ended in {self.work_seconds:.1f}s "
            f"({self.runs / self.work_seconds:,.1f} runs/s): {self.statuses}; rows not updated exactly once: "
            f"{self.rows_not_once}",
            f"jobs performed: {jobs}; slices needed {self.slices:,}; slice jobs beyond them {self.extra_slice_jobs:,}",
            f"first {self.window:,} runs {self.first_rate:,.1f} runs/s, last {self.window:,} runs "
            f"{self.last_rate:,.1f} runs/s, ratio {self.ratio:.2f}",
        ]


def start_worker(number: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    args = ["db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.1", "-v0", "--worker-id", f"load-{number}"]
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**env, "TASKS_BACKEND": "database", "DJANGO_DEBUG": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def measure(runs: int, workers: int, env: dict[str, str], timeout: float = 3600) -> Figures:
    """Enqueue ``runs`` runs, perform them with ``workers`` db_workers started with ``env``; return the figures.

    Expects Django set up on a migrated database whose tasks backend is django-tasks-db.
    """
    from django.db.models import Count, Q
    from django_tasks_db.models import DBTaskResult

    from maintenance_tasks import Runner
    from maintenance_tasks.models import Run, RunEvent
    from testproject.testapp.models import Item

    Item.objects.bulk_create((Item(value=shard) for shard in range(runs) for _ in range(ITEMS)), batch_size=5000)
    started = time.monotonic()
    ids = [Runner.run(PROCESSOR, {"shard": shard}).pk for shard in range(runs)]
    enqueued = time.monotonic()
    processes = [start_worker(number, env) for number in range(workers)]
    begun = time.time()
    try:
        while Run.objects.filter(pk__in=ids).active().exists():
            if all(process.poll() is not None for process in processes):
                errors = b"".join(process.stderr.read() for process in processes if process.stderr)
                raise RuntimeError(f"every db_worker exited: {errors.decode(errors='replace')[-2000:]}")
            if time.monotonic() - enqueued > timeout:
                raise RuntimeError(f"runs still active after {timeout:.0f}s")
            time.sleep(0.5)
        work = time.monotonic() - enqueued
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.communicate(timeout=120)
    ended = sorted(
        value.timestamp() for value in Run.objects.filter(pk__in=ids).values_list("ended_at", flat=True) if value
    )
    window = max(1, min(1000, runs // 10))
    first_rate = window / max(1e-6, ended[window - 1] - begun)
    last_rate = window / max(1e-6, ended[-1] - ended[-window - 1]) if len(ended) > window else first_rate
    statuses = dict(Counter(Run.objects.filter(pk__in=ids).values_list("status", flat=True)))
    rows_not_once = Item.objects.filter(value__lt=runs).filter(~Q(times_processed=1)).count()
    jobs = {
        row["task_path"].rsplit(".", 1)[-1]: row["n"]
        for row in DBTaskResult.objects.exclude(status="READY").values("task_path").annotate(n=Count("id"))
    }
    slices = RunEvent.objects.filter(run_id__in=ids, action="started").count()
    return Figures(
        runs, enqueued - started, work, statuses, rows_not_once, slices, jobs, first_rate, last_rate, window
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    os.environ["TASKS_BACKEND"] = "database"
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench_load.sqlite3'}")
    sys.path.insert(0, str(ROOT))

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django_tasks_db.models import DBTaskResult

    from maintenance_tasks.models import Run
    from testproject.testapp.models import BatchLog, Item

    call_command("migrate", verbosity=0)
    for model in (DBTaskResult, Run, Item, BatchLog):  # a clean slate (runs cascade to their events)
        model.objects.all().delete()
    print(f"== {connection.display_name}: {options.workers} db_workers, default settings")
    figures = measure(options.runs, options.workers, dict(os.environ))
    for line in figures.lines():
        print(line)


if __name__ == "__main__":
    main()
