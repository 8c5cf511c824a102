"""ReplicationLag against a real PostgreSQL streaming replica (port 5433, made by scripts/services).

The tests pause replay on the replica (``pg_wal_replay_pause()``) while a foreground run writes
on the primary: the lag the primary sees in ``pg_stat_replication`` grows, and the run must wait,
then go on once replay resumes, each batch still applied once. Past ``critical`` it is paused.
An advisory lock on the primary keeps suites sharing the servers from pausing replay together.
"""

import time

import psycopg
import pytest
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper
from django.db.models import Count

from maintenance_tasks.models import Run
from maintenance_tasks.status import RunStatus
from maintenance_tasks.throttles import ReplicationLag
from testproject.testapp.models import Item

from .conftest import deadline, listening, wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

REPLICA = "host=127.0.0.1 port=5433 user=postgres dbname=postgres"
PRIMARY = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
INTERVAL = 0.25
REPLICA_LOCK = 7_201_311  # pg_advisory_lock key: one replica test at a time on these servers


@pytest.fixture
def replay():
    """Yield the replica's connection (replay paused/resumed by the test); replay always resumes after."""
    if connection.vendor != "postgresql":
        pytest.skip("the streaming replica is PostgreSQL")
    if not listening(5433):
        pytest.skip("no PostgreSQL replica on port 5433: scripts/services starts it")
    with psycopg.connect(PRIMARY, autocommit=True) as primary, psycopg.connect(REPLICA, autocommit=True) as replica:
        primary.execute("SELECT pg_advisory_lock(%s)", [REPLICA_LOCK])
        try:
            yield replica
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")
            primary.execute("SELECT pg_advisory_unlock(%s)", [REPLICA_LOCK])


def start(manage, name):
    Item.objects.bulk_create(Item() for _ in range(400))
    return manage(
        "run_maintenance_task",
        name,
        "--arg",
        "delay=0.05",
        MAINTENANCE_THROTTLE_CHECK_INTERVAL=str(INTERVAL),
        MAINTENANCE_CHECKPOINT_INTERVAL="0.2",
    )


def running(command):
    def check():
        assert command.process.poll() is None, command.wait()
        return Run.objects.filter(status=RunStatus.RUNNING, tick_count__gt=0).first()

    return wait_for(check, timeout=60)


def test_a_backfill_waits_while_replay_is_paused_and_goes_on_after(manage, replay):
    command = start(manage, "IncrementItemsBehindReplica")
    run = running(command)
    replay.execute("SELECT pg_wal_replay_pause()")
    paused_at = time.time()
    run = wait_for(lambda: Run.objects.exclude(throttled_reason="").filter(pk=run.pk).first(), timeout=60)
    throttled = run.events.get(action="throttled")
    assert "s of replication lag on default (max 1)" in throttled.detail["reason"]
    # It stopped within two check intervals of the lag passing its limit (1 s after replay paused),
    # give or take the primary's view of the lag, updated as the replica reports back.
    waited = throttled.created_at.timestamp() - paused_at
    assert waited <= 1 + 2 * INTERVAL + deadline(2), waited
    count = Run.objects.get(pk=run.pk).tick_count
    wait_for(lambda: Run.objects.get(pk=run.pk).heartbeat_at > run.heartbeat_at)
    assert Run.objects.get(pk=run.pk).tick_count == count  # no batch while it waits
    replay.execute("SELECT pg_wal_replay_resume()")
    code, out, err = command.wait()
    assert code == 0, err
    run.refresh_from_db()
    assert (run.status, run.tick_count, run.throttled_reason) == (RunStatus.SUCCEEDED, 400, "")
    assert run.throttled_seconds > 0
    ended = run.events.filter(action="throttle_ended")
    assert ended.count() == run.events.filter(action="throttled").count() >= 1
    assert dict(Item.objects.values_list("times_processed").annotate(n=Count("id"))) == {1: 400}


def test_past_critical_lag_the_backfill_is_paused(manage, replay):
    command = start(manage, "IncrementItemsPausedByReplica")
    run = running(command)
    replay.execute("SELECT pg_wal_replay_pause()")
    code, out, err = command.wait()
    run.refresh_from_db()
    assert run.status == RunStatus.PAUSED, err
    pause = run.events.get(action="pause")
    assert pause.source == "engine" and "(critical 3)" in pause.detail["reason"]
    assert dict(Item.objects.values_list("times_processed").annotate(n=Count("id"))) == {
        1: run.tick_count,
        0: 400 - run.tick_count,
    }


@pytest.fixture
def replica_alias(replay):
    """Name the replica as a database alias of its own (``replica``), as a project with a read replica does."""
    # The test database is replicated too: the same settings but the port.
    replica = DatabaseWrapper({**connection.settings_dict, "HOST": "127.0.0.1", "PORT": 5433}, alias="replica")
    connections["replica"] = replica
    try:
        yield "replica"
    finally:
        replica.close()
        del connections["replica"]


def test_on_a_replica_alias_the_lag_is_how_long_its_replay_is_behind(replay, replica_alias):
    condition = ReplicationLag(max_seconds=1, using=replica_alias)
    with connections[replica_alias].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        assert cursor.fetchone() == (True,)  # the replica's own measure, not the primary's
    wait_for(lambda: condition() is None)  # replay caught up: no lag
    replay.execute("SELECT pg_wal_replay_pause()")

    def lagging():
        Item.objects.create()  # a write on the primary, received by the replica and not replayed
        return condition()

    reason = wait_for(lagging, timeout=60)
    assert reason.endswith("s of replication lag on replica (max 1)"), reason
    assert float(reason.split("s of")[0]) > 1
    replay.execute("SELECT pg_wal_replay_resume()")
    wait_for(lambda: condition() is None, timeout=60)  # replayed: the lag is gone
