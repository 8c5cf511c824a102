"""Processors on another database: batches and their checkpoints commit there, the run mirrors them.

The tests that need a second database run with LEGACY_DATABASE_URL set (scripts/test sets it
to MariaDB for the PostgreSQL pass); testproject/routers.py puts LegacyItem there.
"""

import pytest
from django.conf import settings
from django.db import connections
from django.db.models import F
from django.test import override_settings

from maintenance_tasks import Processor
from maintenance_tasks.checkpoints import AliasCheckpoint
from maintenance_tasks.databases import batch_database
from maintenance_tasks.engine import Engine
from maintenance_tasks.exceptions import StaleAttempt
from maintenance_tasks.models import Checkpoint, Run
from maintenance_tasks.runner import Runner
from maintenance_tasks.sources import open_source
from maintenance_tasks.status import RunStatus
from maintenance_tasks.testing import run_processor
from testproject.demo.models import LegacyArticle
from testproject.testapp.models import Item, LegacyItem

from .test_engine import APP, StopAfter, perform

BOTH = ["default", "legacy"]
needs_legacy = pytest.mark.skipif(
    "legacy" not in settings.DATABASES, reason="no second database: set LEGACY_DATABASE_URL (scripts/test does)"
)


class ToOther:
    """A router sending Item to the database "other" (which the resolution never opens)."""

    def db_for_write(self, model, **hints):
        return "other" if model is Item else None


class ListOnOther(Processor):
    using = "other"

    def collection(self):
        return [1, 2, 3]

    def process(self, item):
        pass


class QuerySetProcessor(Processor):
    def collection(self):
        return Item.objects.all()

    def process(self, item):
        pass


def database_of(processor):
    return batch_database(processor, open_source(processor))


def test_batches_write_to_using_then_the_querysets_database_then_the_runs():
    assert database_of(ListOnOther()) == "other"
    assert database_of(QuerySetProcessor()) == "default"
    with override_settings(DATABASE_ROUTERS=[ToOther()]):
        assert database_of(QuerySetProcessor()) == "other"
    queryset_using = type("UsingQuerySet", (QuerySetProcessor,), {"collection": lambda self: Item.objects.using("x")})
    assert database_of(queryset_using()) == "x"


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        ({"using": "nowhere"}, "using: the database 'nowhere' is not in DATABASES."),
        ({"using": 3}, "using must be the alias of a database in DATABASES, or None, not 3."),
        (
            {"using": "default", "csv_collection": True, "collection": Processor.collection},
            "using: a CSV processor (csv_collection) runs on the database of the runs; remove using.",
        ),
    ],
)
def test_check_e036_names_a_using_that_cannot_work(attributes, problem):
    processor = type("OnAnotherDatabase", (Processor,), {"__module__": "app.maintenance", **attributes})
    errors = [error for error in processor.check() if error.id == "maintenance_tasks.E036"]
    assert [error.msg for error in errors] == [f"app.maintenance.OnAnotherDatabase: {problem}"]


@needs_legacy
def test_check_e036_names_a_router_that_keeps_the_checkpoint_table_off_the_database():
    class RefusesEverything:
        def allow_migrate(self, db, app_label, **hints):
            return False

    processor = type("OnLegacy", (Processor,), {"__module__": "app.maintenance", "using": "legacy"})
    assert processor.check() == []
    with override_settings(DATABASE_ROUTERS=[RefusesEverything()]):
        (error,) = processor.check()
    assert error.id == "maintenance_tasks.E036"
    assert "DATABASE_ROUTERS do not allow it there: let allow_migrate() return True for app_label " in error.msg


# -- on a second database --------------------------------------------------------------------------


@pytest.fixture
def legacy_items():
    return LegacyItem.objects.bulk_create(LegacyItem() for _ in range(25))


def legacy_times():
    return list(LegacyItem.objects.order_by("pk").values_list("times_processed", flat=True))


def checkpoint_row(run):
    return Checkpoint.objects.using("legacy").filter(run_id=run.pk).values("attempt", "cursor", "tick_count").first()


@needs_legacy
@pytest.mark.django_db(databases=BOTH)
@pytest.mark.parametrize("name", ["IncrementLegacyItems", "IncrementLegacyItemsInBatches"])
def test_each_batch_and_its_checkpoint_commit_on_the_processors_database(legacy_items, name):
    seen = []

    def look():  # after each batch: the row on legacy and the run on default show the same position
        run = Run.objects.get(status=RunStatus.RUNNING)
        seen.append((checkpoint_row(run)["tick_count"], run.tick_count))
        return False

    run = perform(name, should_stop=look)
    assert run.status == RunStatus.SUCCEEDED
    assert (run.tick_count, run.tick_total, run.cursor) == (25, 25, f"[{legacy_items[-1].pk}]")
    assert seen == [(10, 10), (20, 20), (25, 25)]
    assert legacy_times() == [1] * 25
    assert checkpoint_row(run) is None  # walked to the end: the row is gone


