"""Processors used by the test suite."""

import datetime
import enum
import json
import os
import signal
import time
import traceback
from decimal import Decimal
from typing import Literal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, InterfaceError, OperationalError, connection
from django.db.models import F

from maintenance_tasks import Processor
from maintenance_tasks.throttles import Critical, DatabaseLoad, ReplicationLag

from .models import BatchLog, BenchRow, CodeItem, Item, LegacyItem, RankedItem, Seen, UUIDItem


class Boom(Exception):
    pass


class IncrementItems(Processor):
    """Add one to every item's counter, one save() per row."""

    batch_size = 10
    delay: float = 0.0
    fail_at: int | None = None

    def collection(self):
        return Item.objects.all()

    def process(self, item):
        if self.delay:
            time.sleep(self.delay)
        if item.pk == self.fail_at:
            raise Boom(f"item {item.pk} failed")
        item.times_processed = F("times_processed") + 1
        item.save(update_fields=["times_processed"])


class IncrementItemsInBatches(Processor):
    """Add one to every item's counter, one UPDATE per batch."""

    batch_size = 10
    delay: float = 0.0

    def collection(self):
        return Item.objects.all()

    def process_batch(self, items):
        if self.delay:
            time.sleep(self.delay)
        items.update(times_processed=F("times_processed") + 1)


class IncrementItemsAutocommit(IncrementItems):
    """Like IncrementItems, but each item commits on its own."""

    atomic = False


class IncrementItemsRetryingOutages(IncrementItems):
    """Like IncrementItems, but goes on from its cursor after a database error (a lost connection)."""

    retry_on = (OperationalError, InterfaceError)
    max_retries = 2
    retry_backoff = 0.1


class IncrementUUIDItems(Processor):
    batch_size = 7

    def collection(self):
        return UUIDItem.objects.all()

    def process(self, item):
        UUIDItem.objects.filter(pk=item.pk).update(times_processed=F("times_processed") + 1)


class IncrementCodeItems(Processor):
    batch_size = 7

    def collection(self):
        return CodeItem.objects.all()

    def process_batch(self, items):
        items.update(times_processed=F("times_processed") + 1)


class IncrementRankedItems(Processor):
    batch_size = 4
    cursor_columns = ("group", "position")

    def collection(self):
        return RankedItem.objects.all()

    def process(self, item):
        RankedItem.objects.filter(pk=item.pk).update(times_processed=F("times_processed") + 1)


class IncrementRankedItemsInBatches(IncrementRankedItems):
    def process_batch(self, items):
        items.update(times_processed=F("times_processed") + 1)


class RecordList(Processor):
    """Record each string of a list."""

    batch_size = 3
    words: list[str]

    def collection(self):
        return self.words

    def process(self, word):
        Seen.objects.create(value=word)


class RecordGenerator(Processor):
    batch_size = 4
    stop: int = 10

    def collection(self):
        return (f"g{i}" for i in range(self.stop))

    def process(self, value):
        Seen.objects.create(value=value)


class RecordPages(Processor):
    """A custom source: pages of a remote API, the cursor being the next page number."""

    batch_size = 2
    pages: int = 3

    def enumerate(self, cursor):
        page = int(cursor or 0)
        while page < self.pages:
            yield f"page{page}", str(page + 1)
            page += 1

    def process(self, value):
        Seen.objects.create(value=value)


class RecordOnce(Processor):
    """A task without a collection."""

    def process(self):
        Seen.objects.create(value="once")


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class EveryType(Processor):
    """Take a parameter of every supported type."""

    name: str
    limit: int = 10
    ratio: float = 0.5
    dry_run: bool = False
    amount: Decimal = Decimal("1.50")
    since: datetime.date = datetime.date(2024, 1, 1)
    at: datetime.datetime | None = None
    tags: list[str] = []
    ids: list[int] = []
    options: dict = {}
    color: Color = Color.RED
    mode: Literal["fast", "safe"] = "safe"

    def clean(self):
        if self.name == "forbidden":
            raise ValidationError({"name": "This name is forbidden."})

    def process(self):
        Seen.objects.create(value=f"{self.name}:{self.limit}:{self.color.value}:{self.mode}")


