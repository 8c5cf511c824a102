"""The admin's warning when no worker takes the runs' jobs, and the run page's job id."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.tasks import task_backends
from django.template import RequestContext, Template
from django.test import RequestFactory
from django.utils import timezone

from maintenance_tasks import Runner, workers
from maintenance_tasks.engine import Engine
from maintenance_tasks.jobs import perform_run
from maintenance_tasks.models import Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item

from .conftest import wait_for
from .factories import ItemFactory, RunFactory

pytestmark = pytest.mark.django_db

APP = "testproject.testapp.maintenance"
INCREMENT = f"{APP}.IncrementItems"
HEAVY = f"{APP}.HeavyShardBatches"
INDEX = "/admin/maintenance_tasks/task/"
APP_INDEX = "/admin/maintenance_tasks/"
WARNING = "No worker seems to be taking maintenance jobs"
DATABASE = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "heavy"]}}
STALE_AFTER = 60.0


@pytest.fixture
def database_backend(settings):
    settings.TASKS = DATABASE
    settings.MAINTENANCE_TASKS = {"STALE_AFTER": STALE_AFTER}


@pytest.fixture
def operator(client):
    user = User.objects.create_user("alice", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_task", content_type__app_label="maintenance_tasks"))
    client.force_login(user)
    return user


def age(runs, seconds=STALE_AFTER + 30):
    """Make the runs look enqueued ``seconds`` ago, instead of waiting that long."""
    Run.objects.filter(pk__in=[run.pk for run in runs]).update(updated_at=timezone.now() - timedelta(seconds=seconds))


def start(processor, config, capture):
    """Start a run on the configured backend: its job is really enqueued and its id noted on the run."""
    with capture(execute=True):
        run = Runner.run(processor, config)
    run.refresh_from_db()
    assert run.status == RunStatus.ENQUEUED and run.job_id
    return run


def warning(client, url=INDEX):
    html = client.get(url).content.decode()
    start = html.find('<ul class="messagelist mt-missing-worker"')
    return html[start : html.index("</ul>", start)] if start >= 0 else None


def test_warning_names_the_backend_and_how_to_start_a_worker(
    database_backend, operator, client, django_capture_on_commit_callbacks
):
    run = start(INCREMENT, {}, django_capture_on_commit_callbacks)
    assert warning(client) is None  # enqueued just now: its job may simply wait its turn
    age([run])
    shown = warning(client)
    assert f"{WARNING}: 1 run has waited on the tasks backend “default” (DatabaseBackend) for more than 60s" in shown
    assert '<code class="mt-worker-command">manage.py db_worker</code>' in shown
    assert 'href="/admin/maintenance_tasks/run/?status__exact=enqueued"' in shown
    assert warning(client, APP_INDEX) == shown  # Django's page of the app shows it too


def test_warning_names_the_queues_of_the_waiting_runs(
    database_backend, operator, client, django_capture_on_commit_callbacks
):
    runs = [start(HEAVY, {"shard": shard}, django_capture_on_commit_callbacks) for shard in (1, 2)]
    runs.append(start(INCREMENT, {}, django_capture_on_commit_callbacks))
    age(runs)
    shown = warning(client)
    assert "3 runs have waited" in shown
    assert "manage.py db_worker --queue-name default,heavy" in shown


def test_warning_goes_once_a_worker_claims_a_slice(
    database_backend, operator, client, django_capture_on_commit_callbacks
):
    first = start(INCREMENT, {}, django_capture_on_commit_callbacks)
    second = start(HEAVY, {"shard": 1}, django_capture_on_commit_callbacks)
    age([first, second])
    assert "2 runs have waited" in warning(client)
    Engine(first).claim(first.attempt)  # what a worker's slice does first
    assert warning(client) is None  # a worker is alive: the other run waits its turn
    Run.objects.filter(pk=first.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=STALE_AFTER + 1))
    assert "1 run has waited" in warning(client)  # that worker went silent, the other run still waits


def test_the_warning_follows_stale_after(database_backend, operator, client, settings):
    settings.MAINTENANCE_TASKS = {"STALE_AFTER": 2.5}
    run = RunFactory(job_id="job-1")
    age([run], seconds=2)
    assert warning(client) is None
    age([run], seconds=3)
    assert "1 run has waited on the tasks backend “default” (DatabaseBackend) for more than 2.5s" in warning(client)


def test_a_finished_run_counts_as_a_claim(database_backend, operator, client):
    waiting = RunFactory(job_id="job-1")
    age([waiting])
    assert "1 run has waited" in warning(client)
    RunFactory(task__processor=f"{APP}.EveryType", succeeded=True, heartbeat_at=timezone.now())
    assert warning(client) is None  # a worker took a job and finished it a moment ago


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"updated_at": 10}, "enqueued for less than STALE_AFTER"),
        ({"job_id": ""}, "no job: a foreground command was to perform it"),
        ({"waiting_since": 3600}, "in line for a slot under MAX_CONCURRENT_RUNS"),
        ({"retries": 1, "retry_at": -30}, "its retry is due in 30 seconds"),
        ({"retries": 1, "retry_at": 10}, "its retry was due only 10 seconds ago"),
        ({"status": RunStatus.PAUSED}, "not enqueued"),
    ],
)
def test_no_warning_for_runs_that_do_not_wait_for_a_worker(database_backend, fields, why):
    now = timezone.now()
    values = {
        name: now - timedelta(seconds=value) if name.endswith(("_at", "_since")) else value
        for name, value in fields.items()
    }
    run = RunFactory(job_id="job-1")
    Run.objects.filter(pk=run.pk).update(**{"updated_at": now - timedelta(seconds=STALE_AFTER + 30), **values})
    assert workers.missing_worker(perform_run.get_backend()) is None, why
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.ENQUEUED, job_id="job-1", waiting_since=None, retry_at=None,
        updated_at=now - timedelta(seconds=STALE_AFTER + 30),
    )  # fmt: skip
    assert workers.missing_worker(perform_run.get_backend()) is not None  # the same run, waiting for a worker


@pytest.mark.parametrize(
    "backend", ["django.tasks.backends.immediate.ImmediateBackend", "django.tasks.backends.dummy.DummyBackend"]
)
def test_never_for_a_backend_without_workers(settings, operator, client, backend):
    settings.TASKS = {"default": {"BACKEND": backend}}
    run = RunFactory(job_id="job-1")
    age([run])
    assert warning(client) is None
    assert warning(client, APP_INDEX) is None


def test_one_query_while_no_run_waits(database_backend, django_assert_num_queries):
    RunFactory(job_id="job-1")  # enqueued a moment ago
    RunFactory(task__processor=HEAVY, succeeded=True)
    backend = perform_run.get_backend()
    with django_assert_num_queries(1):
        assert workers.missing_worker(backend) is None
    age(Run.objects.all())
    with django_assert_num_queries(2):  # the heartbeats are read only while runs wait
        assert workers.missing_worker(backend).runs == 1


def test_worker_commands(settings):
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default", "heavy"]},
        "db": {"BACKEND": "django_tasks_db.DatabaseBackend"},
        "plain": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"},
    }
    assert workers.worker_command(task_backends["default"], ["default", "heavy"]) == (
        "manage.py rqworker --job-class django_tasks_rq.Job --worker-class rq.worker.HerokuWorker "
        "--with-scheduler default heavy"
    )
    assert workers.worker_command(task_backends["db"], ["default"]) == "manage.py db_worker"
    assert workers.worker_command(task_backends["db"], ["heavy"]) == "manage.py db_worker --queue-name heavy"
    assert workers.worker_command(task_backends["plain"], ["default"]) == ""
    assert workers.backend_label(task_backends["default"]) == "“default” (RQBackend)"


def test_a_project_admin_index_may_show_it_to_users_who_see_runs(database_backend, rf: RequestFactory):
    """A project with its own ``admin/index.html`` adds ``{% load maintenance_tasks %}{% missing_worker_warning %}``."""
    age([RunFactory(job_id="job-1")])
    template = Template("{% load maintenance_tasks %}{% missing_worker_warning %}")
    request = rf.get("/admin/")
    request.user = User.objects.create_user("nobody", is_staff=True)
    assert WARNING not in template.render(RequestContext(request))
    request.user.user_permissions.add(Permission.objects.get(codename="view_run"))
    request.user = User.objects.get(pk=request.user.pk)  # permissions are cached on the user
    assert WARNING in template.render(RequestContext(request))


def test_the_readme_snippet_shows_it_on_django_admin_index(database_backend, operator, client, settings, tmp_path):
    (tmp_path / "admin").mkdir()
    (tmp_path / "admin" / "index.html").write_text(
        '{% extends "admin/index.html" %}\n{% load maintenance_tasks %}\n'
        "{% block content %}{% missing_worker_warning %}{{ block.super }}{% endblock %}\n"
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    assert warning(client, "/admin/") is None
    age([RunFactory(job_id="job-1")])
    shown = warning(client, "/admin/")
    assert f"{WARNING}: 1 run has waited" in shown
    assert 'href="/admin/maintenance_tasks/task/"' in client.get("/admin/").content.decode()  # the app list is kept


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_makes_the_warning_go(database_backend, operator, client, manage):
    ItemFactory.create_batch(5)
    run = Runner.run(INCREMENT, {})  # no transaction around: its job is enqueued at once
    run.refresh_from_db()
    age([run])
    assert "1 run has waited" in warning(client)
    worker = manage("db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.05", "--batch", "-v0",
                    TASKS_BACKEND="database", DJANGO_DEBUG="false")  # fmt: skip
    wait_for(lambda: Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED, timeout=60)
    assert warning(client) is None
    assert set(Item.objects.values_list("times_processed", flat=True)) == {1}
    worker.wait()


def test_run_page_shows_the_job_id_and_its_backend(database_backend, client, django_capture_on_commit_callbacks):
    user = User.objects.create_user("bob", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(user)
    run = start(INCREMENT, {}, django_capture_on_commit_callbacks)
    html = client.get(f"/admin/maintenance_tasks/run/{run.pk}/change/").content.decode()
    assert f'<code class="mt-job-id">{run.job_id}</code> on the tasks backend “default” (DatabaseBackend)' in html
    foreground = RunFactory(task__processor=HEAVY, job_id="")
    html = client.get(f"/admin/maintenance_tasks/run/{foreground.pk}/change/").content.decode()
    assert "mt-job-id" not in html and "<label>Job:</label>" in html