@needs_legacy
@pytest.mark.django_db(databases=BOTH)
def test_a_failing_batch_is_rolled_back_on_the_processors_database(legacy_items):
    run = perform("IncrementLegacyItems", {"fail_at": legacy_items[14].pk})
    assert run.status == RunStatus.ERRORED
    assert legacy_times() == [1] * 10 + [0] * 15
    assert (run.cursor, run.tick_count) == (f"[{legacy_items[9].pk}]", 10)
    assert checkpoint_row(run) == {"attempt": 1, "cursor": run.cursor, "tick_count": 10}


@needs_legacy
@pytest.mark.django_db(databases=BOTH)
def test_a_batch_of_an_attempt_that_lost_the_checkpoint_row_is_rolled_back(legacy_items):
    def take_the_row():  # another executor takes the run over; it has written only the legacy row so far
        Checkpoint.objects.using("legacy").update(attempt=F("attempt") + 1)

    run = perform("IncrementLegacyItems", should_stop=StopAfter(1, take_the_row))
    assert run.status == RunStatus.RUNNING  # left to the executor that took it over
    assert legacy_times() == [1] * 10 + [0] * 15  # the second batch was refused and rolled back
    assert (run.cursor, run.tick_count) == (f"[{legacy_items[9].pk}]", 10)
    assert checkpoint_row(run)["tick_count"] == 10


@needs_legacy
@pytest.mark.django_db(databases=BOTH)
def test_after_a_crash_between_the_two_commits_the_run_goes_on_from_the_databases_checkpoint(legacy_items, monkeypatch):
    mirror = Engine._checkpoint
    mirrored = []

    def dies_before_the_second_mirror(engine, cursor, tick_count, **fields):
        if len(mirrored) == 1:
            raise StaleAttempt("the process died here")  # nothing more is written: as after kill -9
        mirrored.append(tick_count)
        mirror(engine, cursor, tick_count, **fields)

    monkeypatch.setattr(Engine, "_checkpoint", dies_before_the_second_mirror)
    run = perform("IncrementLegacyItems")
    monkeypatch.undo()
    run.refresh_from_db()
    assert (run.status, run.tick_count) == (RunStatus.RUNNING, 10)  # the run lags one batch
    assert checkpoint_row(run)["tick_count"] == 20
    assert legacy_times() == [1] * 20 + [0] * 5

    Runner.resume(run, force=True, execute=False)
    run = Engine(run).perform()
    assert (run.status, run.tick_count) == (RunStatus.SUCCEEDED, 25)
    assert legacy_times() == [1] * 25  # the second batch was not done again
    assert run.events.filter(action="started").count() == 2


@needs_legacy
@pytest.mark.django_db(databases=BOTH)
def test_taking_over_a_run_writes_its_token_to_the_databases_checkpoint(legacy_items):
    run = Runner.create(APP + "IncrementLegacyItems")
    held = AliasCheckpoint.take_over(run, "legacy", 4)
    assert (held.ahead, checkpoint_row(run)) == (None, {"attempt": 4, "cursor": None, "tick_count": 0})
    held.commit("[10]", 10)
    assert AliasCheckpoint.take_over(run, "legacy", 5).ahead == ("[10]", 10)
    with pytest.raises(StaleAttempt, match=f"Run {run.pk}: attempt 4 no longer holds its checkpoint on 'legacy'"):
        held.commit("[20]", 20)
    assert checkpoint_row(run) == {"attempt": 5, "cursor": "[10]", "tick_count": 10}


@needs_legacy
@pytest.mark.django_db(databases=BOTH)
def test_a_dry_run_rolls_back_each_batch_on_the_processors_database(legacy_items):
    run = Runner.create(APP + "IncrementLegacyItemsInBatches", dry_run=True)
    Engine(run).perform()
    run.refresh_from_db()
    assert (run.status, run.tick_count) == (RunStatus.SUCCEEDED, 25)
    assert legacy_times() == [0] * 25
    assert run.dry_run_report["writes"] == {"UPDATE testapp_legacyitem": 25}


@needs_legacy
@pytest.mark.django_db(databases=BOTH, transaction=True)
def test_a_database_without_the_checkpoint_table_errors_the_run_naming_the_command(legacy_items):
    with connections["legacy"].schema_editor() as editor:
        editor.delete_model(Checkpoint)
    try:
        run = perform("IncrementLegacyItems")
    finally:
        with connections["legacy"].schema_editor() as editor:
            editor.create_model(Checkpoint)
    assert run.status == RunStatus.ERRORED
    assert run.error_class == "maintenance_tasks.exceptions.InvalidProcessor"
    assert run.error_message == (
        "Its batches commit on another database, but the database 'legacy' has no checkpoint table: "
        "run manage.py migrate maintenance_tasks --database legacy"
    )
    assert legacy_times() == [0] * 25


@needs_legacy
@pytest.mark.django_db(databases=BOTH)
def test_the_demo_backfills_legacy_articles_on_their_database():
    LegacyArticle.objects.bulk_create(LegacyArticle(title=f"Old post {i}") for i in range(12))
    run = run_processor("testproject.demo.maintenance.BackfillLegacySlugs")
    assert (run.status, run.tick_count) == (RunStatus.SUCCEEDED, 12)
    assert LegacyArticle.objects.using("legacy").filter(slug="").count() == 0
    assert LegacyArticle.objects.using("legacy").order_by("pk").first().slug.startswith("old-post-0-")