class LogShardBatches(Processor):
    """Add one to the counter of the items whose ``value`` is ``shard``, one UPDATE per batch,
    and log each batch (in the same transaction) to check that no two executors overlap."""

    batch_size = 10
    shard: int
    delay: float = 0.0

    def collection(self):
        return Item.objects.filter(value=self.shard)

    def process_batch(self, items):
        started = time.time()
        if self.delay:
            time.sleep(self.delay)
        first = items.order_by("pk").values_list("pk", flat=True).first()
        size = items.update(times_processed=F("times_processed") + 1)
        BatchLog.objects.create(
            shard=self.shard, first_pk=first, size=size, pid=os.getpid(), started=started, ended=time.time()
        )


class Transient(Exception):
    pass


#: Failures so far of FlakyBatches, by marker (tests run it in their own process).
FAILURES: dict[str, int] = {}


class FlakyBatches(Processor):
    """Add one to every item's counter, one UPDATE per batch; the batch holding item ``fail_at``
    fails with Transient its first ``failures`` times."""

    batch_size = 10
    retry_on = (Transient,)
    max_retries = 2
    retry_backoff = 0.001
    marker: str
    fail_at: int
    failures: int = 1

    def collection(self):
        return Item.objects.all()

    def process_batch(self, items):
        items.update(times_processed=F("times_processed") + 1)
        if items.filter(pk=self.fail_at).exists() and FAILURES.get(self.marker, 0) < self.failures:
            FAILURES[self.marker] = FAILURES.get(self.marker, 0) + 1
            raise Transient(f"batch with item {self.fail_at} failed ({FAILURES[self.marker]})")


class SlowRetryBatches(FlakyBatches):
    retry_backoff = 60.0


class FlakyAcrossProcesses(Processor):
    """Add one to every item's counter, one UPDATE per batch; the batch holding item ``fail_at``
    fails with Transient the first ``failures`` times it is reached.

    Each time, the process's id is appended to the file ``tally``: a count kept outside the
    batch's transaction (rolled back with the batch otherwise) and seen by every process.
    """

    batch_size = 10
    retry_on = (Transient,)
    max_retries = 3
    retry_backoff = 0.2
    fail_at: int
    failures: int
    tally: str

    def collection(self):
        return Item.objects.all()

    def process_batch(self, items):
        items.update(times_processed=F("times_processed") + 1)
        if not items.filter(pk=self.fail_at).exists():
            return
        with open(self.tally, "a+") as tally:
            tally.seek(0)
            reached = len(tally.readlines())
            tally.write(f"{os.getpid()}\n")
        if reached < self.failures:
            raise Transient(f"item {self.fail_at} failed, time {reached + 1}")


class HeavyShardBatches(LogShardBatches):
    """LogShardBatches on the ``heavy`` queue, at a high priority."""

    queue_name = "heavy"
    priority = 10


class RecordStackDepth(Processor):
    """Record the depth of the call stack for each of ``n`` items, one item per batch."""

    batch_size = 1
    n: int = 10

    def collection(self):
        return range(self.n)

    def process(self, item):
        Seen.objects.create(value=str(len(traceback.extract_stack())))


class IncrementItemsUntilFixed(Processor):
    """Add one to every item's counter, one UPDATE per batch; while a "bug" Seen row exists (until the
    bug is fixed), the batch holding item ``fail_at`` fails after its UPDATE (rolled back with it)."""

    batch_size = 100
    fail_at: int = 0

    def collection(self):
        return Item.objects.all()

    def process_batch(self, items):
        items.update(times_processed=F("times_processed") + 1)
        if items.filter(pk=self.fail_at).exists() and Seen.objects.filter(value="bug").exists():
            raise Boom(f"the batch of item {self.fail_at} hit the bug")


class DeployOnce(Processor):
    """Run once by the deploy hook: record one row per item; errors while a "deploy:fail" row exists."""

    run_on_deploy = "once"
    items: int = 3

    def collection(self):
        return range(self.items)

    def process(self, item):
        if Seen.objects.filter(value="deploy:fail").exists():
            raise Boom("told to fail")
        Seen.objects.create(value=f"deploy-once:{item}")


class DeployAlways(Processor):
    """Run by every deploy: record one row."""

    run_on_deploy = "always"

    def process(self):
        Seen.objects.create(value="deploy-always")


# -- processors that break their executor (tests/test_poison.py, tests/test_recoveries.py) ---------


class UnprintableError(Exception):
    """An error whose ``__str__`` raises."""

    def __str__(self):
        raise RuntimeError("this error cannot be printed")


