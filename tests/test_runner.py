import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from maintenance_tasks import Runner
from maintenance_tasks.exceptions import RunAlreadyActive, UnknownProcessor
from maintenance_tasks.models import Run, RunEvent, Task
from maintenance_tasks.status import RunStatus
from testproject.testapp.maintenance import IncrementItems
from testproject.testapp.models import Item, Seen

pytestmark = pytest.mark.django_db


@pytest.fixture
def items():
    return Item.objects.bulk_create(Item() for _ in range(25))


def test_run_performs_the_run_in_this_process(items, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = Runner.run("testproject.testapp.maintenance.IncrementItems")
        assert run.status == RunStatus.ENQUEUED  # handed over when the transaction commits
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert (run.tick_count, run.tick_total) == (25, 25)
    assert sorted(Item.objects.values_list("times_processed", flat=True)) == [1] * 25
    assert run.metadata["source"] == "python"
    assert list(run.events.values_list("action", flat=True)) == ["created", "started", "succeeded"]


def test_run_accepts_a_processor_class(items, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = Runner.run(IncrementItems, {"delay": 0})
    run.refresh_from_db()
    assert run.task.processor == "testproject.testapp.maintenance.IncrementItems"
    assert run.status == RunStatus.SUCCEEDED


def test_same_processor_and_config_is_one_task(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = Runner.run("testproject.testapp.maintenance.RecordOnce")
    with django_capture_on_commit_callbacks(execute=True):
        second = Runner.run("testproject.testapp.maintenance.RecordOnce", {})
    assert first.task_id == second.task_id
    assert Task.objects.count() == 1
    assert Seen.objects.count() == 2


def test_defaults_make_the_config_canonical():
    a = Runner.create("testproject.testapp.maintenance.IncrementItems", {})
    a.cancel()
    b = Runner.create("testproject.testapp.maintenance.IncrementItems", {"delay": "0", "fail_at": None})
    assert a.task_id == b.task_id
    assert b.task.config == {"delay": 0.0, "fail_at": None}


def test_bad_config_saves_nothing():
    with pytest.raises(ValidationError) as error:
        Runner.run("testproject.testapp.maintenance.IncrementItems", {"delay": "slow", "nope": 1})
    assert set(error.value.message_dict) == {"delay", "nope"}
    assert not Task.objects.exists() and not Run.objects.exists()


def test_unknown_processor_saves_nothing():
    with pytest.raises(UnknownProcessor):
        Runner.run("os.system")
    assert not Task.objects.exists()


def test_second_active_run_is_refused():
    first = Runner.create("testproject.testapp.maintenance.RecordOnce")
    with pytest.raises(RunAlreadyActive, match=f"run {first.pk}"):
        Runner.create("testproject.testapp.maintenance.RecordOnce")
    assert Run.objects.count() == 1
    assert RunEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (["not", "an", "object"], "metadata must be a JSON object (a dict), not list."),
        ("text", "metadata must be a JSON object (a dict), not str."),
        ({"ratio": float("nan")}, "metadata holds nan, which is not a JSON number."),
        ({"who": "a\x00b"}, "metadata holds a NUL character"),
        ({"who": object()}, "metadata holds a object, which is not a JSON value."),
    ],
)
def test_bad_metadata_is_a_validation_error_and_saves_nothing(metadata, message):
    with pytest.raises(ValidationError) as error:
        Runner.run("testproject.testapp.maintenance.RecordOnce", metadata=metadata)
    assert message in error.value.messages[0]
    assert not Task.objects.exists() and not Run.objects.exists() and not RunEvent.objects.exists()


def test_only_the_active_run_constraint_is_taken_for_an_active_run(monkeypatch):
    def refuse(*args, **kwargs):
        raise IntegrityError("NOT NULL constraint failed: something else")

    monkeypatch.setattr(Run.objects, "create", refuse)
    with pytest.raises(IntegrityError, match="something else"):
        Runner.create("testproject.testapp.maintenance.RecordOnce")
