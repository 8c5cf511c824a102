"""Sources: walk a processor's collection in batches from a cursor, in constant memory.

A cursor is a string the engine saves after each batch and hands back on resume:
the JSON list of the last key for QuerySets (keyset pagination, never OFFSET), the
number of items consumed for sequences and iterables, ``"<byte offset>:<lines>"`` for CSV
files (see ``csvsource``), or whatever a custom ``enumerate()`` yields.
"""

from __future__ import annotations

import datetime
import itertools
import json
import uuid
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any, ClassVar, Protocol

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import Q

from .csvsource import CSVFile
from .exceptions import InvalidProcessor

#: Opens a run's CSV file for reading, in binary: a new file object each time.
type CSVOpener = Callable[[], IO[bytes]]


class ProcessorLike(Protocol):
    """What a source needs of a processor (``Processor`` has it; this module sits below it)."""

    batch_size: ClassVar[int]
    cursor_columns: ClassVar[tuple[str, ...] | None]
    csv_collection: ClassVar[bool]
    csv_headers: ClassVar[tuple[str, ...]]
    csv_encoding: ClassVar[str]

    @classmethod
    def defines_enumerate(cls) -> bool: ...

    def collection(self) -> Any: ...

    def enumerate(self, cursor: str | None) -> Iterator[tuple[Any, str]] | None: ...


@dataclass(frozen=True)
class Batch:
    """Up to ``batch_size`` items, and how to name the position after any of them."""

    items: Any  # a list, or a QuerySet restricted to the batch when process_batch() takes one
    size: int
    cursor_at: Callable[[int], str]  # the cursor after item i (0-based)

    @property
    def end_cursor(self) -> str:
        return self.cursor_at(self.size - 1)


class _KeyEncoder(json.JSONEncoder):
    """Encode key values losslessly (DjangoJSONEncoder drops microseconds)."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime.date | datetime.time):
            return o.isoformat()
        if isinstance(o, uuid.UUID | Decimal):
            return str(o)
        return super().default(o)


def encode_key(key: tuple[Any, ...]) -> str:
    return json.dumps(list(key), cls=_KeyEncoder, separators=(",", ":"))


def _keyset_q(columns: tuple[str, ...], values: list[Any], before_last: str, last: str) -> Q:
    """Return the lexicographic comparison of ``columns`` with ``values``.

    ``("gt", "gt")`` selects rows after the key; ``("lt", "lte")`` rows up to and including it.
    """
    q = Q()
    for i, column in enumerate(columns):
        op = last if i == len(columns) - 1 else before_last
        equal = dict(zip(columns[:i], values[:i], strict=True))
        q |= Q(**equal, **{f"{column}__{op}": values[i]})
    return q


def _cursor_fields(model: type[models.Model], columns: tuple[str, ...]) -> list[Any] | str:
    """Return the fields the cursor columns name, or why they cannot order a walk."""
    if not isinstance(columns, tuple | list) or not columns or not all(isinstance(c, str) for c in columns):
        return f"cursor_columns must be a tuple of field names, not {columns!r}."
    fields = []
    for column in columns:
        try:
            field = model._meta.pk if column == "pk" else model._meta.get_field(column)
        except FieldDoesNotExist:
            return f"cursor_columns: {model.__name__} has no field {column!r} (a descending order is not supported)."
        if not getattr(field, "concrete", False):
            return f"cursor_columns: {model.__name__}.{column} is not a column."
        fields.append(field)
    return fields


def cursor_problem(model: type[models.Model], columns: Any) -> str | None:
    """Return why ``columns`` (None: the primary key) cannot be a keyset cursor over ``model``, or None.

    Keyset pagination skips rows unless the columns are NOT NULL and unique together: a unique
    field among them, or a ``unique_together`` or unconditional ``UniqueConstraint`` within them.
    """
    columns = ("pk",) if columns is None else columns
    fields = _cursor_fields(model, columns)
    if isinstance(fields, str):
        return fields
    if nullable := [column for column, field in zip(columns, fields, strict=True) if field.null]:
        return f"cursor_columns {tuple(columns)!r}: {', '.join(nullable)} may be NULL, and rows with NULL would be skipped."
    meta = model._meta
    groups = [{meta.get_field(name) for name in group} for group in meta.unique_together]
    groups += [{meta.get_field(name) for name in c.fields} for c in meta.total_unique_constraints]
    if not any(field.unique for field in fields) and not any(group <= set(fields) for group in groups):
        return (
            f"cursor_columns {tuple(columns)!r} are not unique together on {model.__name__}, so rows sharing a "
            "key would be skipped: add a unique constraint over them, or a unique field such as 'pk'."
        )
    return None


def ordering_problem(collection: models.QuerySet[Any], columns: Any) -> str | None:
    """Return why the collection's own ordering differs from the cursor order it is walked in, or None."""
    columns = tuple(("pk",) if columns is None else columns)
    query, pk = collection.query, collection.model._meta.pk.name
    ordering = tuple(pk if name == "pk" else name for name in query.order_by)
    if query.standard_ordering and (
        not ordering or ordering in (columns, tuple(pk if c == "pk" else c for c in columns))
    ):
        return None
    shown = tuple(map(str, query.order_by)) or ("reverse()",)
    return (
        f"collection() is ordered by {shown!r}, but it is walked in cursor order {columns!r} (ascending): "
        "remove its order_by(), or set cursor_columns to the unique columns to walk it by."
    )


