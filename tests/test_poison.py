"""Poison runs: processors whose errors once broke the bookkeeping of the run, performed by real db_workers.

Each processor raises, on one item, an error that used to escape the engine or that the database
refused to store: a message with a lone surrogate (no encoding stores it), with a NUL byte
(PostgreSQL refuses it in text), an error whose ``__str__`` raises, ``SystemExit``,
``KeyboardInterrupt``, and a 5 MB message. Before, the engine caught ``Exception`` only and
wrote ``str(error)`` as it was (5 MB of it too): the write of the errored run failed (or was never
made), the run
stayed ``running`` with a dead attempt, the watchdog recovered it after STALE_AFTER, the next
worker hit the same item, and so on forever, redoing the side effects of autocommit items each
time.

Now each run ends (``errored``, or ``interrupted`` for KeyboardInterrupt) with fields every
database stores, its items are processed once, and the workers go on: a normal run enqueued
behind the poison ones succeeds on the same workers.
"""

import pytest
from django.db import connection
from django.db.models import Count, Sum
from django.test import override_settings
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from maintenance_tasks import Runner
from maintenance_tasks.exceptions import BACKTRACE_LIMIT, MESSAGE_LIMIT
from maintenance_tasks.jobs import perform_run
from maintenance_tasks.models import Run
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import BatchLog, Item

from .conftest import active_runs_lines, wait_for
from .test_background import SETTINGS, WORKER_ENV
from .workers import Workers

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

S = RunStatus
APP = "testproject.testapp.maintenance"
ITEMS, FAIL_AT = 30, 15  # the poisoned item is the sixth of the second batch of ten
WORKERS = {"postgresql": 2, "mysql": 2, "sqlite": 1}
CUT = "x" * (MESSAGE_LIMIT - 60) + f"\n[... {5_000_000 - (MESSAGE_LIMIT - 60):,} more characters cut]"
#: kind: (status, error_class, error_message) the run ends with.
EXPECTED = {
    "surrogate": (S.ERRORED, f"{APP}.Boom", "bad byte \\udcff in the message"),
    "nul": (S.ERRORED, f"{APP}.Boom", "a NUL \\x00 in the message"),
    "unprintable": (S.ERRORED, f"{APP}.UnprintableError", "UnprintableError('unprintable')"),
    "system_exit": (S.ERRORED, "SystemExit", "the processor called sys.exit()"),
    "keyboard_interrupt": (S.INTERRUPTED, "", ""),
    "huge": (S.ERRORED, f"{APP}.Boom", CUT),
}
#: The errors that leave the slice (the engine records them, then lets them go on): db_worker catches them.
ESCAPING = {"system_exit", "keyboard_interrupt"}
#: The statuses of a run not yet left where it stops (``interrupted`` is active, but waits for a resume).
IN_PROGRESS = [S.ENQUEUED, S.RUNNING, S.PAUSING, S.CANCELLING]


