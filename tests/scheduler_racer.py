"""One scheduler pass in its own process, started when the barrier file appears (for test_scheduler_processes)."""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

import django

django.setup()

from maintenance_tasks.scheduling import scheduler_pass  # noqa: E402

ready, barrier = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not barrier.exists():
    time.sleep(0.001)
result = scheduler_pass()
print(f"started {len(result.started)} skipped {len(result.skipped)}")  # noqa: T201