class Source:
    """A processor's items, walked in batches from a cursor.

    ``batch_size`` is read again before each batch is fetched: the engine may change it between
    two batches (see ``batching``), and a source of one's own should do the same.
    """

    def __init__(self, processor: ProcessorLike, collection: Any) -> None:
        self.processor = processor
        self.collection = collection
        self.batch_size = max(1, int(processor.batch_size))

    def count(self) -> int | None:
        return None

    def batches(self, cursor: str | None, *, whole: bool) -> Iterator[Batch]:
        """Yield batches after ``cursor``; ``whole`` asks for QuerySet batches for process_batch()."""
        raise NotImplementedError


class NoCollection(Source):
    """``collection()`` is None: ``process()`` is called once with no item."""

    DONE = "done"

    def count(self) -> int:
        return 1

    def batches(self, cursor: str | None, *, whole: bool) -> Iterator[Batch]:
        if cursor != self.DONE:
            yield Batch([None], 1, lambda i: self.DONE)


class QuerySetSource(Source):
    """Keyset pagination over a QuerySet, by primary key or ``cursor_columns``."""

    def __init__(self, processor: ProcessorLike, collection: models.QuerySet[Any]) -> None:
        super().__init__(processor, collection)
        columns = processor.cursor_columns
        if problem := cursor_problem(collection.model, columns) or ordering_problem(collection, columns):
            raise InvalidProcessor(f"{type(processor).__name__}: {problem}")
        meta = collection.model._meta
        self.columns = tuple(processor.cursor_columns or ("pk",))
        self.attnames = tuple(
            meta.pk.attname if column == "pk" else meta.get_field(column).attname for column in self.columns
        )
        self.ordered = collection.order_by(*self.columns)

    def count(self) -> int:
        return self.collection.count()

    def _bounds(self, after: list[Any] | None, last: list[Any] | None) -> Q:
        """Select the rows after the key ``after`` (if any) up to and including ``last`` (if any)."""
        columns = self.columns
        if len(columns) == 1:
            bounds = {} if after is None else {f"{columns[0]}__gt": after[0]}
            if last is not None:
                bounds[f"{columns[0]}__lte"] = last[0]
            return Q(**bounds)
        q = Q() if after is None else _keyset_q(columns, after, "gt", "gt")
        return q if last is None else q & _keyset_q(columns, last, "lt", "lte")

    def batches(self, cursor: str | None, *, whole: bool) -> Iterator[Batch]:
        after = json.loads(cursor) if cursor else None
        columns, attnames = self.columns, self.attnames
        while True:
            size = self.batch_size
            page = self.ordered if after is None else self.ordered.filter(self._bounds(after, None))
            if whole:
                keys = list(page.values_list(*columns)[:size])
                if not keys:
                    return
                last = list(keys[-1])
                # One filter() per batch: building QuerySets is a good part of a batch's cost.
                items = self.ordered.filter(self._bounds(after, last))
                yield Batch(items, len(keys), lambda i, keys=keys: encode_key(keys[i]))
                count = len(keys)
            else:
                rows = list(page[:size])
                if not rows:
                    return
                if len(attnames) == 1:
                    attname = attnames[0]
                    last = [getattr(rows[-1], attname)]
                    yield Batch(
                        rows, len(rows), lambda i, rows=rows, attname=attname: encode_key((getattr(rows[i], attname),))
                    )
                else:
                    last = [getattr(rows[-1], name) for name in attnames]
                    yield Batch(
                        rows,
                        len(rows),
                        lambda i, rows=rows: encode_key(tuple(getattr(rows[i], name) for name in attnames)),
                    )
                count = len(rows)
            if count < size:
                return
            after = last