def poison(kind):
    """Return the error a poisoned item raises: each one once broke the bookkeeping of a run."""
    errors = {
        "surrogate": lambda: Boom("bad byte \udcff in the message"),
        "nul": lambda: Boom("a NUL \x00 in the message"),
        "unprintable": lambda: UnprintableError("unprintable"),
        "system_exit": lambda: SystemExit("the processor called sys.exit()"),
        "keyboard_interrupt": lambda: KeyboardInterrupt(),
        "huge": lambda: Boom("x" * 5_000_000),
    }
    return errors[kind]()


class PoisonItems(Processor):
    """Add one to the counter of the items whose ``value`` is ``shard``; the item ``fail_at`` raises the
    error ``kind`` (see ``poison``) after its own update."""

    batch_size = 10
    shard: int
    kind: Literal["surrogate", "nul", "unprintable", "system_exit", "keyboard_interrupt", "huge"]
    fail_at: int

    def collection(self):
        return Item.objects.filter(value=self.shard)

    def process(self, item):
        Item.objects.filter(pk=item.pk).update(times_processed=F("times_processed") + 1)
        if item.pk == self.fail_at:
            raise poison(self.kind)


class PoisonItemsAutocommit(PoisonItems):
    """Like PoisonItems, but each item commits on its own: the counters show each item done once."""

    atomic = False


class KillOwnProcess(Processor):
    """Add one to the counter of the items whose ``value`` is ``shard``, atomic batches; on the item
    ``kill_at`` the process kills itself (SIGKILL), as the out-of-memory killer would."""

    batch_size = 10
    shard: int
    kill_at: int

    def collection(self):
        return Item.objects.filter(value=self.shard)

    def process(self, item):
        if item.pk == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        Item.objects.filter(pk=item.pk).update(times_processed=F("times_processed") + 1)


# -- the processors bench/engine.py compares with hand-written loops ------------------------


def bench_rows(upto):
    """All BenchRow rows, or those up to the key ``upto``."""
    return BenchRow.objects.all() if upto is None else BenchRow.objects.filter(pk__lte=upto)


class BenchWalk(Processor):
    """Walk BenchRow rows and do nothing: the engine's own cost."""

    atomic = False  # nothing to commit: measures the walk, cursor saved once per CHECKPOINT_INTERVAL
    upto: int | None = None
    batch_size: int = 100  # a parameter here, so that the bench can vary it

    def collection(self):
        return bench_rows(self.upto)

    def process(self, item):
        pass


class BenchAtomicWalk(BenchWalk):
    """Walk BenchRow rows and do nothing, atomic batches (the default): the engine's cost with its commits."""

    atomic = True


class BenchSave(Processor):
    """Add one to each row's counter with save(), atomic batches."""

    upto: int | None = None
    batch_size: int = 100

    def collection(self):
        return bench_rows(self.upto)

    def process(self, item):
        item.counter += 1
        item.save(update_fields=["counter"])


class BenchUpdate(Processor):
    """Add one to each row's counter with one UPDATE per batch, atomic batches."""

    upto: int | None = None
    batch_size: int = 100

    def collection(self):
        return bench_rows(self.upto)

    def process_batch(self, items):
        items.update(counter=F("counter") + 1)


class BenchProtectedUpdate(BenchUpdate):
    """BenchUpdate as on a live database (bench/traffic.py): short transactions, waiting while the database is busy."""

    batch_time = 0.01  # transactions of about 0.01 s: few rows locked at a time (bench/traffic.py: PROTECTED_TIME)
    sleep_ratio = 1.0  # after each transaction, a sleep as long: the traffic has the database half the time
    # More than 3 other active queries: the bench's 4 pgbench clients, which seldom run at once,
    # queue behind the backfill. Called through a function: the checks would warn on SQLite (W041).
    throttle_on = [lambda: DatabaseLoad(max_active=3)()]


# -- Bad input: processor definitions that pass the checks, refused when a run opens them ------


class NegativeCount(Processor):
    """count() returns a negative number: the run errors, saying so."""

    def collection(self):
        return ["a", "b", "c"]

    def count(self):
        return -3

    def process(self, item):
        Seen.objects.create(value=item)


