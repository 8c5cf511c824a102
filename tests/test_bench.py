"""bench/engine.py and bench/traffic.py run from start to end and print their figures (smoke tests, not timings)."""

import os
import re
import subprocess
import sys

import pytest
from django.db import connection

from .conftest import ROOT, deadline

pytestmark = pytest.mark.bench


def run_bench(script: str, args: list[str], *, drop: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """Run bench/<script> with ``args``, without the environment variables ``drop`` names; it must exit 0."""
    env = {key: value for key, value in os.environ.items() if key not in drop}
    result = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=deadline(300),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the smoke run uses a SQLite file of its own")
def test_engine_bench_prints_a_ratio_per_case():
    args = ["--rows", "20000", "--save-rows", "2000", "--rounds", "1", "--database", "sqlite"]
    result = run_bench("engine.py", args, drop=("DATABASE_URL", "DJANGO_SETTINGS_MODULE"))
    assert result.stdout.startswith("== sqlite "), result.stdout
    assert "20,000 rows seeded" in result.stdout
    for case, rows in (("walk", "20,000"), ("atomic", "20,000"), ("save", "2,000"), ("update", "20,000")):
        line = re.search(
            rf"^{case} +{rows} rows +engine +[\d,]+ rows/s +hand +[\d,]+ rows/s +ratio (\d+\.\d\d) "
            rf"+cpu ratio (\d+\.\d\d) +peak RSS [\d.]+ MB \(\+[\d.]+\)$",
            result.stdout,
            re.MULTILINE,
        )
        assert line, f"no {case} line in:\n{result.stdout}"
        assert float(line[1]) > 0 and float(line[2]) > 0
    assert re.search(
        r"engine's guarantee .*: [\d,]+ rows/s  ratio \d+\.\d\d  cpu ratio \d+\.\d\d$", result.stdout, re.M
    )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="bench/traffic.py measures PostgreSQL with pgbench")
def test_traffic_bench_prints_each_phase_and_the_verdicts():
    # A database of its own on the test server, named for this process: suites beside this one use theirs.
    url = re.sub(r"/[^/]*$", f"/bench_traffic_smoke_{os.getpid()}", os.environ["DATABASE_URL"])
    args = ["--rows", "20000", "--seconds-idle", "2", "--scale", "1", "--sleep-ratio", "0.5", "--database-url", url]
    out = run_bench("traffic.py", args, drop=("DJANGO_SETTINGS_MODULE",)).stdout
    assert out.startswith("== postgresql "), out
    assert "20,000 rows seeded" in out and "protected: batch_size 500, batch_time 0.01, sleep_ratio 0.5" in out
    latency = r"p50 \d+\.\d ms, p99 \d+\.\d ms"
    for idle in ("idle", "idle again"):
        assert re.search(rf"^{idle}: {latency}; [\d,]+ transactions$", out, re.M), out
    assert re.search(rf"^busy core: {latency} \(\d+\.\d\d x idle\); [\d,]+ transactions$", out, re.M), out
    rows = r"\(\d+\.\d\d x idle\), [\d,]+ rows/s"
    assert re.search(rf"^fixed batch 10,000: {latency} {rows}; [\d,]+ transactions$", out, re.M), out
    protected = rf"^protected: {latency} {rows} \(\d+\.\d\d x unprotected\), throttled \d+\.\ds, [\d,]+ commits;"
    assert re.search(protected, out, re.M), out
    assert re.search(rf"^protected, by hand: {latency} {rows} \(\d+\.\d\d x unprotected\);", out, re.M), out
    assert re.search(r"^aims: protected p99 <= 1.2 x idle: (met|not met) \(\d+\.\d\d\); ", out, re.M), out
    assert re.search(r"^protected against the same pacing by hand: p99 \d+\.\d\d x, speed \d+\.\d\d x$", out, re.M)
