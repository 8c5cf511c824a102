"""The engine against hand-written loops doing the same work, on SQLite and PostgreSQL.

Usage: .venv/bin/python bench/engine.py [--rows N] [--save-rows N] [--rounds K]
                                        [--database sqlite|postgresql|both] [--postgresql URL]

Seeds N rows (default 1,000,000) in testapp's BenchRow table of a database of its own (a
file under var/ for SQLite; the database ``bench`` on the PostgreSQL server, created if
missing), then compares, best of K rounds, engine and hand-written sides taking turns:

- walk:   a no-op process() (atomic = False) against a bare keyset loop;
- atomic: a no-op process() with the default atomic = True against the same bare keyset loop;
- save:   per-row save() in atomic batches against one transaction.atomic() per batch;
- update: process_batch() with items.update() against one update() per batch of keys, and
          against that loop given the engine's guarantee (batch and cursor in one transaction).

The engine side is what ``run_maintenance_task`` does without its progress bar:
Runner.create() then Engine(run).perform(), with the app's default settings (BATCH_TIME 0.5 s
unless --batch-time says otherwise). See bench/README.md for what the figures mean.
The database is dropped (the file deleted) at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PROCESSORS = "testproject.testapp.maintenance"
DEFAULT_POSTGRESQL = "postgres://postgres@127.0.0.1:5432/bench"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to seed and walk (default 1,000,000)")
    parser.add_argument(
        "--save-rows",
        type=int,
        default=100_000,
        help="rows the per-row save() case processes, from the first (default 100,000; at most --rows)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=100, help="rows per batch on both sides (default 100, as Processor's)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds per side (default 3)")
    parser.add_argument(
        "--batch-time",
        default="default",
        help="the BATCH_TIME setting of the engine side: seconds, 'none' (one commit per batch), "
        "or 'default' (the app's default, 0.5)",
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--postgresql",
        default=os.environ.get("BENCH_POSTGRESQL_URL", DEFAULT_POSTGRESQL),
        help=f"PostgreSQL URL of the bench database, created and dropped (default {DEFAULT_POSTGRESQL})",
    )
    options = parser.parse_args()
    for name in ("rows", "save_rows", "batch_size", "rounds"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    options.save_rows = min(options.save_rows, options.rows)
    if options.batch_time not in ("default", "none"):
        try:
            seconds = float(options.batch_time)
        except ValueError:
            seconds = 0.0
        if not 0 < seconds <= 3600:
            parser.error(
                f"--batch-time must be seconds (above 0, at most 3600), 'none' or 'default', not {options.batch_time!r}"
            )
    return options


def main() -> None:
    options = parse_args()
    if options.database == "both":
        # One process per database: Django settings are read once per process.
        for database in ("sqlite", "postgresql"):
            argv = ["--rows", str(options.rows), "--save-rows", str(options.save_rows)]
            argv += ["--batch-size", str(options.batch_size)]
            argv += ["--rounds", str(options.rounds), "--postgresql", options.postgresql, "--database", database]
            argv += ["--batch-time", options.batch_time]
            code = subprocess.call([sys.executable, __file__, *argv])
            if code:
                sys.exit(code)
        return
    if options.database == "sqlite":
        path = ROOT / "var" / f"bench-{os.getpid()}.sqlite3"
        url = f"sqlite:///{path}"
    else:
        path = None
        url = options.postgresql
        create_postgresql(url)
    os.environ.update(DATABASE_URL=url, DJANGO_DEBUG="false", DJANGO_SETTINGS_MODULE="testproject.settings")
    sys.path.insert(0, str(ROOT))
    try:
        bench(options)
    finally:
        if path is None:
            drop_postgresql(url)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- the bench database ------------------------------------------------------------------


def server_connection(url: str):
    """Connect to the server's ``postgres`` database, in autocommit, and name the bench one."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name or name in ("postgres", "template0", "template1"):
        raise SystemExit(f"--postgresql {url}: name a database of the bench's own (e.g. /bench)")
    server = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    return psycopg.connect(server, autocommit=True), name


