"""Catalog feeds as CSV: a streaming parser with bounded memory, and schema inference.

Used by the dashboard/API CSV upload and, with `gzip=True`, by the SFTP feed (`.csv.gz`).
Memory stays bounded whatever the file size: bytes are read `READ_SIZE` at a time, decoded
incrementally, split into lines (each kept with its `\\n`, so the csv module sees quoted
fields that span lines), and one record is built at a time. A physical line longer than
`MAX_LINE_CHARS` and a field longer than the csv module's field limit (131,072 characters,
far above the 5,000 a value may have) are errors, never unbounded buffers.
"""
from __future__ import annotations

import codecs
import csv
import gzip as gzip_module
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from magpie.common.controlplane.schema_rules import (
    MANDATORY_FIELDS,
    MAX_CUSTOM_FIELDS,
    Field,
    validate_field_name,
)
from magpie.common.errors import InvalidRequest, MagpieError, SchemaError
from magpie.ingestion.validation import MAX_PARAMS

READ_SIZE = 1 << 16
MAX_LINE_CHARS = 1 << 20  # 32 values of 5,000 characters fit many times over
MAX_COLUMNS = MAX_PARAMS  # the seed: "up to 32 metadata fields for each image"
SAMPLE_ROWS = 1000
_GZIP_MAGIC = b"\x1f\x8b"


class CsvFormatError(InvalidRequest):
    """The file cannot be read as a CSV feed; `line` (1-based) says where, when known."""

    def __init__(self, detail: str, *, line: int | None = None) -> None:
        super().__init__(detail)
        self.line = line


@dataclass(frozen=True)
class CsvRow:
    """One record: the physical line it starts on, its cells by column, and its error if malformed.

    A row with an error keeps whatever cells it has (its im_name helps the report) and must
    not be ingested.
    """

    line: int
    values: dict[str, str]
    error: MagpieError | None = None


class Utf8Decoder:
    """Incremental UTF-8 decoding that tracks bytes and lines, for errors that say where."""

    def __init__(self, what: str = "The file") -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")()
        self._what = what
        self.offset = 0  # bytes fed so far
        self.newlines = 0  # b"\n" fed so far (never part of a multi-byte sequence)
        self._head = b""
        self._error: CsvFormatError | None = None

    def feed(self, data: bytes, final: bool = False) -> str:
        """The text `data` completes; CsvFormatError at the first invalid byte.

        The valid text before an invalid byte is returned first (its rows still count); the
        error is raised by the next call.
        """
        if self._error is not None:
            raise self._error
        if len(self._head) < 2:
            self._head = (self._head + data)[:2]
        buffered = self._dec.getstate()[0]
        try:
            text = self._dec.decode(data, final)
        except UnicodeDecodeError as err:
            joined = buffered + data
            at = self.offset - len(buffered) + err.start
            line = self.newlines + joined[:err.start].count(b"\n") + 1
            hint = (" It looks gzip-compressed: send the plain .csv file."
                    if self._head == _GZIP_MAGIC else " Save the file as UTF-8 and upload it again.")
            self._error = CsvFormatError(f"{self._what} is not valid UTF-8: invalid byte at offset {at} "
                                         f"(line {line}).{hint}", line=line)
            return joined[:err.start].decode("utf-8")
        self.offset += len(data)
        self.newlines += data.count(b"\n")
        return text


def _text(f: BinaryIO, what: str, read_size: int) -> Iterator[str]:
    dec = Utf8Decoder(what)
    first = True
    while True:
        data = f.read(read_size)
        text = dec.feed(data, final=not data)
        if first and text:
            text, first = text.removeprefix("\ufeff"), False  # Excel's "CSV UTF-8" BOM
        if text:
            yield text
        if not data:
            dec.feed(b"", final=True)  # raises an error found in the last chunk
            return


