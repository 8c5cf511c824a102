"""Dry runs: every batch rolled back, the writes it would have made reported, on every database."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from maintenance_tasks import deploy
from maintenance_tasks.dryrun import DryRun, describe, write_of
from maintenance_tasks.engine import Engine
from maintenance_tasks.exceptions import InvalidProcessor, RunAlreadyActive
from maintenance_tasks.models import Run, Task
from maintenance_tasks.runner import Runner
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item, Seen

from .factories import RunFactory
from .test_admin import ALL_PERMS, make_user, processor_url, run_url

pytestmark = pytest.mark.django_db
APP = "testproject.testapp.maintenance."
AUTOCOMMIT_REFUSAL = (
    "IncrementItemsAutocommit cannot be dry-run: it has atomic = False, so each item commits on its own "
    "and nothing could roll its writes back."
)


@pytest.fixture
def items():
    return Item.objects.bulk_create(Item(value=i) for i in range(25))


def dry_run(name, config=None, **engine_options):
    run = Runner.create(APP + name, config, dry_run=True)
    return Engine(run, **engine_options).perform()


def untouched():
    """Return whether the items are as the fixture made them, and nothing else was written."""
    values = list(Item.objects.order_by("pk").values_list("value", "times_processed"))
    return values == [(i, 0) for i in range(25)] and not Seen.objects.exclude(value="old").exists()


@pytest.mark.parametrize(
    ("sql", "write"),
    [
        ('UPDATE "demo_article" SET "slug" = %s WHERE "id" = %s', "UPDATE demo_article"),
        ("UPDATE `demo_article` SET `slug` = %s", "UPDATE demo_article"),
        ('  update "public"."demo_article" set x = 1', "UPDATE public.demo_article"),
        ('INSERT INTO "demo_tag" ("name") VALUES (%s) RETURNING "id"', "INSERT demo_tag"),
        ('INSERT INTO "demo_tag" ("name") VALUES (%s) ON CONFLICT DO NOTHING', "INSERT demo_tag"),
        ('INSERT OR IGNORE INTO "demo_tag" ("name") VALUES (%s)', "INSERT demo_tag"),
        ("INSERT IGNORE INTO `demo_tag` (`name`) VALUES (%s)", "INSERT demo_tag"),
        ("REPLACE INTO `demo_tag` (`name`) VALUES (%s)", "INSERT demo_tag"),
        ('DELETE FROM "demo_tag" WHERE "id" IN (%s)', "DELETE demo_tag"),
        ("DELETE `demo_tag` FROM `demo_tag` INNER JOIN `demo_article` ON 1", "DELETE demo_tag"),
        ('SELECT "id" FROM "demo_article"', None),
        ('SAVEPOINT "s1_x1"', None),
        ("WITH t AS (SELECT 1) SELECT * FROM t", None),
    ],
)
def test_each_write_is_named_by_its_kind_and_table(sql, write):
    assert write_of(sql) == write


@pytest.mark.parametrize(
    ("name", "statements"), [("IncrementItems", 25), ("IncrementItemsInBatches", 3)]
)  # a save() per item, an update() per batch
def test_a_dry_run_writes_nothing_and_reports_the_rows_it_would_update(items, name, statements):
    run = dry_run(name)
    assert run.status == RunStatus.SUCCEEDED and run.dry_run
    assert untouched()
    assert (run.tick_count, run.tick_total, run.cursor) == (25, 25, f"[{items[-1].pk}]")
    run.refresh_from_db()
    assert run.dry_run_report == {
        "batches": 3,
        "writes": {"UPDATE testapp_item": 25},
        "statements": {"UPDATE testapp_item": statements},
    }
    assert describe(run) == (
        f"Dry run of run {run.pk}: 25 items in 3 batches, {run.time_running:.1f}s; "
        "would write: UPDATE testapp_item: 25 rows."
    )


def test_inserts_updates_and_deletes_are_counted_batch_by_batch(items):
    Seen.objects.bulk_create(Seen(value="old") for _ in range(4))
    run = dry_run("RewriteItems")
    assert run.status == RunStatus.SUCCEEDED
    assert untouched() and Seen.objects.filter(value="old").count() == 4
    run.refresh_from_db()
    # Each batch sees the data as it was: the 4 old records are deleted again by each of the 3 batches.
    assert run.dry_run_report == {
        "batches": 3,
        "writes": {"DELETE testapp_seen": 12, "INSERT testapp_seen": 25, "UPDATE testapp_item": 25},
        "statements": {"DELETE testapp_seen": 3, "INSERT testapp_seen": 3, "UPDATE testapp_item": 3},
    }
    assert describe(run).endswith(
        "would write: INSERT testapp_seen: 25 rows, UPDATE testapp_item: 25 rows, DELETE testapp_seen: 12 rows."
    )


def test_a_batch_is_counted_once_it_completes_and_never_counts_the_engines_own_tables(items):
    run = Runner.create(APP + "IncrementItems", dry_run=True)
    capture = DryRun(True)
    with pytest.raises(ZeroDivisionError), capture.batch():
        Item.objects.update(value=1)
        1 / 0  # noqa: B018 (a batch that fails)
    assert capture.report() == {"batches": 0, "writes": {}, "statements": {}}
    with capture.batch():
        Item.objects.filter(pk=items[0].pk).update(value=1)
        Run.objects.filter(pk=run.pk).update(status_line="written inside the batch")
        Task.objects.filter(pk=run.task_id).update(config={"x": 1})
    assert capture.report() == {
        "batches": 1,
        "writes": {"UPDATE testapp_item": 1},
        "statements": {"UPDATE testapp_item": 1},
    }
    assert untouched()
    run.refresh_from_db()
    assert run.status_line == "" and run.task.config == {"delay": 0.0, "fail_at": None}  # rolled back all the same


def test_a_real_run_is_not_captured(items):
    run = Runner.create(APP + "IncrementItemsInBatches")
    run = Engine(run).perform()
    assert run.status == RunStatus.SUCCEEDED and not run.dry_run
    assert set(Item.objects.values_list("times_processed", flat=True)) == {1}
    run.refresh_from_db()
    assert run.dry_run_report == {}


def test_a_paused_dry_run_keeps_its_report_and_goes_on_from_its_cursor_when_resumed(items):
    run = Runner.create(APP + "IncrementItems", dry_run=True)

    def pause_once(progress):
        if progress.tick_count == 10:
            Run.objects.get(pk=progress.pk).pause()

    run = Engine(run, on_progress=pause_once).perform()
    assert run.status == RunStatus.PAUSED
    run.refresh_from_db()
    done = run.tick_count
    assert 10 <= done < 25 and run.cursor == f"[{items[done - 1].pk}]"
    assert run.dry_run_report == {
        "batches": done // 10,
        "writes": {"UPDATE testapp_item": done},
        "statements": {"UPDATE testapp_item": done},
    }
    Runner.resume(run, execute=False)
    run = Engine(Run.objects.get(pk=run.pk)).perform()
    assert run.status == RunStatus.SUCCEEDED
    run.refresh_from_db()
    assert run.dry_run_report == {
        "batches": 3,
        "writes": {"UPDATE testapp_item": 25},
        "statements": {"UPDATE testapp_item": 25},
    }
    assert untouched()


def test_an_autocommit_processor_is_refused_and_nothing_is_saved(items):
    with pytest.raises(InvalidProcessor) as error:
        Runner.run(APP + "IncrementItemsAutocommit", dry_run=True)
    assert str(error.value) == AUTOCOMMIT_REFUSAL
    assert not Run.objects.exists() and not Task.objects.exists()


def test_a_dry_run_whose_processor_became_autocommit_errors_without_writing(items):
    task = Task.objects.for_config(APP + "IncrementItemsAutocommit", {})
    run = Engine(Run.objects.create(task=task, dry_run=True)).perform()
    assert run.status == RunStatus.ERRORED
    assert (run.error_class, run.error_message) == ("maintenance_tasks.exceptions.InvalidProcessor", AUTOCOMMIT_REFUSAL)
    assert untouched()


def test_an_ended_dry_run_does_not_block_a_real_run_but_an_active_one_does(items):
    active = Runner.create(APP + "IncrementItems", dry_run=True)
    with pytest.raises(RunAlreadyActive):
        Runner.create(APP + "IncrementItems")
    Engine(active).perform()
    real = Engine(Runner.create(APP + "IncrementItems")).perform()
    assert real.status == RunStatus.SUCCEEDED and not real.dry_run
    assert set(Item.objects.values_list("times_processed", flat=True)) == {1}
    assert active.events.get(action="created").detail["dry_run"] is True


def deploy_once():
    """Run the deploy hook; return what it did with DeployOnce."""
    report = deploy.deploy(actor={"source": "deploy"})
    return next(outcome for outcome in report.outcomes if outcome.name == "DeployOnce")


@pytest.mark.django_db(transaction=True)  # the deploy hook's runs start when it commits
def test_a_dry_run_never_makes_a_run_once_task_done():
    path = APP + "DeployOnce"
    dry = Engine(Runner.create(path, dry_run=True)).perform()
    assert dry.status == RunStatus.SUCCEEDED and not Seen.objects.exists()
    outcome, _record, counted = deploy.status_of(path, deploy.ONCE)
    assert (outcome.result, counted) == (deploy.DeployResult.ENQUEUED, None)

    outcome = deploy_once()
    assert outcome.result == deploy.DeployResult.ENQUEUED and outcome.run.pk != dry.pk
    assert Run.objects.get(pk=outcome.run.pk).status == RunStatus.SUCCEEDED
    assert Seen.objects.filter(value__startswith="deploy-once:").count() == 3

    Engine(Runner.create(path, dry_run=True)).perform()  # a dry run after it changes nothing either
    outcome = deploy_once()
    assert outcome.result == deploy.DeployResult.DONE and outcome.run.pk != dry.pk and not outcome.run.dry_run


def test_an_active_dry_run_holds_a_run_once_task_and_says_so():
    run = Runner.create(APP + "DeployOnce", dry_run=True)
    outcome, _record, counted = deploy.status_of(APP + "DeployOnce", deploy.ONCE)
    assert (outcome.result, outcome.reason, counted) == (deploy.DeployResult.ACTIVE, f"dry run {run.pk} enqueued", run)
    out = StringIO()
    call_command("deploy_maintenance_tasks", "--status", stdout=out)
    assert f"DeployOnce (once): active; last dry run {run.pk} enqueued, started" in out.getvalue()


# -- the command ------------------------------------------------------------------------------------


def command(*args):
    out = StringIO()
    call_command("run_maintenance_task", *args, stdout=out, stderr=StringIO())
    return out.getvalue().splitlines()


def test_the_command_says_it_is_a_dry_run_first_and_prints_the_report_at_the_end(items):
    lines = command(APP + "IncrementItemsInBatches", "--dry-run")
    run = Run.objects.get()
    assert run.dry_run and run.status == RunStatus.SUCCEEDED
    assert lines[0] == "Dry run: nothing will be written."
    assert lines[1] == f"Run {run.pk} of {run.task} started."
    assert lines[-2] == describe(run)
    assert lines[-2].endswith(
        "25 items in 3 batches, " + f"{run.time_running:.1f}s; would write: UPDATE testapp_item: 25 rows."
    )
    assert lines[-1].startswith(f"Run {run.pk}: 25/25 items")
    assert untouched()


def test_the_command_refuses_a_dry_run_of_an_autocommit_processor_in_one_line(items):
    with pytest.raises(CommandError) as error:
        command(APP + "IncrementItemsAutocommit", "--dry-run")
    assert (str(error.value), error.value.returncode) == (AUTOCOMMIT_REFUSAL, 2)
    assert not Run.objects.exists()


def test_the_command_resumes_a_dry_run_as_a_dry_run_and_refuses_dry_run_with_resume(items):
    run = Runner.create(APP + "IncrementItems", dry_run=True)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.PAUSED, attempt=1)
    with pytest.raises(CommandError) as error:
        command("--resume", str(run.pk), "--dry-run")
    assert str(error.value) == "--dry-run starts a run; a resumed run goes on as it began."
    lines = command("--resume", str(run.pk))
    assert lines[0] == "Dry run: nothing will be written."
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.dry_run_report["writes"] == {"UPDATE testapp_item": 25}
    assert untouched()


# -- the admin ------------------------------------------------------------------------------------


DRY_RUN_POST = {"param-delay": "0", "run-dry_run": "on", "_start": "Start"}


@pytest.fixture
def operator(client):
    """A staff user holding every maintenance permission (not a superuser)."""
    user = make_user("alice", *ALL_PERMS)
    client.force_login(user)
    return user


def test_the_start_form_has_a_dry_run_checkbox_apart_from_a_parameter_named_dry_run(operator, client):
    html = client.get(processor_url(f"{APP}EveryType")).content.decode()
    assert 'name="param-dry_run"' in html  # the processor's own parameter
    assert re.search(r'<input type="checkbox" name="run-dry_run"[^>]* id="id_run-dry_run"', html)


def test_the_admin_starts_a_dry_run_and_shows_its_report(operator, client, items, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(processor_url(f"{APP}IncrementItemsInBatches"), DRY_RUN_POST, follow=True)
    run = Run.objects.get()
    assert response.redirect_chain == [(run_url(run), 302)]
    assert run.dry_run and run.status == RunStatus.SUCCEEDED and untouched()
    assert [str(m) for m in response.context["messages"]] == [
        f"Started dry run {run.pk} of IncrementItemsInBatches: now Enqueued."
    ]
    page = client.get(run_url(run)).content.decode()
    assert '<span class="mt-dry-run"' in page
    report = page[page.index('id="dry-run-report"') :]
    assert re.search(r"<code>UPDATE testapp_item</code></th><td[^>]*>25</td><td[^>]*>3</td>", report)
    assert "25 items in 3 batches" in report
    for listing in (reverse("admin:maintenance_tasks_run_changelist"), processor_url(f"{APP}IncrementItemsInBatches")):
        assert '<span class="mt-dry-run"' in client.get(listing).content.decode()
    real = client.get(reverse("admin:maintenance_tasks_run_changelist") + "?dry_run__exact=0")
    assert list(real.context["cl"].result_list) == []


def test_the_admin_refuses_a_dry_run_of_an_autocommit_processor_beside_the_checkbox(operator, client, items):
    response = client.post(processor_url(f"{APP}IncrementItemsAutocommit"), DRY_RUN_POST)
    assert response.status_code == 400
    assert response.context["page"].options.errors == {"dry_run": [AUTOCOMMIT_REFUSAL]}
    html = response.content.decode()
    assert "Please correct the error below." in html
    assert AUTOCOMMIT_REFUSAL in html[html.index("field-dry-run") :]
    assert not Run.objects.exists()


def test_a_real_run_page_has_no_dry_run_report(operator, client):
    run = RunFactory(task__processor=f"{APP}IncrementItems", succeeded=True)
    html = client.get(run_url(run)).content.decode()
    assert 'id="dry-run-report"' not in html and "mt-dry-run" not in html
