"""Background execution figures: db_worker against the foreground CLI, start latency, recovery, shutdown.

Usage: DATABASE_URL=... .venv/bin/python bench/background.py [--rows N] [--rq]

Uses the demo Article table (seeded to N rows) and CountTitleWords over all of it. Prints:
- rows/s of one run in the foreground (run_maintenance_task) and through one db_worker, and the ratio;
- seconds from Runner.run() returning to the run's first item processed, with an idle worker;
- seconds from kill -9 of the worker performing a run to the run going on in another worker;
- seconds from SIGTERM to worker exit with a run in progress (db_worker; with --rq, rqworker with
  RQ's default Worker and with HerokuWorker).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SETTINGS = {"MAINTENANCE_STALE_AFTER": "5", "MAINTENANCE_SLICE_SECONDS": "10", "DJANGO_DEBUG": "false"}
os.environ.update(SETTINGS)
os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench_background.sqlite3'}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
os.environ.setdefault("TASKS_BACKEND", "database")
PROCESSOR = "testproject.demo.maintenance.CountTitleWords"


def manage(*args: str, backend: str = "database", **popen) -> subprocess.Popen:
    env = {**os.environ, "TASKS_BACKEND": backend}
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env, **popen)


def worker(
    backend: str = "database", worker_id: str = "bench", worker_class: str = "rq.worker.Worker"
) -> subprocess.Popen:
    if backend == "rq":
        args = (
            "rqworker",
            "--job-class",
            "django_tasks_rq.Job",
            "--worker-class",
            worker_class,
            "--with-scheduler",
            "default",
        )
    else:
        args = ("db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.1", "-v0", "--worker-id", worker_id)
    return manage(*args, backend=backend, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(predicate, timeout: float = 600, interval: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {predicate}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="foreground and db_worker runs, taking turns")
    parser.add_argument("--rq", action="store_true", help="also measure rqworker shutdown (Redis at REDIS_URL)")
    options = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.test import override_settings
    from django_tasks_db.models import DBTaskResult

    from maintenance_tasks import Runner
    from maintenance_tasks.models import Run

    call_command("migrate", verbosity=0)
    call_command("seed_demo", rows=options.rows, verbosity=0)
    DBTaskResult.objects.all().delete()
    print(f"database {django.db.connection.vendor}, {options.rows:,} rows, {SETTINGS}")

    def last_run() -> Run:
        return Run.objects.filter(task__processor=PROCESSOR).order_by("-pk").first()

    def rate(run: Run) -> float:
        return run.tick_count / (run.ended_at - run.started_at).total_seconds()

    def settle() -> None:
        """Start each measured run from the same table state: no dead rows left by the last one."""
        if django.db.connection.vendor == "postgresql":
            with django.db.connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE demo_article")

    # 1. Foreground CLI against one idle db_worker, the same run, in alternating rounds.
    idle = worker(worker_id="first")
    time.sleep(3)  # let it start and wait for work
    config = {"only_missing": False}
    foreground, background, walls, latencies, returns, slices = [], [], [], [], [], []
    for _ in range(options.rounds):
        settle()
        started = time.monotonic()
        cli = manage("run_maintenance_task", PROCESSOR, "--arg", "only_missing=false", "-v0")
        if cli.wait() != 0:
            raise SystemExit("the foreground run failed")
        walls.append(options.rows / (time.monotonic() - started))
        foreground.append(rate(last_run()))

        settle()
        with override_settings(TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}):
            started = time.monotonic()
            run = Runner.run(PROCESSOR, config)
            returned = time.monotonic()
            wait_for(lambda pk=run.pk: Run.objects.filter(pk=pk, tick_count__gt=0).exists())
            first_item = time.monotonic()
            run = wait_for(lambda pk=run.pk: Run.objects.filter(pk=pk, status="succeeded").first(), interval=0.2)
        returns.append(returned - started)
        latencies.append(first_item - returned)
        slices.append(run.events.filter(action="slice_ended").count() + 1)
        background.append(rate(run))
    print(
        f"foreground CLI: {max(foreground):,.0f} rows/s (run, best of {options.rounds}), "
        f"{max(walls):,.0f} rows/s (process wall time)"
    )
    print(
        f"db_worker: {max(background):,.0f} rows/s (best of {options.rounds}, {max(slices)} slices at most); "
        f"ratio to foreground {max(background) / max(foreground):.3f}"
    )
    print(
        f"Runner.run returned in {min(returns):.3f}s; first item processed {min(latencies):.3f}s later "
        f"(best; worst {max(latencies):.3f}s; db_worker --interval 0.1; includes counting the rows)"
    )

    # 3. kill -9 of the worker performing a run: time until another worker goes on with it.
    other = worker(worker_id="second")
    time.sleep(3)
    with override_settings(TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}):
        run = Runner.run("testproject.demo.maintenance.BackfillSlugs")
        wait_for(lambda: Run.objects.filter(pk=run.pk, status="running", tick_count__gt=0).exists())
        job = DBTaskResult.objects.get(status="RUNNING", task_path="maintenance_tasks.jobs.perform_run")
        attempt = Run.objects.get(pk=run.pk).attempt
        victim = idle if job.worker_ids[-1] == "first" else other
        survivor = other if victim is idle else idle
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        victim.wait()
        wait_for(
            lambda: Run.objects.filter(pk=run.pk, status="running", attempt__gt=attempt + 1).exists(), interval=0.05
        )
        print(
            f"kill -9 to run going on in another worker: {time.monotonic() - killed:.2f}s "
            f"(STALE_AFTER {SETTINGS['MAINTENANCE_STALE_AFTER']}s)"
        )

        # 4. SIGTERM to the worker performing it: time to exit; the run goes back to the queue.
        time.sleep(1)
        survivor.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        survivor.wait()
        print(f"db_worker SIGTERM to exit with a run in progress: {time.monotonic() - stopped:.3f}s")
        run.refresh_from_db()
        print(f"  run {run.pk} is {run.status} after the shutdown")
        Runner.cancel(run)

    if options.rq:
        with override_settings(TASKS={"default": {"BACKEND": "django_tasks_rq.RQBackend"}}):
            for worker_class in ("rq.worker.Worker", "rq.worker.HerokuWorker"):
                rq = worker("rq", worker_class=worker_class)
                time.sleep(3)
                run = Runner.run("testproject.demo.maintenance.BackfillSlugs")
                wait_for(
                    lambda pk=run.pk: Run.objects.filter(pk=pk, status="running", tick_count__gt=0).exists(), timeout=60
                )
                rq.send_signal(signal.SIGTERM)
                stopped = time.monotonic()
                rq.wait()
                print(
                    f"rqworker --worker-class {worker_class}: SIGTERM to exit with a run in progress: "
                    f"{time.monotonic() - stopped:.3f}s (SLICE_SECONDS {SETTINGS['MAINTENANCE_SLICE_SECONDS']}s)"
                )
                run.refresh_from_db()
                print(f"  run {run.pk} is {run.status} after the shutdown")
                Runner.cancel(run)


if __name__ == "__main__":
    main()
