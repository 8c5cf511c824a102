"""ReplicationLag against a real MariaDB replica: a source on port 3307 (binary log on) and its
replica on 3308, made by scripts/services beside the server on 3306.

The tests name the replica as a database alias of its own, as a project with a read replica does,
delay or stop its replication, write on the source, and read the condition. A named lock on the
source keeps suites sharing the servers from changing the replication together.
"""

import MySQLdb
import pytest
from django.db import connection, connections
from django.db.backends.mysql.base import DatabaseWrapper

from maintenance_tasks.throttles import Critical, ReplicationLag

from .conftest import listening, wait_for

pytestmark = pytest.mark.django_db

SOURCE = {"host": "127.0.0.1", "port": 3307, "user": "root", "passwd": ""}
REPLICA = {**SOURCE, "port": 3308}
ALIAS = "mariadb_replica"
LOCK = "maintenance_tasks_replica_tests"


@pytest.fixture
def servers():
    """Yield (source, replica) connections; replication runs again, undelayed, after the test."""
    if connection.vendor != "mysql":
        pytest.skip("the MariaDB replica is tested in the MariaDB suite")
    if not (listening(3307) and listening(3308)):
        pytest.skip("no MariaDB source and replica on ports 3307/3308: scripts/services starts them")
    source, replica = MySQLdb.connect(**SOURCE, autocommit=True), MySQLdb.connect(**REPLICA, autocommit=True)
    source.cursor().execute("SELECT GET_LOCK(%s, 600)", [LOCK])
    try:
        source.cursor().execute("CREATE DATABASE IF NOT EXISTS maintenance_replication")
        source.cursor().execute(
            "CREATE TABLE IF NOT EXISTS maintenance_replication.writes (id INT AUTO_INCREMENT PRIMARY KEY)"
        )
        yield source, replica
    finally:
        replica.cursor().execute("STOP REPLICA")
        replica.cursor().execute("CHANGE MASTER TO MASTER_DELAY = 0")
        replica.cursor().execute("START REPLICA")
        source.cursor().execute("SELECT RELEASE_LOCK(%s)", [LOCK])
        source.close()
        replica.close()


@pytest.fixture
def replica_alias(servers):
    """Name the replica as a database alias of its own."""
    replica = DatabaseWrapper({**connection.settings_dict, "HOST": "127.0.0.1", "PORT": 3308, "NAME": ""}, ALIAS)
    connections[ALIAS] = replica
    try:
        yield ALIAS
    finally:
        replica.close()
        del connections[ALIAS]


def write(source) -> None:
    source.cursor().execute("INSERT INTO maintenance_replication.writes () VALUES ()")


def test_the_lag_is_seconds_behind_the_source(servers, replica_alias):
    source, replica = servers
    condition = ReplicationLag(max_seconds=1, using=replica_alias)
    wait_for(lambda: condition() is None)  # caught up: no lag
    replica.cursor().execute("STOP REPLICA")
    replica.cursor().execute("CHANGE MASTER TO MASTER_DELAY = 600")  # each event applied 10 min after the source
    replica.cursor().execute("START REPLICA")
    wait_for(lambda: condition() is None)  # running again (while it connects, it has no lag to show: it holds)
    write(source)
    reason = wait_for(condition, timeout=60)
    assert reason.endswith("s of replication lag on mariadb_replica (max 1)"), reason
    assert float(reason.split("s of")[0]) > 1
    assert not isinstance(reason, Critical)
    replica.cursor().execute("STOP REPLICA")
    replica.cursor().execute("CHANGE MASTER TO MASTER_DELAY = 0")
    replica.cursor().execute("START REPLICA")
    wait_for(lambda: condition() is None, timeout=60)  # applied: the lag is gone


def test_stopped_replication_holds_past_critical(servers, replica_alias):
    source, replica = servers
    condition = ReplicationLag(max_seconds=5, critical=60, using=replica_alias)
    wait_for(lambda: condition() is None)
    replica.cursor().execute("STOP REPLICA SQL_THREAD")
    write(source)
    reason = condition()
    assert reason == "replication stopped on mariadb_replica (critical 60)" and isinstance(reason, Critical)
    replica.cursor().execute("START REPLICA SQL_THREAD")
    wait_for(lambda: condition() is None, timeout=60)


def test_a_server_that_is_no_replica_has_no_lag(servers):
    assert ReplicationLag(max_seconds=0)() is None  # the suite's own server on 3306


class MySQLReplica:
    """A connection to a MySQL 8 replica: its SHOW REPLICA STATUS says Seconds_Behind_Source. No MySQL
    server can be installed on these machines (Debian ships MariaDB), so this one stands in for it."""

    vendor = "mysql"

    def __init__(self, lag):
        self.lag = lag

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def execute(self, sql):
        assert sql == "SHOW REPLICA STATUS"
        self.description = [("Replica_IO_Running",), ("Seconds_Behind_Source",)]

    def fetchone(self):
        return ("Yes", self.lag)


def test_mysql_names_the_lag_seconds_behind_source():
    assert ReplicationLag().measure(MySQLReplica(7)) == 7.0
    assert ReplicationLag().measure(MySQLReplica(None)) == float("inf")  # replication stopped
