"""Real processes on two databases: kill -9 a run whose batches commit on the legacy database, then resume it."""

import random

import pytest
from django.conf import settings

from maintenance_tasks.models import Checkpoint, Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import LegacyItem
from tests.conftest import kill_9_and_resume, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "legacy"]),
    pytest.mark.processes,
    pytest.mark.skipif(
        "legacy" not in settings.DATABASES, reason="no second database: set LEGACY_DATABASE_URL (scripts/test does)"
    ),
]


@pytest.mark.parametrize(
    ("name", "delay"), [("IncrementLegacyItems", "0.002"), ("IncrementLegacyItemsInBatches", "0.02")]
)
def test_kill_9_at_random_moments_then_resume_applies_each_batch_once_on_the_legacy_database(manage, name, delay):
    LegacyItem.objects.bulk_create(LegacyItem() for _ in range(600))
    seed = random.randrange(10**6)
    command = manage("run_maintenance_task", name, "--arg", f"delay={delay}")
    run = wait_for(lambda: Run.objects.filter(status=RunStatus.RUNNING, tick_count__gte=1).first())

    def at_most_one_batch_ahead(run):  # the process may have died between the two commits
        row = Checkpoint.objects.using("legacy").get(run_id=run.pk)
        assert row.tick_count in (run.tick_count, run.tick_count + 10), f"seed {seed}"

    run = kill_9_and_resume(manage, command, run, seed, at_most_one_batch_ahead)
    assert (run.status, run.tick_count) == (RunStatus.SUCCEEDED, 600)
    times = list(LegacyItem.objects.order_by("pk").values_list("times_processed", flat=True))
    assert times == [1] * 600, f"seed {seed}: some batch was applied twice or not at all"
    assert not Checkpoint.objects.using("legacy").filter(run_id=run.pk).exists()
