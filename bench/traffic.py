"""Latency of a fixed-rate load on PostgreSQL, idle and during a backfill, unprotected then protected.

Usage: .venv/bin/python bench/traffic.py [--rows N] [--rate TX_PER_S] [--seconds-idle S]
                                         [--scale S] [--database-url URL]
                                         [--batch-size N] [--batch-time S] [--sleep-ratio R]

Creates a database of its own (``bench_traffic`` on DATABASE_URL's server, or the one
--database-url names), migrates it, seeds N rows (default 1,000,000) in testapp's BenchRow
table and pgbench's tables (``pgbench -i -s S``), then runs pgbench at a fixed rate with a
light script that touches the backfilled table too (see SCRIPT), in six phases:

- idle: pgbench alone for --seconds-idle seconds;
- a busy core: another process spinning one core for --seconds-idle seconds, without any
  database work: what any client running on this machine costs the load, at the least;
- fixed batch 10,000: BenchUpdate over every row, batch_size 10,000, no throttle;
- protected: a run of BenchProtectedUpdate (throttle_on DatabaseLoad(max_active=3)) with its
  own batch_size 500, batch_time 0.01 (transactions of about 10 ms) and sleep_ratio 1 (a
  sleep as long after each), or the --batch-size, --batch-time and --sleep-ratio given;
- protected, by hand: the best loop written by hand with the same pacing (keyset batches of
  --batch-size and the cursor written in transactions of about --batch-time, each followed by
  a sleep --sleep-ratio times as long);
- idle again: pgbench alone, to show how much idle latency itself varies on the machine.

Prints p50/p99 of each phase's transaction latencies, each p99 as a ratio to idle (both idle
phases together), each backfill's rows/s, and a verdict against the aims (protected p99 at most
1.2 x idle, protected speed at least 0.5 x unprotected) and against the loop written by hand.
See bench/README.md. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from engine import ROOT, create_postgresql, drop_postgresql, engine_side, measure, seed, server_connection

DATABASE = "bench_traffic"
FIXED_BATCH = 10_000
#: The protected run's batch_size, batch_time and sleep_ratio by default (the loop by hand paces alike).
PROTECTED_BATCH, PROTECTED_TIME, PROTECTED_RATIO = 500, 0.01, 1.0
CLIENTS, THREADS = 4, 2
#: pgbench's connections carry this name, so that the bench can find and end them.
APPLICATION = "bench_traffic_load"
#: Seconds of load before a phase's measures begin (connections made, caches warm).
WARM_UP = 2.0
AIM_P99, AIM_SPEED = 1.2, 0.5
#: One transaction of the load: a TPC-B-like write, and a read then a write of a random row of
#: the backfilled table by primary key, which waits while a backfill's batch holds that row.
SCRIPT = r"""
\set aid random(1, :accounts)
\set id random(1, :rows)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT counter FROM testapp_benchrow WHERE id = :id;
UPDATE testapp_benchrow SET text = text WHERE id = :id;
END;
"""


def positive(kind: type[int] | type[float]):
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not more than 0")
        return value

    return parse


def ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text} is not from 0 to 100")
    return value


def default_url() -> str:
    """Return DATABASE_URL's PostgreSQL server with the database ``bench_traffic``, else the local server's."""
    parts = urlsplit(os.environ.get("DATABASE_URL", ""))
    if not parts.scheme.startswith("postgres"):
        parts = urlsplit("postgres://postgres@127.0.0.1:5432")
    return urlunsplit(parts._replace(path=f"/{DATABASE}", query=""))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=positive(int), default=1_000_000, help="rows to backfill (default 1,000,000)")
    parser.add_argument("--rate", type=positive(float), default=200, help="pgbench transactions/s (default 200)")
    parser.add_argument("--seconds-idle", type=positive(float), default=30, help="idle phase (default 30 s)")
    parser.add_argument("--scale", type=positive(int), default=10, help="pgbench -i scale (default 10)")
    parser.add_argument(
        "--batch-size",
        type=positive(int),
        default=PROTECTED_BATCH,
        help=f"the protected run's batch_size (default {PROTECTED_BATCH})",
    )
    parser.add_argument(
        "--batch-time",
        type=positive(float),
        default=PROTECTED_TIME,
        help=f"the protected run's batch_time (default {PROTECTED_TIME})",
    )
    parser.add_argument(
        "--sleep-ratio",
        type=ratio,
        default=PROTECTED_RATIO,
        help=f"the protected run's sleep_ratio (default {PROTECTED_RATIO:g})",
    )
    parser.add_argument(
        "--database-url",
        default=default_url(),
        help=f"the PostgreSQL database to create, use and drop (default {DATABASE} on DATABASE_URL's server)",
    )
    options = parser.parse_args()
    if urlsplit(options.database_url).path.strip("/") in ("", "postgres", "template0", "template1"):
        parser.error(f"--database-url {options.database_url}: name a database of the bench's own (e.g. /{DATABASE})")
    return options


def find_pgbench() -> str:
    """Return pgbench on PATH, else the newest in Debian's /usr/lib/postgresql/<version>/bin."""
    if found := shutil.which("pgbench"):
        return found
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), key=lambda path: int(path.parts[-3]))
    if not installed:
        raise SystemExit("pgbench not found: install PostgreSQL's client programs (postgresql-client)")
    return str(installed[-1])


