"""The tasks backend refuses the job: django-tasks-rq pointed at a Redis port where nothing listens.

The connection is really refused (a port just bound and released). Before, the error escaped
from the ``on_commit`` callback after the run was saved ``enqueued``: no job existed, nothing
would ever perform the run, and the run blocked its task (one active run per task) until someone
cancelled it by hand; the admin's Start answered a 500. Now the run is ``errored`` with the
backend's message, ``Runner.run`` raises ``EnqueueFailed`` and the task is free for a later run.
"""

import socket

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import reverse

from maintenance_tasks import Runner
from maintenance_tasks.exceptions import EnqueueFailed, MaintenanceTaskError
from maintenance_tasks.models import Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Seen

from .conftest import ROOT, child_env

pytestmark = [pytest.mark.django_db(transaction=True)]

S = RunStatus
RECORD = "testproject.testapp.maintenance.RecordOnce"
QUEUES = ["default", "heavy"]


def closed_port() -> int:
    """Return a local TCP port on which nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unreachable_rq():
    """Settings of django-tasks-rq with every queue on a Redis that refuses connections."""
    url = f"redis://127.0.0.1:{closed_port()}/0"
    tasks = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": QUEUES}}
    with override_settings(TASKS=tasks, RQ_QUEUES={name: {"URL": url} for name in QUEUES}):
        yield url


def assert_errored_by_the_backend(run):
    run.refresh_from_db()
    assert (run.status, run.error_class) == (S.ERRORED, "maintenance_tasks.exceptions.EnqueueFailed")
    assert run.error_message.startswith("The tasks backend refused the job: redis.exceptions.ConnectionError: ")
    assert "Connection refused" in run.error_message, run.error_message
    assert run.ended_at is not None and run.job_id == ""
    assert list(run.events.values_list("action", "to_status")) == [
        ("created", S.ENQUEUED),
        ("enqueue_failed", S.ERRORED),
    ]


def test_runner_run_raises_enqueue_failed_and_leaves_the_run_errored(unreachable_rq):
    with pytest.raises(EnqueueFailed) as raised:
        Runner.run(RECORD)
    assert isinstance(raised.value, MaintenanceTaskError)
    run = Run.objects.get()
    assert str(raised.value).startswith(f"Run {run.pk} of {run.task} could not be enqueued (it is errored): ")
    assert_errored_by_the_backend(run)

    # The task is not blocked: a later run starts (here on the in-process backend) and succeeds.
    with override_settings(TASKS={"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}):
        later = Runner.run(RECORD)
    assert later.task == run.task and later.status == S.SUCCEEDED
    assert list(Seen.objects.values_list("value", flat=True)) == ["once"]


@pytest.mark.processes
def test_runner_run_in_a_process_configured_for_an_unreachable_redis(unreachable_rq):
    """The same through the project's settings (TASKS_BACKEND=rq, REDIS_URL) in a real process."""
    import subprocess
    import sys

    script = (
        "from maintenance_tasks import Runner\n"
        "from maintenance_tasks.exceptions import EnqueueFailed\n"
        "try:\n"
        f"    Runner.run({RECORD!r})\n"
        "except EnqueueFailed as error:\n"
        "    print('EnqueueFailed', error)\n"
    )
    env = child_env(TASKS_BACKEND="rq", REDIS_URL=unreachable_rq, MAINTENANCE_LOG_LEVEL="CRITICAL")
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v0", "-c", script],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = Run.objects.get()
    assert result.stdout.startswith(f"EnqueueFailed Run {run.pk} of {run.task} could not be enqueued"), result
    assert_errored_by_the_backend(run)


def test_admin_start_answers_a_message_not_a_500(unreachable_rq, client):
    client.force_login(User.objects.create_superuser("root"))
    response = client.post(reverse("admin:maintenance_tasks_processor", args=[RECORD]), {"_start": "Start"})
    assert response.status_code == 409
    run = Run.objects.get()
    [message] = [str(message) for message in response.context["messages"]]
    assert message.startswith(f"Run {run.pk} of {run.task} could not be enqueued (it is errored): ")
    assert "Connection refused" in message
    assert_errored_by_the_backend(run)
