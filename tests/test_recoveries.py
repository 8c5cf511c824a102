"""MAX_RECOVERIES: a run whose executor dies on the same item every time ends errored, after a bounded number
of recoveries, performed by real db_workers that the test restarts as a supervisor would.

The processor kills its own process (SIGKILL, as the out-of-memory killer would) on one item of
its second batch. Each time, the run is left ``running`` with a dead attempt; the watchdog (one
chain of jobs, run by whichever worker is alive) recovers it after STALE_AFTER and enqueues it
again, and the next worker dies on the same item. Before, that went on forever: every recovery
enqueued the run again, and every worker that took it died. Now the recovery that would be the
(MAX_RECOVERIES + 1)th in a row at the same cursor errors the run with TooManyRecoveries instead.
"""

import pytest
from django.db import connection
from django.test import override_settings

from maintenance_tasks import Runner
from maintenance_tasks.models import Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item

from .conftest import active_runs_lines, wait_for
from .test_background import SETTINGS, WORKER_ENV
from .workers import Workers

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

S = RunStatus
MAX_RECOVERIES = 2
ITEMS, KILL_AT = 30, 15  # the killing item is the sixth of the second batch of ten


def test_a_run_that_kills_its_worker_is_errored_after_max_recoveries(manage, tmp_path):
    """Three workers die on the run (the first execution and MAX_RECOVERIES = 2 recoveries), then it is errored.

    Before: recovered and enqueued again after every death, for ever; every worker that took it died.
    """
    if connection.vendor == "mysql" and not connection.features.has_select_for_update_skip_locked:
        pytest.skip("db_worker needs SELECT ... SKIP LOCKED")
    items = Item.objects.bulk_create(Item(value=7) for _ in range(ITEMS))
    settings = {**SETTINGS, "SLICE_SECONDS": 60.0, "MAX_RECOVERIES": MAX_RECOVERIES}
    env = {**WORKER_ENV, "MAINTENANCE_SLICE_SECONDS": "60", "MAINTENANCE_MAX_RECOVERIES": str(MAX_RECOVERIES)}
    with override_settings(
        TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}, MAINTENANCE_TASKS=settings
    ):
        run = Runner.run("testproject.testapp.maintenance.KillOwnProcess", {"shard": 7, "kill_at": items[KILL_AT].pk})

    deaths = []
    with Workers(tmp_path, **env) as workers:
        worker = workers.start()

        def ended_or_worker_died():
            if Run.objects.filter(pk=run.pk, status__in=[S.ERRORED, S.SUCCEEDED]).exists():
                return "ended"
            return "died" if not worker.alive() else None

        # The supervisor: restart the worker each time it dies, until the run ends.
        while True:
            try:
                what = wait_for(ended_or_worker_died, timeout=90, interval=0.1)
            except AssertionError:
                pytest.fail("\n".join([*active_runs_lines(), workers.describe()]))
            if what == "ended":
                break
            deaths.append(worker.process.returncode)
            assert len(deaths) <= MAX_RECOVERIES + 1, "the run was recovered more than MAX_RECOVERIES times"
            worker = workers.start()
        # The worker that took the last recovery is alive: it performed the watchdog, not the run.
        assert worker.alive(), workers.describe()

    run.refresh_from_db()
    assert deaths == [-9] * (MAX_RECOVERIES + 1)
    assert (run.status, run.error_class) == (S.ERRORED, "maintenance_tasks.exceptions.TooManyRecoveries")
    assert run.error_message.startswith(
        f"Recovered {MAX_RECOVERIES} times in a row at the same cursor ({run.cursor}), "
        f"more than MAX_RECOVERIES ({MAX_RECOVERIES}): its executor dies on it"
    ), run.error_message
    recovered = list(run.events.filter(action="recovered").values_list("from_status", "to_status", "source"))
    assert recovered == [(S.RUNNING, S.ENQUEUED, "watchdog")] * MAX_RECOVERIES + [(S.RUNNING, S.ERRORED, "watchdog")]
    assert [event.detail["recoveries"] for event in run.events.filter(action="recovered")] == [1, 2, 3]
    assert run.events.filter(action="started").count() == MAX_RECOVERIES + 1
    # The first batch committed once; the batch with the killing item never did.
    assert (run.tick_count, run.recoveries) == (10, MAX_RECOVERIES + 1)
    times = list(Item.objects.order_by("pk").values_list("times_processed", flat=True))
    assert times == [1] * 10 + [0] * (ITEMS - 10)