def main() -> None:
    options = parse_args()
    pgbench = find_pgbench()
    connection, name = server_connection(options.database_url)
    with connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            raise SystemExit(f"the database {name} exists: the bench makes and drops its own; drop it or name another")
    create_postgresql(options.database_url)
    os.environ.update(
        DATABASE_URL=options.database_url, DJANGO_DEBUG="false", DJANGO_SETTINGS_MODULE="testproject.settings"
    )
    sys.path.insert(0, str(ROOT))
    try:
        with tempfile.TemporaryDirectory(prefix="bench-traffic-") as directory:
            bench(options, Load(pgbench, options, Path(directory)))
    finally:
        drop_postgresql(options.database_url)


class Load:
    """pgbench at a fixed rate, each transaction's latency logged, over phases of the bench."""

    def __init__(self, pgbench: str, options: argparse.Namespace, directory: Path) -> None:
        self.pgbench, self.options, self.directory = pgbench, options, directory
        (directory / "load.sql").write_text(SCRIPT)
        parts = urlsplit(options.database_url)
        self.url = urlunsplit(parts._replace(scheme="postgresql", query=f"application_name={APPLICATION}"))

    def initialize(self) -> None:
        """Create pgbench's tables (server-side data generation), quietly."""
        subprocess.run(
            [self.pgbench, "-i", "-s", str(self.options.scale), "-I", "dtGvp", "-q", self.url],
            check=True,
            capture_output=True,
        )

    @contextmanager
    def during(self, phase: str) -> Iterator[list[float]]:
        """Run the load around the block; then fill the list with the sorted latencies (ms) completed in it.

        A latency runs from the transaction's scheduled start (pgbench -R), so the time a
        transaction waits behind a late one counts, as it would for a client at a fixed rate.
        """
        prefix = self.directory / phase
        command = [self.pgbench, "-n", "-R", f"{self.options.rate:g}", "-c", str(CLIENTS), "-j", str(THREADS)]
        command += ["-T", "86400", "-f", str(self.directory / "load.sql"), "-l", "--log-prefix", str(prefix)]
        command += ["-D", f"rows={self.options.rows}", "-D", f"accounts={100_000 * self.options.scale}", self.url]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        latencies: list[float] = []
        try:
            while self.connected() < CLIENTS:
                if process.poll() is not None:
                    raise SystemExit(f"pgbench ended: {process.stderr.read() if process.stderr else ''}")
                time.sleep(0.05)
            time.sleep(WARM_UP)
            start = time.time()
            yield latencies
            end = time.time()
            if self.connected() < CLIENTS:
                raise SystemExit(f"pgbench lost clients during {phase}")
        finally:
            self.stop(process)
        latencies.extend(sorted(read_log(prefix, start, end)))
        if not latencies:
            raise SystemExit(f"no transaction completed during {phase} (raise --rate)")

    def connected(self) -> int:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APPLICATION])
            return cursor.fetchone()[0]

    def stop(self, process: subprocess.Popen[str]) -> None:
        """End pgbench by ending its connections: its clients abort and it writes out its logs and exits."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [APPLICATION]
            )
        process.communicate(timeout=60)


def read_log(prefix: Path, start: float, end: float) -> Iterator[float]:
    """Yield the latencies (ms) of pgbench's logged transactions that completed between start and end.

    A line is ``client transaction latency_us script epoch_s epoch_us schedule_lag_us``; the epoch is
    when the transaction completed.
    """
    for path in prefix.parent.glob(f"{prefix.name}.*"):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 6 and start <= int(fields[4]) + int(fields[5]) / 1e6 <= end:
                yield int(fields[2]) / 1000


def percentile(latencies: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of sorted latencies."""
    return latencies[max(0, math.ceil(fraction * len(latencies)) - 1)]