def _lines(chunks: Iterable[str]) -> Iterator[str]:
    """Physical lines, each with its "\\n" (the last one may lack it)."""
    pending: list[str] = []
    pending_len, line = 0, 1
    for text in chunks:
        parts = text.split("\n")
        if len(parts) == 1:
            pending.append(text)
            pending_len += len(text)
            if pending_len > MAX_LINE_CHARS:
                raise CsvFormatError(f"Line {line} is longer than {MAX_LINE_CHARS} characters "
                                     "(or lines end in a lone CR, which is not supported).", line=line)
            continue
        parts[0] = "".join(pending) + parts[0]
        tail = parts.pop()
        for part in parts:
            if len(part) > MAX_LINE_CHARS:
                raise CsvFormatError(f"Line {line} is longer than {MAX_LINE_CHARS} characters.", line=line)
            line += 1
            yield part + "\n"
        pending, pending_len = [tail], len(tail)
    rest = "".join(pending)
    if rest:
        yield rest


class CsvFeed:
    """A CSV feed: `header` is read on construction (errors raise), iteration yields CsvRows."""

    def __init__(self, f: BinaryIO, *, gzip: bool = False, read_size: int = READ_SIZE) -> None:
        what = "The decompressed file" if gzip else "The file"
        self._source = gzip_module.GzipFile(fileobj=f, mode="rb") if gzip else f
        self._reader = csv.reader(_lines(_text(self._source, what, read_size)), strict=True)
        self._gzip = gzip
        self._last_line = 0
        self.header = self._read_header()

    def _next(self) -> tuple[int, list[str] | None, str | None]:
        """(start line, cells, csv error) of the next record; raises StopIteration at the end."""
        try:
            try:
                cells = next(self._reader)
                error = None
            except csv.Error as err:
                cells, error = None, str(err)
        except (OSError, EOFError, zlib.error) as err:
            if not self._gzip:
                raise
            raise CsvFormatError(f"The file is not valid gzip data ({err}).") from None
        start, self._last_line = self._last_line + 1, self._reader.line_num
        return start, cells, error

    def _read_header(self) -> list[str]:
        while True:
            try:
                line, cells, error = self._next()
            except StopIteration:
                raise CsvFormatError("The file is empty: its first row must name the columns "
                                     "(im_name, im_url, ...).", line=1) from None
            if error:
                raise CsvFormatError(f"Line {line}: the header row is malformed: {error}.", line=line)
            if cells and any(cells):
                return check_header(cells, line)

    def __iter__(self) -> Iterator[CsvRow]:
        header, width = self.header, len(self.header)
        while True:
            try:
                line, cells, error = self._next()
            except StopIteration:
                return
            if error is not None:
                yield CsvRow(line, {}, CsvFormatError(f"Line {line}: malformed CSV: {error}.", line=line))
            elif not any(cells):
                continue  # blank lines and rows of empty cells (spreadsheet exports) carry nothing
            elif len(cells) != width:
                msg = f"Line {line} has {len(cells)} cells; the header has {width}."
                yield CsvRow(line, dict(zip(header, cells)), CsvFormatError(msg, line=line))
            else:
                yield CsvRow(line, dict(zip(header, cells)))


def take(rows: Iterator[CsvRow], n: int) -> tuple[list[CsvRow], CsvFormatError | None]:
    """The next `n` rows (fewer at the end), and the error that ended the file early, if any."""
    out: list[CsvRow] = []
    try:
        for row in rows:
            out.append(row)
            if len(out) == n:
                break
    except CsvFormatError as err:
        return out, err
    return out, None


def open_feed(f: BinaryIO, *, gzip: bool = False, read_size: int = READ_SIZE) -> CsvFeed:
    """Read the header of the CSV (gzip-compressed when `gzip`) in binary file `f`."""
    return CsvFeed(f, gzip=gzip, read_size=read_size)