class ItemsByValue(Processor):
    """Walk items by ``value``, not unique: the checks cannot build the collection (``start`` has no default)."""

    start: int
    cursor_columns = ("value",)

    def collection(self):
        return Item.objects.filter(pk__gte=self.start)

    def process(self, item):
        Item.objects.filter(pk=item.pk).update(times_processed=F("times_processed") + 1)


class ItemsNewestFirst(Processor):
    """A collection ordered newest first, which the cursor order would override."""

    start: int

    def collection(self):
        return Item.objects.filter(pk__gte=self.start).order_by("-pk")

    def process(self, item):
        Item.objects.filter(pk=item.pk).update(times_processed=F("times_processed") + 1)


class MaybeNoCollection(Processor):
    """process() takes an item, but collection() returns None when ``skip`` is set."""

    skip: bool = False

    def collection(self):
        return None if self.skip else ["only"]

    def process(self, item):
        Seen.objects.create(value=item)


# -- bad input refused up front (configs, parameters, the command line) --------------------


class StrictInput(Processor):
    """Take a required dict and list, a count that must not be None, and text values."""

    payload: dict
    names: list[str]
    n: int = 0
    limit: int | None = None
    label: str = ""
    api_token: str = ""
    flag: bool = False
    maybe: bool | None = None

    def process(self):
        Seen.objects.create(value=f"strict:{self.n}:{len(self.payload)}:{len(self.names)}:{self.limit}")


class CleanFails(Processor):
    """Its clean() has a bug: it raises KeyError instead of ValidationError."""

    def clean(self):
        raise KeyError("missing")

    def process(self):
        Seen.objects.create(value="clean-fails")


# -- the admin, permissions and what pages show (i12c) -------------------------------------------


class SlowCount(Processor):
    """Touch nothing; its count() takes ``seconds`` in the database first (for COUNT_TIMEOUT)."""

    seconds: float = 2.0

    def collection(self):
        return Item.objects.all()

    def count(self):
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_sleep(%s)", [self.seconds])
            elif connection.vendor == "mysql":
                cursor.execute("SELECT SLEEP(%s)", [self.seconds])
        return Item.objects.count()

    def process(self, item):
        pass


# -- dry runs (tests/test_dryrun.py) ------------------------------------------------------------


class RewriteItems(Processor):
    """Per batch: record each item (one INSERT), set each value (one executemany UPDATE), drop old records."""

    batch_size = 10

    def collection(self):
        return Item.objects.all()

    def process_batch(self, items):
        items = list(items)
        Seen.objects.bulk_create(Seen(value=f"item:{item.pk}") for item in items)
        with connection.cursor() as cursor:
            cursor.executemany(
                "UPDATE testapp_item SET value = %s WHERE id = %s", [(item.pk * 10, item.pk) for item in items]
            )
        Seen.objects.filter(value="old").delete()


class AnnouncedItems(IncrementItems):
    """Like IncrementItems, and note each callback in Seen: ``<callback> <run id> <pid>`` (on_error adds the error's class).

    ``raise_in`` names a callback that raises Boom; ``result`` what on_complete() returns.
    """

    raise_in: str = ""
    result: Literal["summary", "none", "not_json", "too_big"] = "summary"

    def note(self, name, run, *extra):
        Seen.objects.create(value=" ".join(str(part) for part in (name, run.pk, os.getpid(), *extra)))
        if name == self.raise_in:
            raise Boom(f"{name} failed")

    def on_start(self, run):
        self.note("on_start", run)

    def on_pause(self, run):
        self.note("on_pause", run)

    def on_resume(self, run):
        self.note("on_resume", run)

    def on_interrupt(self, run):
        self.note("on_interrupt", run)

    def on_cancel(self, run):
        self.note("on_cancel", run)

    def on_error(self, run, error):
        self.note("on_error", run, type(error).__name__)

    def on_complete(self, run):
        self.note("on_complete", run)
        return {
            "summary": {"processed": run.tick_count, "status": run.status},
            "none": None,
            "not_json": {"when": datetime.datetime(2024, 1, 1)},
            "too_big": ["x" * 100] * 200,
        }[self.result]


# -- CSV input ------------------------------------------------------------------------------------


class RecordRows(Processor):
    """Record each row of a CSV file with an id column, as sorted JSON, one call per row."""

    csv_collection = True
    csv_headers = ("id",)
    batch_size = 3

    def process(self, row):
        Seen.objects.create(value=json.dumps(row, sort_keys=True))