def bench(options: argparse.Namespace, load: Load) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from maintenance_tasks.models import Run

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    seed(options.rows)
    load.initialize()
    version = connection.cursor().connection.info.server_version
    print(
        f"== postgresql {version // 10000}.{version % 10000}: {options.rows:,} rows seeded in "
        f"{time.perf_counter() - started:.1f}s; pgbench at {options.rate:g} tx/s ({CLIENTS} clients), "
        f"p50/p99 from each transaction's scheduled start; protected: batch_size {options.batch_size}, "
        f"batch_time {options.batch_time:g}, sleep_ratio {options.sleep_ratio:g}",
        flush=True,
    )

    def settle() -> None:
        """Start each phase alike: no dead rows from the last one, no dirty pages left to write."""
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
            cursor.execute("CHECKPOINT")

    settle()
    with load.during("idle") as idle:
        time.sleep(options.seconds_idle)

    fixed = f"fixed batch {FIXED_BATCH:,}"
    pacing = {"batch_time": options.batch_time, "sleep_ratio": options.sleep_ratio}
    phases = [  # name, side, rows it processes (none: no backfill)
        ("busy core", spin_one_core(options.seconds_idle), 0),
        (fixed, engine_side("BenchUpdate", None, FIXED_BATCH), options.rows),
        ("protected", engine_side("BenchProtectedUpdate", None, options.batch_size, **pacing), options.rows),
        ("protected, by hand", lambda: hand_protected(options), options.rows),
    ]
    results: dict[str, tuple[list[float], float]] = {}  # latencies, rows/s
    for phase, side, rows in phases:
        settle()
        with load.during(phase.replace(" ", "_").replace(",", "")) as latencies:
            seconds, _cpu = measure(side, rows)
        results[phase] = latencies, rows / seconds
    settle()
    with load.during("idle_again") as idle_again:
        time.sleep(options.seconds_idle)
    idle_p99 = percentile(sorted(idle + idle_again), 0.99)
    for name, latencies in (("idle", idle), ("idle again", idle_again)):
        print(f"{name}: p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms; "
              f"{len(latencies):,} transactions")  # fmt: skip
    print(f"idle, both phases: p99 {idle_p99:.1f} ms (the reference of the ratios below)")

    fixed_speed = results[fixed][1]
    for phase, (latencies, speed) in results.items():
        line = f"{phase}: p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms "
        line += f"({percentile(latencies, 0.99) / idle_p99:.2f} x idle)"
        if speed:
            line += f", {speed:,.0f} rows/s"
        if phase.startswith("protected"):
            line += f" ({speed / fixed_speed:.2f} x unprotected)"
        if phase == "protected":
            run = Run.objects.filter(task__processor__endswith=".BenchProtectedUpdate").latest("pk")
            line += f", throttled {run.throttled_seconds:.1f}s, {run.commits:,} commits"
        print(f"{line}; {len(latencies):,} transactions", flush=True)

    (protected, speed), (by_hand, hand_speed) = results["protected"], results["protected, by hand"]
    p99 = percentile(protected, 0.99) / idle_p99
    print(
        f"aims: protected p99 <= {AIM_P99} x idle: {'met' if p99 <= AIM_P99 else 'not met'} ({p99:.2f}); "
        f"protected speed >= {AIM_SPEED} x unprotected: "
        f"{'met' if speed / fixed_speed >= AIM_SPEED else 'not met'} ({speed / fixed_speed:.2f})\n"
        f"protected against the same pacing by hand: p99 {percentile(protected, 0.99) / percentile(by_hand, 0.99):.2f} x, "
        f"speed {speed / hand_speed:.2f} x",
        flush=True,
    )


def spin_one_core(seconds: float):
    """Return a bench side that keeps one core busy in another process for ``seconds``, without any database work."""

    def side() -> int:
        subprocess.run([sys.executable, "-c", f"import time\nend = time.monotonic() + {seconds}\n"
                        "while time.monotonic() < end: pass"], check=True)  # fmt: skip
        return 0

    return side


def hand_protected(options: argparse.Namespace) -> int:
    """The best loop by hand with the protected run's pacing: keyset batches of --batch-size rows,
    updated with the cursor written in transactions of about --batch-time seconds, each followed by
    a sleep --sleep-ratio times as long."""
    from django.db import transaction
    from django.db.models import F

    from testproject.testapp.maintenance import bench_rows
    from testproject.testapp.models import BenchCursor

    rows, size = bench_rows(None), options.batch_size
    cursor_row = BenchCursor.objects.filter(pk=BenchCursor.objects.get_or_create(pk=1)[0].pk)
    last, done, keys = 0, 0, [0]
    while keys:
        started = time.monotonic()
        with transaction.atomic():
            while keys := list(rows.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size]):
                rows.filter(pk__gt=last, pk__lte=keys[-1]).update(counter=F("counter") + 1)
                done, last = done + len(keys), keys[-1]
                if time.monotonic() - started >= options.batch_time:
                    break
            cursor_row.update(cursor=str(last))
        time.sleep(options.sleep_ratio * (time.monotonic() - started))
    return done


if __name__ == "__main__":
    main()
