"""Tables the test processors work on. ``times_processed`` counts committed updates per row."""

import uuid

from django.db import models


class Item(models.Model):
    value = models.IntegerField(default=0)
    times_processed = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"Item {self.pk}"


class UUIDItem(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    times_processed = models.IntegerField(default=0)

    def __str__(self) -> str:
        return str(self.pk)


class CodeItem(models.Model):
    code = models.CharField(primary_key=True, max_length=20)
    times_processed = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.code


class RankedItem(models.Model):
    group = models.IntegerField()
    position = models.IntegerField()
    times_processed = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "position"], name="ranked_unique")]

    def __str__(self) -> str:
        return f"{self.group}/{self.position}"


class Seen(models.Model):
    """One row per call of a processor on a non-model item, in order."""

    value = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.value


class BatchLog(models.Model):
    """One row per committed batch of ``LogShardBatches``: which shard, which process, when."""

    shard = models.IntegerField()
    first_pk = models.BigIntegerField()
    size = models.IntegerField()
    pid = models.IntegerField()
    started = models.FloatField()  # time.time() when the batch began
    ended = models.FloatField()  # time.time() before the batch's transaction commits

    def __str__(self) -> str:
        return f"shard {self.shard} from {self.first_pk}"


class BenchRow(models.Model):
    """The table bench/engine.py seeds and walks: a counter to update and some text to load."""

    counter = models.IntegerField(default=0)
    text = models.TextField(default="")

    def __str__(self) -> str:
        return f"BenchRow {self.pk}"


class BenchCursor(models.Model):
    """Where bench/engine.py's hand-written loop with the engine's guarantee records its cursor."""

    cursor = models.TextField(default="")

    def __str__(self) -> str:
        return self.cursor


class LegacyItem(models.Model):
    """An item on the "legacy" database when LEGACY_DATABASE_URL is set (testproject/routers.py)."""

    times_processed = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"legacy item {self.pk}"
