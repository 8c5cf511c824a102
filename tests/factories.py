import factory
from django.utils import timezone

from maintenance_tasks.models import Run, Task
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task
        django_get_or_create = ("processor", "config_digest")

    processor = "testproject.testapp.maintenance.IncrementItems"
    config = factory.LazyFunction(lambda: {"delay": 0.0, "fail_at": None})
    config_digest = factory.LazyAttribute(lambda task: Task.digest(task.config))


class RunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Run

    task = factory.SubFactory(TaskFactory)
    status = RunStatus.ENQUEUED
    metadata = factory.LazyFunction(lambda: {"source": "python", "user": "tester"})

    class Params:
        running = factory.Trait(
            status=RunStatus.RUNNING,
            attempt=1,
            started_at=factory.LazyFunction(timezone.now),
            heartbeat_at=factory.LazyFunction(timezone.now),
        )
        pausing = factory.Trait(status=RunStatus.PAUSING, attempt=1)
        paused = factory.Trait(status=RunStatus.PAUSED, attempt=1)
        interrupted = factory.Trait(status=RunStatus.INTERRUPTED, attempt=1)
        cancelling = factory.Trait(status=RunStatus.CANCELLING, attempt=1)
        cancelled = factory.Trait(status=RunStatus.CANCELLED, attempt=1)
        succeeded = factory.Trait(status=RunStatus.SUCCEEDED, attempt=1)
        errored = factory.Trait(status=RunStatus.ERRORED, attempt=1, error_class="ValueError", error_message="boom")


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item
