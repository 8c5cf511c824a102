"""CSV input through real processes: standard input, and kill -9 at random moments of a 200,000-row run."""

import random
import subprocess
import sys

import pytest
from django.db.models import Count

from maintenance_tasks.models import Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Seen
from tests.conftest import ROOT, child_env, deadline, kill_9_and_resume, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 200_000


@pytest.fixture
def media(tmp_path):
    return tmp_path / "media"


def run_command(media, *args, stdin=b""):
    return subprocess.run(
        [sys.executable, "manage.py", "run_maintenance_task", *args],
        cwd=ROOT,
        env=child_env(MEDIA_ROOT=str(media)),
        input=stdin,
        capture_output=True,
        timeout=deadline(120),
        check=False,
    )


def test_standard_input_is_stored_then_read_like_any_file(media):
    result = run_command(media, "RecordRows", "--csv", "-", stdin=b'id,email\n1,a\n2,"b\nc"\n')
    assert result.returncode == 0, result.stderr
    run = Run.objects.get()
    assert (run.status, run.tick_count, run.tick_total) == (RunStatus.SUCCEEDED, 2, 2)
    assert run.csv_file.name.endswith("/rows.csv") and (media / run.csv_file.name).exists()
    assert list(Seen.objects.order_by("pk").values_list("value", flat=True)) == [
        '{"email": "a", "id": "1"}',
        '{"email": "b\\nc", "id": "2"}',
    ]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["RecordRows", "--csv", "-"], b"email\nx\n", "--csv: The header row lacks the column(s) id (it has: email)."),
        (["RecordRows", "--csv", "-"], b"id\n\xff\n", "--csv: line 2: cannot be decoded as utf-8-sig (byte b'\\xff' at column 1)."),
        (["RecordRows"], b"", "--csv: RecordRows reads its rows from a CSV file: give one."),
        (["RecordOnce", "--csv", "-"], b"id\n1\n", "--csv: RecordOnce does not read a CSV file (it has no csv_collection): start it without one."),
        (["RecordRows", "--csv", "/nonexistent/rows.csv"], b"", "--csv: cannot open /nonexistent/rows.csv: No such file or directory."),
        (["--resume", "1", "--csv", "-"], b"", "--resume takes no processor, parameters nor --csv: the run keeps its own."),
    ],
)  # fmt: skip
def test_a_bad_file_is_one_line_and_exit_status_2_with_nothing_saved(media, args, stdin, message):
    result = run_command(media, *args, stdin=stdin)
    assert (result.returncode, result.stderr.decode()) == (2, f"CommandError: {message}\n")
    assert not Run.objects.exists() and not media.exists()


def test_kill_9_at_random_moments_then_resume_processes_every_row_once(manage, tmp_path, media):
    seed = random.Random().randrange(10**6)
    path = tmp_path / "ids.csv"
    with path.open("w") as file:
        file.write("id,note\n")
        for i in range(ROWS):
            # Every 1,000th row has a quoted field over two lines: offsets are bytes, not lines.
            file.write(f'{i},"line\nbreak"\n' if i % 1000 == 7 else f"{i},plain\n")
    command = manage(
        "run_maintenance_task", "RecordRowIds", "--csv", str(path), "--arg", "delay=0.02", MEDIA_ROOT=str(media)
    )
    run = wait_for(lambda: Run.objects.filter(status=RunStatus.RUNNING, tick_count__gt=0).first(), timeout=60)
    assert run.tick_total == ROWS
    run = kill_9_and_resume(manage, command, run, seed, kills=5, longest=1.5, MEDIA_ROOT=str(media))
    assert (run.status, run.tick_count) == (RunStatus.SUCCEEDED, ROWS)
    assert Seen.objects.count() == ROWS, f"seed {seed}"
    assert not Seen.objects.values("value").annotate(n=Count("id")).filter(n__gt=1).exists(), f"seed {seed}"
    assert set(map(int, Seen.objects.values_list("value", flat=True))) == set(range(ROWS))
