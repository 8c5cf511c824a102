"""Peak memory of reading a big CSV file: the scan that checks and counts it, then the walk a run does.

Usage: .venv/bin/python bench/csv_memory.py [--megabytes N]

Writes a CSV file of N MB (default 1024) in a temporary directory (deleted at the end), about 100
bytes a row, some with a quoted field over two lines, then in this process: scans it as
``Runner.create`` does (header check, full decode, row count), and walks every row from the first
batch to the last as the engine does, through ``open_source()`` with the ``SkipRows`` processor
(1,000 rows a batch; the processor does nothing). Prints the peak RSS before and after
(``resource.getrusage``): reading the file is a stream, so the peak should not move by more
than a few MB whatever the size of the file.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_mb() -> float:
    """Return this process's peak RSS so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_file(path: Path, megabytes: int) -> int:
    """Write about ``megabytes`` MB of rows; return the number of rows."""
    target, rows = megabytes * 1024 * 1024, 0
    with path.open("w", encoding="utf-8", newline="") as file:
        file.write("id,email,note\n")
        written = 0
        while written < target:
            chunk = []
            for i in range(rows, rows + 10_000):
                note = '"a note, quoted,\nover two lines"' if i % 100 == 0 else "a plain note of some length here"
                chunk.append(f"{i},user{i}@example.com{' ' * 40},{note}\n")
            text = "".join(chunk)
            file.write(text)
            written += len(text)
            rows += 10_000
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=1024, help="size of the generated file (default 1024)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    import django

    django.setup()
    from maintenance_tasks.csvsource import CSVFile
    from maintenance_tasks.sources import open_source
    from testproject.testapp.maintenance import SkipRows

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "big.csv"
        started = time.monotonic()
        rows = write_file(path, args.megabytes)
        size = path.stat().st_size
        print(f"file      {size / 1024 / 1024:,.0f} MB, {rows:,} rows, written in {time.monotonic() - started:.1f}s")
        before = peak_mb()
        print(f"peak RSS before reading: {before:.1f} MB")
        started = time.monotonic()
        with path.open("rb") as file:
            counted = CSVFile(file, "utf-8-sig", ("id",)).scan()
        print(f"scan      {counted:,} rows in {time.monotonic() - started:.1f}s, peak RSS {peak_mb():.1f} MB")
        started, walked = time.monotonic(), 0
        source = open_source(SkipRows(), lambda: path.open("rb"))
        for batch in source.batches(None, whole=False):
            walked += batch.size
        print(f"walk      {walked:,} rows in {time.monotonic() - started:.1f}s, peak RSS {peak_mb():.1f} MB")
        after = peak_mb()
    print(f"peak RSS after reading: {after:.1f} MB (+{after - before:.1f} MB)")
    if counted != rows or walked != rows:
        print(f"error: {rows:,} rows written, {counted:,} counted, {walked:,} walked", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
