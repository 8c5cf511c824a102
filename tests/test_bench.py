"""bench/engine.py runs from start to end and prints its figures (a smoke test, not a timing)."""

import os
import re
import subprocess
import sys

import pytest
from django.db import connection

from .conftest import ROOT, deadline

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the smoke run uses a SQLite file of its own"),
]


def test_engine_bench_prints_a_ratio_per_case():
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    result = subprocess.run(
        [sys.executable, "bench/engine.py", "--rows", "20000", "--save-rows", "2000", "--rounds", "1"]
        + ["--database", "sqlite"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=deadline(300),
        check=False,
    )
    assert result.returncode == 0, result.stderr
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
