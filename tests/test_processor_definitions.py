"""Processor definitions that cannot run: refused by the system checks, at start, or when a run opens them."""

import pytest
from django.contrib.auth.models import User
from django.core import checks
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from maintenance_tasks import Processor, Runner
from maintenance_tasks.engine import Engine
from maintenance_tasks.exceptions import InvalidProcessor
from maintenance_tasks.models import Run, Task
from maintenance_tasks.registry import path_of, registry
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item, RankedItem, Seen

from .test_admin import messages_of, operator, processor_url  # noqa: F401 (a fixture)

APP = "testproject.testapp.maintenance."


class AsyncProcess(Processor):
    def collection(self):
        return Item.objects.all()

    async def process(self, item):
        await Item.objects.filter(pk=item.pk).aupdate(times_processed=1)


class AsyncBatch(Processor):
    def collection(self):
        return Item.objects.all()

    async def process_batch(self, items):
        await items.aupdate(times_processed=1)


class ZeroBatch(Processor):
    batch_size = 0

    def collection(self):
        return ["a"]

    def process(self, item):
        Seen.objects.create(value=item)


class NoCollection(Processor):
    def process(self, item):
        Seen.objects.create(value=str(item))


class NotUnique(Processor):
    cursor_columns = ("value",)

    def collection(self):
        return Item.objects.all()

    def process(self, item):
        pass


class Nullable(Processor):
    cursor_columns = ("last_login", "id")

    def collection(self):
        return User.objects.all()

    def process(self, item):
        pass


class NewestFirst(Processor):
    def collection(self):
        return Item.objects.order_by("-pk")

    def process(self, item):
        pass


class UniqueTogether(Processor):
    """Unique together through a UniqueConstraint, ordered as the cursor: accepted."""

    cursor_columns = ("group", "position")

    def collection(self):
        return RankedItem.objects.order_by("group", "position")

    def process(self, item):
        pass


BAD = {
    AsyncProcess: "maintenance_tasks.E030",
    AsyncBatch: "maintenance_tasks.E030",
    ZeroBatch: "maintenance_tasks.E034",
    NoCollection: "maintenance_tasks.E033",
    NotUnique: "maintenance_tasks.E031",
    Nullable: "maintenance_tasks.E031",
    NewestFirst: "maintenance_tasks.E032",
}


def inject(monkeypatch, *processors):
    found = {path_of(processor): processor for processor in processors}
    monkeypatch.setattr(registry, "_processors", {**registry.processors(), **found})


def messages_about(processor):
    return [m for m in checks.run_checks(tags=[checks.Tags.compatibility]) if m.obj is processor]


@pytest.mark.parametrize(("processor", "check_id"), BAD.items(), ids=[p.__name__ for p in BAD])
def test_a_definition_that_cannot_run_fails_the_checks(monkeypatch, processor, check_id):
    inject(monkeypatch, processor)
    assert [m.id for m in messages_about(processor)] == [check_id]


@pytest.mark.parametrize("size", [0, -1, 1.5, "10", True])
def test_a_batch_size_that_is_not_a_positive_whole_number_fails_the_checks(monkeypatch, size):
    processor = type("Sized", (ZeroBatch,), {"batch_size": size})
    inject(monkeypatch, processor)
    [message] = messages_about(processor)
    assert (message.id, f"batch_size must be a whole number, 1 or more, not {size!r}.") == (
        "maintenance_tasks.E034",
        message.msg.split(": ", 1)[1],
    )


def test_messages_say_what_to_change(monkeypatch):
    inject(monkeypatch, AsyncProcess, NoCollection, NotUnique, Nullable, NewestFirst)
    assert "process() is async" in messages_about(AsyncProcess)[0].msg
    assert "process() takes an item, but there is no collection()" in messages_about(NoCollection)[0].msg
    assert "('value',) are not unique together on Item" in messages_about(NotUnique)[0].msg
    assert "last_login may be NULL" in messages_about(Nullable)[0].msg
    assert "ordered by ('-pk',), but it is walked in cursor order ('pk',)" in messages_about(NewestFirst)[0].msg


def test_unique_cursor_columns_in_cursor_order_pass(monkeypatch):
    inject(monkeypatch, UniqueTogether)
    assert messages_about(UniqueTogether) == []


@pytest.mark.django_db
@pytest.mark.parametrize("processor", [AsyncProcess, AsyncBatch, ZeroBatch, NoCollection])
def test_runner_refuses_to_start_it_and_saves_nothing(monkeypatch, processor):
    inject(monkeypatch, processor)
    with pytest.raises(InvalidProcessor, match=f"{path_of(processor)} cannot run: "):
        Runner.run(processor)
    assert not Task.objects.exists() and not Run.objects.exists()


@pytest.mark.django_db
def test_the_cli_refuses_it_in_one_line_with_exit_2(monkeypatch):
    inject(monkeypatch, AsyncProcess)
    with pytest.raises(CommandError) as info:
        call_command("run_maintenance_task", path_of(AsyncProcess), verbosity=0)
    assert info.value.returncode == 2
    assert "process() is async" in str(info.value) and "\n" not in str(info.value)
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_the_admin_refuses_to_start_it_with_a_message(monkeypatch, operator, client):  # noqa: F811
    inject(monkeypatch, NoCollection)
    response = client.post(processor_url(path_of(NoCollection)), {"_start": "Start"})
    assert response.status_code == 409
    [message] = messages_of(response)
    assert "process() takes an item, but there is no collection()" in message
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_a_batch_size_parameter_below_one_is_refused_beside_its_field():
    with pytest.raises(ValidationError) as info:
        Runner.run(APP + "BenchUpdate", {"batch_size": 0})
    assert info.value.message_dict == {"batch_size": ["Enter a whole number, 1 or more."]}
    assert not Run.objects.exists()


def perform(name, config=None):
    run = Runner.create(APP + name, config)
    return Engine(run).perform()


@pytest.mark.django_db
def test_a_negative_count_errors_the_run_before_any_item():
    run = perform("NegativeCount")
    assert run.status == RunStatus.ERRORED
    assert run.error_message == "count() returned -3: return a number of items, 0 or more, or None."
    assert not Seen.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ItemsByValue", "('value',) are not unique together on Item"),
        ("ItemsNewestFirst", "ordered by ('-pk',), but it is walked in cursor order"),
    ],
)
def test_a_cursor_the_checks_could_not_see_errors_the_run_before_any_item(name, message):
    Item.objects.bulk_create(Item(value=i % 10) for i in range(100))
    run = perform(name, {"start": 0})
    assert run.status == RunStatus.ERRORED
    assert message in run.error_message
    assert set(Item.objects.values_list("times_processed", flat=True)) == {0}


@pytest.mark.django_db
def test_a_collection_of_none_for_a_process_that_takes_an_item_errors_the_run_saying_so():
    run = perform("MaybeNoCollection", {"skip": True})
    assert run.status == RunStatus.ERRORED
    assert "collection() returned None, so process() is called with no item, but it takes one." in run.error_message
    assert perform("MaybeNoCollection").status == RunStatus.SUCCEEDED