def create_postgresql(url: str) -> None:
    from psycopg import sql

    connection, name = server_connection(url)
    with connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_postgresql(url: str) -> None:
    from django.db import connections
    from psycopg import sql

    connections.close_all()
    connection, name = server_connection(url)
    with connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def seed(rows: int) -> None:
    from django.db import connection

    from testproject.testapp.models import BenchRow

    table = BenchRow._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table}")  # noqa: S608 (a table name of ours)
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} (id, counter, text) "  # noqa: S608
                "SELECT i, 0, 'row number ' || i FROM generate_series(1, %s) AS i",
                [rows],
            )
            cursor.execute(f"VACUUM ANALYZE {table}")
        else:
            cursor.execute(
                f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %s) "  # noqa: S608
                f"INSERT INTO {table} (id, counter, text) SELECT i, 0, 'row number ' || i FROM s",
                [rows],
            )
            cursor.execute(f"ANALYZE {table}")


# -- the two sides of each case ----------------------------------------------------------


def engine_side(name: str, upto: int | None, size: int, **tuning: float) -> Callable[[], int]:
    """Start a run of the processor as run_maintenance_task does, and perform it here.

    ``tuning``: the run's own batch_time and sleep_ratio (``Runner.create``), if any."""
    from maintenance_tasks.actors import local_actor
    from maintenance_tasks.engine import Engine
    from maintenance_tasks.runner import Runner
    from maintenance_tasks.status import RunStatus

    def side() -> int:
        config = {"upto": upto, "batch_size": size}
        run = Runner.create(f"{PROCESSORS}.{name}", config, metadata=local_actor("bench"), **tuning)
        Engine(run).perform()
        if run.status != RunStatus.SUCCEEDED:
            raise SystemExit(f"{name} run {run.pk} ended {run.status}: {run.error_class} {run.error_message}")
        return run.tick_count

    return side


def hand_walk(upto: int | None, size: int) -> int:
    from testproject.testapp.maintenance import bench_rows

    rows = bench_rows(upto)  # no upper bound unless asked: see bench/README.md on SQLite
    last, done = 0, 0
    while batch := list(rows.filter(pk__gt=last).order_by("pk")[:size]):
        for _row in batch:
            pass
        done += len(batch)
        last = batch[-1].pk
    return done


def hand_save(upto: int | None, size: int) -> int:
    from django.db import transaction

    from testproject.testapp.maintenance import bench_rows

    rows = bench_rows(upto)  # no upper bound unless asked: see bench/README.md on SQLite
    last, done = 0, 0
    while batch := list(rows.filter(pk__gt=last).order_by("pk")[:size]):
        with transaction.atomic():
            for row in batch:
                row.counter += 1
                row.save(update_fields=["counter"])
        done += len(batch)
        last = batch[-1].pk
    return done


def hand_update(upto: int | None, size: int) -> int:
    from django.db.models import F

    from testproject.testapp.maintenance import bench_rows

    rows = bench_rows(upto)  # no upper bound unless asked: see bench/README.md on SQLite
    last, done = 0, 0
    while keys := list(rows.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size]):
        rows.filter(pk__gt=last, pk__lte=keys[-1]).update(counter=F("counter") + 1)
        done += len(keys)
        last = keys[-1]
    return done


def hand_update_recorded(upto: int | None, size: int) -> int:
    """hand_update() with the engine's guarantee: each batch and a write of its cursor in one transaction."""
    from django.db import transaction
    from django.db.models import F

    from testproject.testapp.maintenance import bench_rows
    from testproject.testapp.models import BenchCursor

    rows = bench_rows(upto)
    cursor_row = BenchCursor.objects.filter(pk=BenchCursor.objects.get_or_create(pk=1)[0].pk)
    last, done = 0, 0
    while keys := list(rows.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size]):
        with transaction.atomic():
            rows.filter(pk__gt=last, pk__lte=keys[-1]).update(counter=F("counter") + 1)
            cursor_row.update(cursor=str(keys[-1]))
        done += len(keys)
        last = keys[-1]
    return done