def check_header(cells: list[str], line: int = 1) -> list[str]:
    """The header as given, or CsvFormatError: empty or repeated names, too many, no im_name."""
    if len(cells) > MAX_COLUMNS:
        raise CsvFormatError(f"The header has {len(cells)} columns; at most {MAX_COLUMNS} are allowed "
                             f"(im_name, im_url and {MAX_CUSTOM_FIELDS} fields).", line=line)
    unnamed = [str(i + 1) for i, name in enumerate(cells) if not name.strip()]
    if unnamed:
        raise CsvFormatError(f"Header column(s) {', '.join(unnamed)} have no name.", line=line)
    seen: set[str] = set()
    repeated = [n for n in cells if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if repeated:
        raise CsvFormatError(f"The header names {', '.join(map(repr, dict.fromkeys(repeated)))} "
                             "more than once.", line=line)
    if "im_name" not in cells:
        raise CsvFormatError(f"The header has no im_name column; it has {', '.join(map(repr, cells))}.",
                             line=line)
    return cells


# --- schema inference -----------------------------------------------------------------------
_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_LEADING_ZERO = re.compile(r"[+-]?0\d")
TEXT_AVG_CHARS, TEXT_MAX_CHARS = 200, 1000


@dataclass
class _Stats:
    count: int = 0
    ints: bool = True
    numbers: bool = True
    urls: bool = True
    chars: int = 0
    longest: int = 0
    distinct: set[int] = field(default_factory=set)

    def add(self, value: str) -> None:
        v = value.strip()
        if not v:
            return
        self.count += 1
        self.chars += len(v)
        self.longest = max(self.longest, len(v))
        self.distinct.add(hash(v))  # hashes, not values: a sample of long texts stays small
        if _LEADING_ZERO.match(v):  # 00123, 0042: codes or zip codes, not numbers
            self.ints = self.numbers = False
        self.ints = self.ints and bool(_INT.fullmatch(v)) and -(2**63) <= int(v) < 2**63
        self.numbers = self.numbers and bool(_NUMBER.fullmatch(v))
        self.urls = self.urls and v.startswith(("http://", "https://"))

    def field(self, name: str) -> Field:
        if self.count and self.ints:
            return Field(name, "int", searchable=True)
        if self.count and self.numbers:
            return Field(name, "float", searchable=True)
        if self.count and (self.chars / self.count > TEXT_AVG_CHARS or self.longest > TEXT_MAX_CHARS):
            return Field(name, "text")
        # Low cardinality (values repeat on average) makes a useful filter; URLs never do.
        low = self.count >= 2 and len(self.distinct) * 2 <= self.count
        return Field(name, "string", searchable=low and not self.urls)


def custom_columns(header: Iterable[str]) -> list[str]:
    """The columns that would be schema fields (all but im_name and im_url)."""
    return [c for c in header if c not in MANDATORY_FIELDS]


def infer_schema(sample_rows: Iterable[Mapping[str, str] | CsvRow], header: list[str]) -> list[Field]:
    """Propose a field for each custom column whose name the rules accept (see column_problems).

    int if every non-empty value is an integer, float if every one is a number, text if values
    are long (average over 200 characters or any over 1,000), else string; numbers and
    low-cardinality strings are proposed searchable. Rows with errors are not looked at.
    """
    refused = {p["column"] for p in column_problems(header)}
    names = [c for c in custom_columns(header) if c not in refused]
    stats = {name: _Stats() for name in names}
    for row in sample_rows:
        if isinstance(row, CsvRow):
            if row.error is not None:
                continue
            row = row.values
        for name, st in stats.items():
            value = row.get(name)
            if isinstance(value, str):
                st.add(value)
    return [stats[name].field(name) for name in names]


def column_problems(header: Iterable[str]) -> list[dict[str, str]]:
    """Custom columns that cannot become fields as named, each with the rule it breaks."""
    problems, accepted = [], 0
    for name in custom_columns(header):
        try:
            validate_field_name(name)
        except SchemaError as err:
            problems.append({"column": name, "problem": err.detail})
            continue
        accepted += 1
        if accepted > MAX_CUSTOM_FIELDS:
            problems.append({"column": name, "problem": f"At most {MAX_CUSTOM_FIELDS} custom fields are "
                                                         f"allowed; '{name}' is number {accepted}."})
    return problems
