"""Run a manage.py command once a start file exists, so that a test can start several at one instant.

Usage: python -m tests.barrier START_FILE COMMAND [ARGS...]. Django is set up and connected
first; ``START_FILE.ready.<pid>`` tells the test this process waits at the barrier.
"""

import os
import sys
import time
from pathlib import Path


def main() -> None:
    start, *argv = sys.argv[1:]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    import django

    django.setup()
    from django.core.management import execute_from_command_line
    from django.db import connection

    from maintenance_tasks.registry import registry

    registry.processors()
    connection.ensure_connection()
    Path(f"{start}.ready.{os.getpid()}").touch()
    while not Path(start).exists():
        time.sleep(0.001)
    execute_from_command_line(["manage.py", *argv])


if __name__ == "__main__":
    main()
