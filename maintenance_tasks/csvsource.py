"""CSV files read as a stream: rows as dicts, from a byte offset, in constant memory.

The file is read in binary and decoded line by line, so the position after any row is a
byte offset: a run's cursor is ``"<offset>:<lines>"``, the offset of the next row and the
number of physical lines before it (a quoted field may span several), so that resuming
seeks there without reading the rows before it, and errors name the line in the file.
The header row is read from offset 0 each time the file is opened.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from typing import IO, Any

from .exceptions import InvalidCSV

#: The encodings a CSV file may use: those that read the newline, comma and quote from ASCII
#: bytes, so that a line ends at b"\n" (not UTF-16 or UTF-32).
ASCII_PUNCTUATION = '\r\n,"'


def encoding_problem(encoding: Any) -> str | None:
    """Return why ``encoding`` cannot read a CSV file line by line, or None."""
    if not isinstance(encoding, str):
        return f"csv_encoding must be the name of an encoding, not {encoding!r}."
    try:
        codecs.lookup(encoding)
    except LookupError:
        return f"csv_encoding: unknown encoding {encoding!r}."
    try:
        ascii_compatible = ASCII_PUNCTUATION.encode("ascii").decode(encoding) == ASCII_PUNCTUATION
    except UnicodeDecodeError:
        ascii_compatible = False
    if not ascii_compatible:
        return f"csv_encoding: {encoding!r} does not write newlines as ASCII bytes; use UTF-8, Latin-1 or the like."
    return None


def headers_problem(headers: Any) -> str | None:
    """Return why ``headers`` cannot be the columns a CSV processor requires, or None."""
    if not isinstance(headers, tuple | list) or not all(isinstance(name, str) and name for name in headers):
        return f"csv_headers must be a tuple of column names, not {headers!r}."
    return None


def csv_problems(processor: Any, defines_collection: bool) -> list[str]:
    """Return why a CSV processor (``csv_collection``) cannot run: it reads a file given to each run, nothing else."""
    if not processor.csv_collection:
        return []
    problems = [
        problem
        for problem in (headers_problem(processor.csv_headers), encoding_problem(processor.csv_encoding))
        if problem
    ]
    if defines_collection or processor.defines_enumerate():
        problems.append("csv_collection reads the rows of the run's CSV file: remove collection() and enumerate().")
    if "csv_file" in getattr(processor, "__annotations__", {}):
        problems.append("csv_file names the file a CSV processor is started with: rename that parameter.")
    if processor.schedule is not None or processor.run_on_deploy is not None:
        problems.append("csv_collection needs a file for each run: it cannot have a schedule or run_on_deploy.")
    return problems


def parse_cursor(cursor: str | None) -> tuple[int, int]:
    """Return the byte offset and the number of lines a cursor names (0, 0: after the header, not read yet)."""
    if not cursor:
        return 0, 0
    offset, _, lines = cursor.partition(":")
    return int(offset), int(lines)


class CSVFile:
    """One CSV file, opened in binary: its header, then its rows from a cursor."""

    def __init__(self, file: IO[bytes], encoding: str = "utf-8-sig", required: tuple[str, ...] = ()) -> None:
        self.file = file
        self.encoding = encoding
        self.required = tuple(required)
        self.offset = 0  # bytes consumed by the reader so far
        self.lines = 0  # physical lines consumed by the reader so far
        self.header: list[str] = []

    def _lines(self) -> Iterator[str]:
        """Yield the file's lines decoded, from where it stands, counting bytes and lines as the reader takes them."""
        for raw in iter(self.file.readline, b""):
            try:
                line = raw.decode(self.encoding)
            except UnicodeDecodeError as error:
                raise InvalidCSV(
                    f"line {self.lines + 1}: cannot be decoded as {self.encoding} "
                    f"(byte {raw[error.start : error.start + 1]!r} at column {error.start + 1})."
                ) from None
            self.offset += len(raw)
            self.lines += 1
            yield line

    def _reader(self) -> Iterator[tuple[int, list[str]]]:
        """Yield each row's first line and fields from where the file stands, blank lines left out.

        A malformed row (a quote out of place, a quoted field never closed) raises InvalidCSV with its line.
        """
        reader = csv.reader(self._lines(), strict=True)
        while True:
            first = self.lines + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise InvalidCSV(f"line {first}: malformed row: {error}.") from None
            if fields:
                yield first, fields

    def read_header(self) -> list[str]:
        """Read the header row from the start of the file; raise InvalidCSV if it lacks a required column."""
        self.file.seek(0)
        self.offset = self.lines = 0
        first = next(self._reader(), None)
        if first is None:
            raise InvalidCSV("The file is empty: the first line must name the columns.")
        self.header = header = first[1]
        if missing := [name for name in self.required if name not in header]:
            found = ", ".join(header)[:200]
            raise InvalidCSV(f"The header row lacks the column(s) {', '.join(missing)} (it has: {found}).")
        if len(set(header)) < len(header):
            raise InvalidCSV(f"The header row names a column twice: {', '.join(header)[:200]}.")
        return header

    def rows(self, cursor: str | None = None) -> Iterator[tuple[dict[str, str], str]]:
        """Yield ``(row, cursor after it)`` pairs from ``cursor`` (None: the first row after the header)."""
        header = self.read_header()
        offset, lines = parse_cursor(cursor)
        if offset:
            self.file.seek(offset)
            self.offset, self.lines = offset, lines
        width = len(header)
        for line, fields in self._reader():
            if len(fields) != width:
                raise InvalidCSV(f"line {line}: malformed row: {len(fields)} fields, the header has {width}.")
            yield dict(zip(header, fields, strict=True)), f"{self.offset}:{self.lines}"

    def scan(self) -> int:
        """Check the header and decode the whole file; return the number of rows (quoted newlines count once).

        A row malformed later in the file is counted as it reads: the run errors there, with its line.
        """
        self.read_header()
        count = 0
        reader = csv.reader(self._lines())  # lenient: a malformed row errors the run, not the count
        try:
            for fields in reader:
                count += bool(fields)
        except csv.Error:
            pass  # e.g. a field over csv.field_size_limit(): the run says where
        return count