class RecordRowIds(Processor):
    """Record the id of each row, a whole batch per INSERT; ``delay`` seconds per batch."""

    csv_collection = True
    csv_headers = ("id",)
    batch_size = 1000
    delay: float = 0.0

    def process_batch(self, rows):
        Seen.objects.bulk_create(Seen(value=row["id"]) for row in rows)
        time.sleep(self.delay)


class RecordLatin1Rows(RecordRows):
    csv_encoding = "latin-1"


class SkipRows(Processor):
    """Read a CSV file and do nothing with its rows (the memory test)."""

    csv_collection = True
    batch_size = 1000
    atomic = False

    def process(self, row):
        pass


# -- run output ------------------------------------------------------------------------------------


class LogEveryItem(Processor):
    """Log a line for every number below ``items``; its status says how far it got every ``status_every`` items.

    With ``gate``, a file's path, it logs nothing before that file exists.
    """

    batch_size = 10_000
    atomic = False
    items: int = 1000
    label: str = "item"
    status_every: int = 1
    delay: float = 0.0
    fail_at: int | None = None
    gate: str = ""

    def collection(self):
        return range(self.items)

    def process(self, number):
        while self.gate and not os.path.exists(self.gate):
            time.sleep(0.05)
        if self.delay:
            time.sleep(self.delay)
        self.log(f"{self.label} {number}")
        if number == self.fail_at:
            raise Boom(f"{self.label} {number} failed")
        if number % self.status_every == 0:
            self.status = f"at {self.label} {number} of {self.items}"


class IncrementLegacyItems(IncrementItems):
    """Add one to every legacy item's counter: on the "legacy" database when it is configured (its router)."""

    def collection(self):
        return LegacyItem.objects.all()


class IncrementLegacyItemsInBatches(IncrementItemsInBatches):
    """Add one to every legacy item's counter, one UPDATE per batch."""

    def collection(self):
        return LegacyItem.objects.all()


# -- sensitive parameters ----------------------------------------------------------------


class CallPartner(Processor):
    """Send each item to a partner: ``api_token`` and ``password`` are sensitive by name, ``pin`` by ``sensitive``."""

    sensitive = ("pin",)
    api_token: str
    password: str
    pin: str = ""
    region: str = "eu"
    fail: bool = False

    def collection(self):
        return ["a", "b", "c"]

    def clean(self):
        if self.api_token.startswith("revoked"):
            raise ValidationError({"api_token": f"The token {self.api_token} is revoked."})

    def process(self, item):
        if self.fail:
            raise ValueError(f"the partner refused token {self.api_token} (password {self.password}, pin {self.pin})")
        Seen.objects.create(value=f"partner:{self.region}:{item}")

    def on_error(self, run, error):
        raise RuntimeError(f"could not report the failure of {self.api_token}")


class BadItem(Exception):
    """An item a processor cannot process: skipped by the processors with ``skip_on``."""


class SkipBadItems(Processor):
    """Add one to every item's counter, in memory then saved; an item whose ``value`` is ``bad`` raises
    BadItem after its own update (skipped), the item ``fail_at`` raises Boom (not skipped)."""

    skip_on = (BadItem,)
    batch_size: int = 100
    bad: int = -1
    fail_at: int | None = None

    def collection(self):
        return Item.objects.all()

    def process(self, item):
        item.times_processed += 1  # in memory: a replayed item must start again from its row
        item.save(update_fields=["times_processed"])
        if item.value == self.bad:
            raise BadItem(f"item {item.pk} is bad")
        if item.pk == self.fail_at:
            raise Boom(f"item {item.pk} failed")


class SkipBadItemsAutocommit(SkipBadItems):
    """Like SkipBadItems, each item committing on its own."""

    atomic = False


class SkipFewBadItems(SkipBadItems):
    """Like SkipBadItems, erroring past two skipped items."""

    max_skipped = 2


class RetryBadItems(SkipBadItems):
    """Like SkipBadItems, with BadItem in retry_on too: retried (never skipped), then erroring."""

    retry_on = (BadItem,)
    max_retries = 1
    retry_backoff = 0.001


