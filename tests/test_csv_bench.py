"""bench/csv_memory.py over a 50 MB file: reading it does not raise the peak RSS by more than a few MB."""

import re
import subprocess
import sys

import pytest

from .conftest import ROOT, child_env, deadline

pytestmark = pytest.mark.bench


def test_reading_a_big_csv_file_keeps_memory_flat():
    result = subprocess.run(
        [sys.executable, "bench/csv_memory.py", "--megabytes", "50"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=deadline(300),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = re.search(r"^file +\d+ MB, ([\d,]+) rows", result.stdout, re.MULTILINE).group(1)
    assert f"scan      {rows} rows" in result.stdout and f"walk      {rows} rows" in result.stdout
    increase = float(
        re.search(r"^peak RSS after reading: [\d.]+ MB \(\+([\d.]+) MB\)$", result.stdout, re.MULTILINE).group(1)
    )
    assert increase < 20, result.stdout