class SequenceSource(Source):
    """A list or tuple: the cursor is the number of items done."""

    def count(self) -> int:
        return len(self.collection)

    def batches(self, cursor: str | None, *, whole: bool) -> Iterator[Batch]:
        start = int(cursor or 0)
        while start < len(self.collection):
            items = list(self.collection[start : start + self.batch_size])
            yield Batch(items, len(items), lambda i, start=start: str(start + i + 1))
            start += len(items)


class IterableSource(Source):
    """Any other finite iterable, which must yield the same items in the same order on resume."""

    def count(self) -> int | None:
        return len(self.collection) if isinstance(self.collection, Sized) else None

    def batches(self, cursor: str | None, *, whole: bool) -> Iterator[Batch]:
        done = int(cursor or 0)
        iterator = itertools.islice(iter(self.collection), done, None)
        while items := list(itertools.islice(iterator, self.batch_size)):
            yield Batch(items, len(items), lambda i, start=done: str(start + i + 1))
            done += len(items)


def paired_batches(pairs: Iterator[tuple[Any, Any]], size: Callable[[], int]) -> Iterator[Batch]:
    """Yield batches of up to ``size()`` items (asked before each batch) from ``(item, cursor after it)`` pairs.

    An error while reading the pairs (a malformed CSV row) ends the batch before it: the items
    read until then are processed first, so the run stops with its cursor on the bad one.
    """
    while True:
        chunk, failure = [], None
        try:
            for pair in itertools.islice(pairs, size()):
                chunk.append(pair)
        except Exception as error:
            failure = error
        if chunk:
            items = [item for item, _ in chunk]
            cursors = [str(position) for _, position in chunk]
            yield Batch(items, len(items), cursors.__getitem__)
        if failure is not None:
            raise failure
        if not chunk:
            return


class CustomSource(Source):
    """A processor's own ``enumerate(cursor)``, yielding ``(item, cursor)`` pairs."""

    def count(self) -> int | None:
        return None

    def batches(self, cursor: str | None, *, whole: bool) -> Iterator[Batch]:
        pairs = self.processor.enumerate(cursor)
        assert pairs is not None  # noqa: S101 (open_source checked that enumerate is overridden)
        yield from paired_batches(iter(pairs), lambda: self.batch_size)


class CSVSource(Source):
    """The rows of a run's CSV file, as dicts keyed by the header; the cursor is the byte offset after a row."""

    def __init__(self, processor: ProcessorLike, opener: CSVOpener | None) -> None:
        super().__init__(processor, None)
        self.opener = opener

    def open(self) -> CSVFile:
        if self.opener is None:
            raise InvalidProcessor(f"{type(self.processor).__name__} reads a CSV file, but the run has none.")
        return CSVFile(self.opener(), self.processor.csv_encoding, self.processor.csv_headers)

    def count(self) -> int | None:
        if self.opener is None:
            return None  # no file yet (the admin's "Count items"): a run counts its file's rows
        csv_file = self.open()
        with csv_file.file:
            return csv_file.scan()

    def batches(self, cursor: str | None, *, whole: bool) -> Iterator[Batch]:
        csv_file = self.open()
        with csv_file.file:
            yield from paired_batches(csv_file.rows(cursor), lambda: self.batch_size)


def open_source(processor: ProcessorLike, csv_file: CSVOpener | None = None) -> Source:
    """Return the source that walks this processor's items (``csv_file`` opens the run's CSV file, if any)."""
    if processor.csv_collection:
        return CSVSource(processor, csv_file)
    if processor.defines_enumerate():
        return CustomSource(processor, None)
    collection = processor.collection()
    if collection is None:
        return NoCollection(processor, None)
    if isinstance(collection, models.QuerySet):
        return QuerySetSource(processor, collection)
    if isinstance(collection, list | tuple):
        return SequenceSource(processor, collection)
    if isinstance(collection, str | bytes | dict) or not hasattr(collection, "__iter__"):
        raise TypeError(
            f"{type(processor).__name__}.collection() returned {type(collection).__name__}: return a "
            "QuerySet, a list or tuple, a finite iterable, or None."
        )
    return IterableSource(processor, collection)
