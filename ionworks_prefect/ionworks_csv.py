"""Ionworks-style CSV tables (already holding ``Time [s]``, ``Step count``, ...): read whole, or streamed to parquet.

Both ways parse with polars and the same options (separator, decimal commas, known numeric columns typed, the
other types inferred from the first :data:`INFER_ROWS` rows), so they give the same table; a cell polars cannot
parse is reported naming its column, row and text.

Example:
    >>> frame = read_ionworks_csv(Path("runs/rpt.csv"))
    >>> write_ionworks_parquet(Path("runs/rpt.csv"), Path("/tmp/rpt.parquet"))  # a few MB in memory at a time
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import polars as pl
from ionworksdata.read import BaseReader
from polars.io.plugins import register_io_source

from .exceptions import InvalidMeasurementError

#: Rows the column types are inferred from (those of the known numeric columns are fixed).
INFER_ROWS = 10_000
#: Bytes of the file parsed at a time when streaming it to parquet.
PIECE_BYTES = 1 << 20
_NUMERIC = {name: pl.Float64 for name in BaseReader.ALWAYS_NUMERIC_COLUMNS} | {
    "Step count": pl.Int64, "Cycle count": pl.Int64}
_HEAD_BYTES = 64 * 1024
#: A number written with a decimal comma.
DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+(?:[eE][+-]?\d+)?")
POLARS_PARSE = re.compile(r"could not parse `(?P<value>[^`]*)` as dtype `(?P<dtype>[^`]*)` at column '(?P<column>[^']*)'")


def head_lines(file: Path) -> list[str]:
    """The whole lines of the file's first 64 KiB (a byte-order mark dropped)."""
    with open(file, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    return text.splitlines()[:-1] if len(head) == _HEAD_BYTES else text.splitlines()


def separator_of(line: str) -> str:
    """The likeliest field separator of a header or data line (tab, semicolon or comma)."""
    return max(("\t", ";", ","), key=line.count) if line else ","


def ionworks_csv_options(file: Path) -> dict[str, Any]:
    """polars' CSV options for an Ionworks-style table: its separator, decimal commas, numeric columns typed.

    Known numeric columns are read as numbers whatever their first rows look like (an integer-looking start
    must not make a column ``i64`` that later holds ``0.00000044``); a header naming a column twice is refused.
    """
    lines = head_lines(file)
    header_line = lines[0] if lines else ""
    separator = separator_of(header_line)
    header = next(csv.reader([header_line], delimiter=separator), [])
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise InvalidMeasurementError(f"Column {name!r} appears twice in the header", file=str(file), column=name)
        seen.add(name)
    fields = [f.strip() for line in lines[1:51] for f in line.split(separator)]
    decimal_comma = separator != "," and any(DECIMAL_COMMA.fullmatch(f) for f in fields)
    return {"separator": separator, "decimal_comma": decimal_comma, "infer_schema_length": INFER_ROWS,
            "schema_overrides": {name: dtype for name, dtype in _NUMERIC.items() if name in seen}}


def read_ionworks_csv(file: Path) -> pl.DataFrame:
    """The whole table in memory (polars' multi-threaded reader)."""
    options = ionworks_csv_options(file)
    try:
        return pl.read_csv(file, **options)
    except pl.exceptions.PolarsError as exc:
        raise located_parse_error(file, exc, options["separator"], options["decimal_comma"]) from None


def _pieces(file: Path) -> Iterator[bytes]:
    """The file in pieces of whole records of about :data:`PIECE_BYTES`, the first holding the header and at
    least :data:`INFER_ROWS` rows (all of them in a shorter file).

    A piece never ends inside a quoted field (an even count of quote characters before its cut), so a field
    holding a line break stays whole. Each byte is searched for a cut once: a cut that was inside quotes stays
    inside them however much is read after it, so a stray quote costs one pass, not one per piece.
    """
    with open(file, "rb") as handle:
        data, first, searched, odd = b"", True, 0, False  # no cut in data[:searched]; odd: its quote count
        while block := handle.read(PIECE_BYTES):
            data += block
            if first and data.count(b"\n") <= INFER_ROWS:
                continue
            cut, odd = _last_record_end(data, searched, odd)
            searched = len(data)
            if cut:
                yield data[:cut]
                data, first, searched = data[cut:], False, searched - cut
        if first or data.strip():
            yield data


def _last_record_end(data: bytes, start: int, odd_before: bool) -> tuple[int, bool]:
    """(The end of the last line of ``data`` that ends outside quotes, if it lies after ``start``, else 0;
    whether ``data`` holds an odd count of quote characters), given that count's parity before ``start``."""
    odd_all = odd_before ^ bool(data.count(b'"', start) % 2)
    odd, end = odd_all, len(data)
    cut = data.rfind(b"\n", start) + 1
    while cut > start:
        odd ^= bool(data.count(b'"', cut, end) % 2)  # now the parity of data[:cut]
        if not odd:
            return cut, odd_all
        end, cut = cut, data.rfind(b"\n", start, cut - 1) + 1
    return 0, odd_all


def write_ionworks_parquet(file: Path, target: Path) -> None:
    """Stream the table into a parquet file at ``target``, parsing about :data:`PIECE_BYTES` at a time.

    The first piece fixes the column types exactly as :func:`read_ionworks_csv` infers them; polars' streaming
    engine writes the pieces as they are parsed, so memory holds a few pieces, never the table.

    Raises:
        InvalidMeasurementError: a cell cannot be parsed (names its column, row and text), or the header
            names a column twice.
    """
    options = ionworks_csv_options(file)
    separator, decimal_comma = options["separator"], options["decimal_comma"]
    pieces = _pieces(file)
    try:
        first = pl.read_csv(next(pieces), **options)
    except pl.exceptions.PolarsError as exc:
        raise located_parse_error(file, exc, separator, decimal_comma) from None
    schema = first.schema
    failed: list[Exception] = []

    def parse(piece: bytes) -> pl.DataFrame:
        return pl.read_csv(piece, has_header=False, schema=schema, separator=separator, decimal_comma=decimal_comma)

    def source(with_columns: Optional[list[str]], predicate: Optional[pl.Expr], n_rows: Optional[int],
               batch_size: Optional[int]) -> Iterator[pl.DataFrame]:
        project = (lambda frame: frame.select(with_columns)) if with_columns is not None else (lambda frame: frame)
        yield project(first)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-pieces") as pool:
            # The next piece is parsed while polars encodes the last one (both release the GIL).
            parsing = next((pool.submit(parse, piece) for piece in pieces), None)
            while parsing is not None:
                try:
                    frame = parsing.result()
                except pl.exceptions.PolarsError as exc:
                    failed.append(exc)
                    return
                parsing = next((pool.submit(parse, piece) for piece in pieces), None)
                yield project(frame)

    register_io_source(source, schema=schema).sink_parquet(target)
    if failed:
        raise located_parse_error(file, failed[0], separator, decimal_comma)


def unclosed_quote(file: Path, separator: str) -> Optional[tuple[int, int, Optional[str], str]]:
    """(The 1-based line of the file where a quoted field opens that is never closed properly, its data row
    (0-based), the column it opens in, the text from its quote), or None.

    A field opens with a quote at its start and closes with a quote followed by the separator or the line's end
    (two quotes are one escaped quote); a quoted field may span lines. A quote closing anywhere else, or the file
    ending inside a field, points back at where that field opened. Only lines holding a quote are scanned.
    """
    sep = separator.encode()
    opened: Optional[tuple[int, int, bytes, int, int]] = None  # line number, row, line, quote offset, field index
    row = 0  # records ended before this line
    with open(file, "rb") as handle:
        header = handle.readline()
        for number, line in enumerate(handle, start=2):
            body = line.rstrip(b"\r\n")
            span = 0 if opened is not None else None  # where the quoted field open on this line starts
            quoted = 0  # separators inside the quoted fields closed on this line
            at, malformed = body.find(b'"'), False
            while at != -1 and not malformed:
                if span is None:
                    if at == 0 or body[at - 1:at] == sep:  # a quote opening a field; elsewhere it is text
                        span, opened = at, (number, row, line, at, body.count(sep, 0, at) - quoted)
                    at = body.find(b'"', at + 1)
                elif body[at + 1:at + 2] == b'"':  # an escaped quote
                    at = body.find(b'"', at + 2)
                elif at + 1 < len(body) and body[at + 1:at + 2] != sep:
                    malformed = True  # a quote that cannot close the field: the field opened at the wrong place
                else:
                    quoted += body.count(sep, span, at)
                    span, opened = None, None
                    at = body.find(b'"', at + 1)
            if malformed:
                break
            row += opened is None
    if opened is None:
        return None
    number, row, line, offset, field = opened
    names = next(csv.reader([header.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")],
                            delimiter=separator), [])
    text = line[offset:].decode("utf-8", errors="replace").rstrip("\r\n")
    return number, row, names[field] if field < len(names) else None, text[:40]


def located_parse_error(file: Path, exc: Exception, separator: str, decimal_comma: bool) -> InvalidMeasurementError:
    """Name the column, row and text behind a polars parse failure (the file re-read as text, on failure only).

    A quoted field that is never properly closed is named first: the rest of the file reads as that field, so
    polars reports a missing column or an unparsable value made of many lines.
    """
    quote = unclosed_quote(file, separator)
    if quote is not None:
        line, row, column, text = quote
        where = f" in column {column!r}" if column else ""
        return InvalidMeasurementError(f"Line {line} opens a quoted field that is never properly closed{where} "
                                       f"({text!r}...); the rest of the file would be read into it", file=str(file),
                                       column=column, row=row)
    match = POLARS_PARSE.search(str(exc))
    if match is None:
        return InvalidMeasurementError(f"Could not read the CSV file: {str(exc).splitlines()[0][:200]}",
                                       file=str(file))
    column = match["column"]
    try:
        text = pl.read_csv(file, separator=separator, columns=[column], infer_schema=False)[column]
    except pl.exceptions.PolarsError:
        return InvalidMeasurementError(f"Column {column!r} holds the text {match['value'][:80]!r} where numbers are "
                                       "expected", file=str(file), column=column)
    if decimal_comma:
        text = text.str.replace(",", ".", literal=True)
    bad = (text.cast(pl.Float64, strict=False).is_null() & text.is_not_null() & (text.str.strip_chars() != ""))
    row = int(bad.arg_true()[0]) if bad.any() else None
    value = text[row] if row is not None else match["value"][:80]
    return InvalidMeasurementError(f"Column {column!r} holds the text {value!r} where numbers are expected",
                                   file=str(file), column=column, row=row)
