"""The CSV file a run reads: checked and stored before the run is saved, opened by the engine, deleted with the run.

The file is kept in the CSV_STORAGE storage (``Run.csv_file``), so a worker on another machine
reads the same file; S3 and the like need only settings.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction

from .csvsource import CSVFile
from .exceptions import InvalidCSV
from .models import Run
from .processor import Processor
from .sources import CSVOpener

#: The name of the file given to a run, and of the error about it (the admin's form field).
CSV_FIELD = "csv_file"
#: A stored file's name when it came without one (standard input).
UNNAMED = "rows.csv"


def refuse(message: str) -> ValidationError:
    return ValidationError({CSV_FIELD: [message]})


def seekable(file: Any) -> Any:
    """Return the file itself if it can be read twice, else a temporary copy of it (standard input)."""
    try:
        if file.seekable():
            return file
    except (AttributeError, ValueError):
        pass
    copy = tempfile.TemporaryFile()  # noqa: SIM115 (store_csv closes it once stored)
    shutil.copyfileobj(file, copy)  # in chunks: constant memory
    return copy


def stored_name(file: Any) -> str:
    """Return the name to store the file under: its own base name, or UNNAMED (``<stdin>``, none)."""
    name = os.path.basename(str(getattr(file, "name", "") or ""))
    return UNNAMED if not name or name.startswith("<") else name


def store_csv(processor: type[Processor], file: IO[bytes] | None) -> dict[str, Any]:
    """Check the file a run is started with, then store it; return the run's fields for it.

    Raise ValidationError on ``csv_file``, with nothing stored, when a CSV processor gets no
    file, another processor gets one, or the file is not one the processor can read (a text
    stream, a missing column, bytes its encoding cannot decode). The scan that checks it also
    counts its rows: the run's total.
    """
    name = processor.__name__
    if not processor.csv_collection:
        if file is not None:
            raise refuse(f"{name} does not read a CSV file (it has no csv_collection): start it without one.")
        return {}
    if file is None:
        raise refuse(f"{name} reads its rows from a CSV file: give one.")
    if not callable(getattr(file, "read", None)):
        raise refuse(f"The CSV file must be a file object open in binary mode, not {type(file).__name__}.")
    if isinstance(file.read(0), str):
        raise refuse("The CSV file is open in text mode: open it in binary mode ('rb').")
    readable = seekable(file)
    try:
        try:
            rows = CSVFile(readable, processor.csv_encoding, processor.csv_headers).scan()
        except InvalidCSV as error:
            raise refuse(str(error)) from None
        field = Run._meta.get_field(CSV_FIELD)
        path = field.generate_filename(None, stored_name(file))
        stored = field.storage.save(path, File(readable, path), max_length=field.max_length)
    finally:
        if readable is not file:
            readable.close()
    return {CSV_FIELD: stored, "tick_total": rows}


@contextlib.contextmanager
def kept_if_saved(fields: dict[str, Any]) -> Iterator[None]:
    """Delete the file ``store_csv`` stored if the run that was to read it is not saved."""
    try:
        yield
    except BaseException:
        if fields.get(CSV_FIELD):
            Run._meta.get_field(CSV_FIELD).storage.delete(fields[CSV_FIELD])
        raise


def csv_opener(run: Run) -> CSVOpener | None:
    """Return what opens the run's CSV file in binary (a new file object each time), or None without one."""
    if not run.csv_file:
        return None
    return functools.partial(run.csv_file.storage.open, run.csv_file.name, "rb")


def delete_csv_file(sender: type[Run], instance: Run, using: str, **kwargs: Any) -> None:
    """Delete a deleted run's CSV file from its storage once the deletion commits (``post_delete``)."""
    if instance.csv_file:
        storage, name = instance.csv_file.storage, instance.csv_file.name
        transaction.on_commit(lambda: storage.delete(name), using=using)