# -- measuring ---------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def measure(side: Callable[[], int], expected: int) -> tuple[float, float]:
    """Return (wall seconds, CPU seconds of this process) of one pass of ``side``."""
    wall, cpu = time.perf_counter(), time.process_time()
    done = side()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if done != expected:
        raise SystemExit(f"{side} processed {done} rows, not {expected}")
    return wall, cpu


def configure_batch_time(batch_time: str) -> None:
    """Give the engine side the app's default BATCH_TIME (the test settings turn it off), or the one asked for."""
    from django.conf import settings

    value = settings.MAINTENANCE_TASKS
    value.pop("BATCH_TIME", None)
    if batch_time != "default":
        value["BATCH_TIME"] = None if batch_time == "none" else float(batch_time)


def bench(options: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from maintenance_tasks.conf import app_settings

    configure_batch_time(options.batch_time)
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    seed(options.rows)
    version = connection.cursor().connection.info.server_version if connection.vendor == "postgresql" else None
    version = f"{version // 10000}.{version % 10000}" if version else __import__("sqlite3").sqlite_version
    print(
        f"== {connection.vendor} {version}: {options.rows:,} rows seeded in {time.perf_counter() - started:.1f}s; "
        f"batch_size {options.batch_size}, BATCH_TIME {app_settings.BATCH_TIME}, "
        f"CHECKPOINT_INTERVAL {app_settings.CHECKPOINT_INTERVAL}s, best of {options.rounds} rounds",
        flush=True,
    )
    size = options.batch_size
    cases = [
        ("walk", options.rows, engine_side("BenchWalk", None, size), lambda: hand_walk(None, size)),
        ("atomic", options.rows, engine_side("BenchAtomicWalk", None, size), lambda: hand_walk(None, size)),
        (
            "save",
            options.save_rows,
            engine_side("BenchSave", options.save_rows, size),
            lambda: hand_save(options.save_rows, size),
        ),
        ("update", options.rows, engine_side("BenchUpdate", None, size), lambda: hand_update(None, size)),
    ]
    rss_start = peak_rss_mb()
    recorded = ("recorded", lambda: hand_update_recorded(None, size))
    for name, rows, engine, hand in cases:
        sides = [("engine", engine), ("hand", hand)] + ([recorded] if name == "update" else [])
        best = {label: [float("inf"), float("inf")] for label, _ in sides}
        for round_ in range(options.rounds):
            for label, side in sides if round_ % 2 == 0 else reversed(sides):  # take turns going first
                wall, cpu = measure(side, rows)
                best[label] = [min(best[label][0], wall), min(best[label][1], cpu)]
        (engine_wall, engine_cpu), (hand_wall, hand_cpu) = best["engine"], best["hand"]
        print(
            f"{name:<6} {rows:>9,} rows  engine {rows / engine_wall:>9,.0f} rows/s  "
            f"hand {rows / hand_wall:>9,.0f} rows/s  ratio {hand_wall / engine_wall:.2f}  "
            f"cpu ratio {hand_cpu / engine_cpu:.2f}  "
            f"peak RSS {peak_rss_mb():.1f} MB (+{peak_rss_mb() - rss_start:.1f})",
            flush=True,
        )
        if "recorded" in best:
            recorded_wall, recorded_cpu = best["recorded"]
            print(
                f"{'':<6} {'':>9}       hand with the engine's guarantee (atomic batch + cursor write): "
                f"{rows / recorded_wall:,.0f} rows/s  ratio {recorded_wall / engine_wall:.2f}  "
                f"cpu ratio {recorded_cpu / engine_cpu:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
