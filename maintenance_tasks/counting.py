"""Count a collection under a time limit (COUNT_TIMEOUT), so that a huge table never hangs a page or a run.

The limit is the database's own: PostgreSQL's ``statement_timeout`` (set for this transaction only),
MariaDB's ``max_statement_time`` or MySQL's ``max_execution_time`` (set for the session, then put
back). SQLite has no statement timeout: there the count runs as long as it takes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction

from .conf import app_settings
from .exceptions import CountTimedOut, InvalidProcessor
from .processor import Processor
from .sources import Source

logger = logging.getLogger(__name__)

#: The errors a database gives for a statement it stopped at its time limit.
PG_QUERY_CANCELED = "57014"
MYSQL_TIMEOUTS = (1969, 3024)  # MariaDB max_statement_time, MySQL max_execution_time


def count_within(count: Callable[[], int | None], using: str = DEFAULT_DB_ALIAS) -> int | None:
    """Return ``count()``, run under COUNT_TIMEOUT; raise CountTimedOut when the database stops it."""
    seconds = app_settings.COUNT_TIMEOUT
    connection = connections[using]
    try:
        if connection.vendor == "postgresql":
            with transaction.atomic(using=using), connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('statement_timeout')")
                (previous,) = cursor.fetchone()
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{round(seconds * 1000)}ms"])
                value = count()
                # Put it back: inside an outer transaction, SET LOCAL would last until that one ends.
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
                return value
        if connection.vendor == "mysql":
            mariadb = connection.mysql_is_mariadb
            name, value_ = ("max_statement_time", seconds) if mariadb else ("max_execution_time", round(seconds * 1000))
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT @@SESSION.{name}")
                (previous,) = cursor.fetchone()
                cursor.execute(f"SET SESSION {name} = %s", [value_])
                try:
                    return count()
                finally:
                    cursor.execute(f"SET SESSION {name} = %s", [previous])
        return count()  # SQLite: no statement timeout
    except OperationalError as error:
        if not timed_out(error):
            raise
        raise CountTimedOut(f"Counting took longer than COUNT_TIMEOUT ({seconds:g}s).") from error


def count_total(processor: Processor, source: Source, run_id: object, using: str = DEFAULT_DB_ALIAS) -> int | None:
    """Return a run's total: its processor's ``count()`` (or its source's), None when too slow to count.

    ``using`` is the database the collection is on, where the time limit is set.

    Raise InvalidProcessor when ``count()`` returns anything but a number of items or None.
    """
    # The default count() would build the collection again: count the source the run walks.
    try:
        counted = count_within(source.count if type(processor).count is Processor.count else processor.count, using)
    except CountTimedOut:
        logger.info("Run %s: counting took longer than COUNT_TIMEOUT; no total.", run_id)
        return None  # too many to count quickly: the run goes without a total
    if counted is not None and (isinstance(counted, bool) or not isinstance(counted, int) or counted < 0):
        raise InvalidProcessor(f"count() returned {counted!r}: return a number of items, 0 or more, or None.")
    return counted


def timed_out(error: OperationalError) -> bool:
    """Return whether the database stopped a statement at its time limit."""
    cause = error.__cause__
    codes = {getattr(cause, "sqlstate", None), getattr(cause, "pgcode", None)}
    return PG_QUERY_CANCELED in codes or bool(error.args and error.args[0] in MYSQL_TIMEOUTS)