class SkipBadBatches(Processor):
    """Add one to the counters of a batch in one UPDATE, then BadItem if it has an item whose ``value`` is ``bad``;
    ``process()`` does the same for one item, so a bad batch is replayed through it."""

    skip_on = (BadItem,)
    batch_size: int = 10
    bad: int = -1

    def collection(self):
        return Item.objects.all()

    def process_batch(self, items):
        items.update(times_processed=F("times_processed") + 1)
        if items.filter(value=self.bad).exists():
            raise BadItem("a bad item in the batch")

    def process(self, item):
        Item.objects.filter(pk=item.pk).update(times_processed=F("times_processed") + 1)
        if item.value == self.bad:
            raise BadItem(f"item {item.pk} is bad")


class SkipBadBatchesWhole(SkipBadBatches):
    """Like SkipBadBatches without ``process()``: a bad batch is skipped whole."""

    process = Processor.process


class SkipBadWords(Processor):
    """Record each word of a list; a word ``bad`` raises BadItem (skipped)."""

    skip_on = (BadItem,)
    batch_size = 3
    words: list[str]

    def collection(self):
        return self.words

    def process(self, word):
        Seen.objects.create(value=word)
        if word == "bad":
            raise BadItem(f"{word!r} is bad")


class SkipIntegrityErrors(SkipBadItems):
    """Like SkipBadItems, a bad item inserting a row whose primary key is taken: the database refuses it,
    and goes on with the batch's other items (a savepoint rolled back)."""

    skip_on = (IntegrityError,)

    def process(self, item):
        item.times_processed += 1
        item.save(update_fields=["times_processed"])
        if item.value == self.bad:
            Item.objects.create(pk=item.pk)


class SkipBadBatchesAutocommit(SkipBadBatches):
    """Like SkipBadBatches, each batch's UPDATE (and each replayed item) committing on its own."""

    atomic = False


def flag_file_reason():
    """A throttle condition the tests control: the text of the file THROTTLE_FLAG names, while it exists."""
    path = os.environ.get("THROTTLE_FLAG", "")
    if path and os.path.exists(path):
        with open(path) as flag:
            reason = flag.read().strip()
        return Critical(reason.removeprefix("critical:")) if reason.startswith("critical:") else reason
    return None


class IncrementItemsThrottled(IncrementItems):
    """Add one to every item's counter, waiting while the file THROTTLE_FLAG names exists."""

    throttle_on = [flag_file_reason]
    throttle_backoff_max = 0.4


class IncrementItemsBehindReplica(IncrementItemsInBatches):
    """Add one to every item's counter, waiting while the replica lags by more than a second."""

    # Called through a function: the checks would warn on SQLite, where the suite runs too (W041).
    throttle_on = [lambda: ReplicationLag(max_seconds=1, critical=60)()]
    throttle_backoff_max = 0.5


class IncrementItemsPausedByReplica(IncrementItemsBehindReplica):
    """Add one to every item's counter; pause once the replica lags by more than three seconds."""

    throttle_on = [lambda: ReplicationLag(max_seconds=1, critical=3)()]


# -- batch_time: transactions sized by time ----------------------------------------------------


class PacedBatches(Processor):
    """Add one to each item's counter in process_batch(), logging each batch (BatchLog, committed
    with it). Each item takes ``per_item`` seconds, those from ``slow_from`` to ``slow_until``
    ``slow_per_item``. On the item ``kill_at`` the process kills itself (SIGKILL) if the file
    ``marker`` exists, deleting it first: killed once, the resumed run goes on."""

    batch_size = 20
    per_item: float = 0.0
    slow_per_item: float = 0.0
    slow_from: int = 0
    slow_until: int = 0
    kill_at: int = 0
    marker: str = ""

    def collection(self):
        return Item.objects.all()

    def process_batch(self, items):
        started = time.time()
        pks = list(items.values_list("pk", flat=True))
        if self.kill_at in pks and self.marker and os.path.exists(self.marker):
            os.remove(self.marker)
            os.kill(os.getpid(), signal.SIGKILL)
        slow = sum(self.slow_from <= pk < self.slow_until for pk in pks)
        time.sleep(slow * self.slow_per_item + (len(pks) - slow) * self.per_item)
        items.update(times_processed=F("times_processed") + 1)
        BatchLog.objects.create(
            shard=0, first_pk=pks[0], size=len(pks), pid=os.getpid(), started=started, ended=time.time()
        )


class RestingBatches(PacedBatches):
    """PacedBatches sleeping a hundred times as long as each transaction after it (tests patch the ratio)."""

    sleep_ratio = 100.0