def test_poison_runs_end_once_with_storable_errors_and_the_workers_go_on(manage, tmp_path):
    """Twelve poison runs (six errors, atomic and autocommit) and a normal run behind them, on 1-2 db_workers.

    Before: each poison run stayed ``running`` and was recovered and performed again without end
    (see the module docstring); the autocommit items were done again at every round.
    """
    if connection.vendor == "mysql" and not connection.features.has_select_for_update_skip_locked:
        pytest.skip("db_worker needs SELECT ... SKIP LOCKED")
    variants = [(kind, processor) for kind in EXPECTED for processor in ("PoisonItems", "PoisonItemsAutocommit")]
    shards = {variant: shard for shard, variant in enumerate(variants)}
    normal_shard = len(variants)
    Item.objects.bulk_create(Item(value=shard) for shard in range(normal_shard + 1) for _ in range(ITEMS))
    poisoned = {shard: Item.objects.filter(value=shard).order_by("pk")[FAIL_AT].pk for shard in range(normal_shard)}

    with override_settings(TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}):
        with override_settings(MAINTENANCE_TASKS=SETTINGS):
            runs = {
                variant: Runner.run(
                    f"{APP}.{variant[1]}", {"shard": shard, "kind": variant[0], "fail_at": poisoned[shard]}
                )
                for variant, shard in shards.items()
            }
            normal = Runner.run(f"{APP}.LogShardBatches", {"shard": normal_shard, "delay": 0.01})

        with Workers(tmp_path, **WORKER_ENV) as workers:
            for _ in range(WORKERS[connection.vendor]):
                workers.start()
            try:
                wait_for(lambda: not Run.objects.filter(status__in=IN_PROGRESS).exists(), timeout=180, interval=0.2)
            except AssertionError:
                pytest.fail("\n".join([*active_runs_lines(), workers.describe()]))
            # A worker records a job's outcome after its slice returned: wait for the last ones too.
            slices = DBTaskResult.objects.filter(task_path=perform_run.module_path, status="RUNNING")
            wait_for(lambda: not slices.exists(), timeout=60, interval=0.2)
            # db_worker catches what a task raises, BaseException included: no worker died.
            assert len(workers.live()) == WORKERS[connection.vendor], workers.describe()

    # The normal run, queued behind the poison runs, succeeded on the same workers.
    normal.refresh_from_db()
    assert (normal.status, normal.tick_count) == (S.SUCCEEDED, ITEMS), workers.describe()
    assert BatchLog.objects.aggregate(items=Sum("size"))["items"] == ITEMS

    for (kind, processor), run in runs.items():
        run.refresh_from_db()
        shard, name = shards[kind, processor], f"{kind} {processor}"
        status, error_class, message = EXPECTED[kind]
        # Stored and read back exactly: NUL and surrogates escaped, a repr for the unprintable, a cut.
        assert (run.status, run.error_class, run.error_message) == (status, error_class, message), name
        if status == S.ERRORED:
            assert run.backtrace.startswith("Traceback (most recent call last):"), name
            assert "\x00" not in run.backtrace and len(run.backtrace) <= BACKTRACE_LIMIT, name
        assert run.ended_at is not None if status == S.ERRORED else run.ended_at is None, name
        # Performed once: never recovered once claimed, and each claim but the last followed the end of a
        # slice. (On a loaded machine a worker may take longer than STALE_AFTER to claim the run after
        # taking its job: recovery then enqueues a duplicate job, which the attempt token makes a no-op.)
        actions = list(run.events.values_list("action", flat=True))
        assert "recovered" not in actions[actions.index("started") :], (name, actions)
        assert actions.count("started") == actions.count("slice_ended") + 1, (name, actions)
        assert actions[-1] == status, (name, actions)
        # The items: an atomic batch is rolled back with its error; autocommit items commit one by one,
        # the poisoned one included (its update came before the error). Nothing was done twice.
        times = list(Item.objects.filter(value=shard).order_by("pk").values_list("times_processed", flat=True))
        done = 10 if processor == "PoisonItems" else FAIL_AT
        committed = 10 if processor == "PoisonItems" else FAIL_AT + 1
        assert times == [1] * committed + [0] * (ITEMS - committed), name
        assert run.tick_count == done, name
        # The job of the last slice: SystemExit and KeyboardInterrupt went on to db_worker, which failed it.
        jobs = DBTaskResult.objects.filter(task_path=perform_run.module_path, args_kwargs__args__0=run.pk)
        statuses: dict[int, set[str]] = {}
        for attempt, job_status in jobs.values_list("args_kwargs__args__1", "status"):
            statuses.setdefault(attempt, set()).add(job_status)
        last, expected = statuses.pop(run.attempt - 1), "FAILED" if kind in ESCAPING else "SUCCESSFUL"
        assert expected in last and last - {expected} <= {"SUCCESSFUL", "READY"}, (name, last)  # + duplicates
        assert set().union(*statuses.values()) - {"SUCCESSFUL", "READY"} == set(), (name, statuses)

    # Nothing is left for recovery to pick up, even long after STALE_AFTER.
    later = timezone.now() + timezone.timedelta(hours=1)
    assert not Run.objects.stale(later).exists() and not Run.objects.unclaimed(later).exists()
    assert not Item.objects.values("times_processed").annotate(n=Count("id")).filter(times_processed__gt=1).exists()
