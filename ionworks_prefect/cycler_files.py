"""Reading cycler files: which reader a file needs, and the frame it gives.

``ionworksdata`` reads the text and spreadsheet exports (Maccor, Neware, Arbin, BioLogic, Novonix, BaSyTec,
Digatron, Gamry, Repower, BDF). Two binary formats it lacks are read by field libraries and then processed by
``ionworksdata`` exactly like its own formats (units, sign convention, step and cycle counts, capacities):
Neware ``.nda``/``.ndax`` with ``fastnda`` (BSD-3, installed with this package) and BioLogic ``.mpr`` with
``galvani`` (GPLv3+, the optional extra ``ionworks-prefect[biologic-mpr]``). Ionworks-style tables (CSV or
parquet already holding ``Time [s]`` and ``Step count``) are read with polars as they are.

Detection looks at the file's extension and first lines, never at whether a generic CSV parse happens to
succeed, so a vendor export is always given to its vendor's reader. ``reader=`` overrides detection, for
every file or per file (``{"*.csv": "arbin"}``).

Example:
    >>> frame = read_measurement_file("runs/cell7_rpt.ndax")
    >>> read_measurement_file("drop/FastCharge_CH8.csv", reader="arbin").height
    248
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Union

import polars as pl
from ionworksdata.read import BaseReader, detect_reader, time_series
from ionworksdata.read.biologic import Biologic

from .exceptions import InvalidMeasurementError
from .ionworks_csv import DECIMAL_COMMA, POLARS_PARSE, head_lines, read_ionworks_csv, separator_of

#: Ionworks-style table (CSV or parquet with these columns), read by polars as it is.
IONWORKS = "ionworks"
NEWARE_BINARY = "neware nda"
BIOLOGIC_MPR = "biologic mpr"
STANDARD_COLUMNS = frozenset({"Time [s]", "Step count"})

#: ``reader=``: one reader name for every file, or glob pattern (or file name) -> reader name, first match wins.
ReaderChoice = Union[str, Mapping[str, str], None]

_CHUNK_BYTES = 16 * 1024 * 1024
_DECIMAL_POINT = re.compile(r"[+-]?\d*\.\d+(?:[eE][+-]?\d+)?")
_QUOTED_LINE = re.compile(rb'^"|"(?=\r?$)', re.MULTILINE)
#: Readers whose own parsing already handles decimal commas.
_READS_DECIMAL_COMMAS = {"biologic", "biologic mpt", IONWORKS}


class UnsupportedCyclerFile(InvalidMeasurementError):
    """No installed reader can read this file; ``format`` names what it is, ``remedy`` what to do."""

    def __init__(self, message: str, *, file: str, format: str, remedy: str) -> None:
        super().__init__(f"{message}. {remedy}", file=file)
        self.format = format
        self.remedy = remedy


class NewareBinary(BaseReader):
    """Neware BTS ``.nda``/``.ndax`` files, decoded by ``fastnda`` and processed as ionworksdata's Neware exports.

    Registering as an ``ionworksdata.read.BaseReader`` subclass makes ``ionworksdata.read.time_series(path,
    reader="neware nda")`` work, with its usual post-processing (step and cycle counts, capacities, energies).
    """

    name: str = "Neware NDA"

    def run(self, filename: str | Path, extra_column_mappings: dict[str, str] | None = None,
            options: dict[str, str] | None = None) -> pl.DataFrame:
        import fastnda

        raw = fastnda.read(filename)
        columns = [
            pl.col("total_time_s").cast(pl.Float64).alias("Time [s]"),
            (pl.col("current_mA").cast(pl.Float64) / 1000.0).alias("Current [A]"),
            pl.col("voltage_V").cast(pl.Float64).alias("Voltage [V]"),
            pl.col("step_count").cast(pl.Int64).alias("Step from cycler"),
            pl.col("cycle_count").cast(pl.Int64).alias("Cycle from cycler"),
        ]
        temperature = next((c for c in raw.columns if c.startswith("aux") and c.endswith("temperature_degC")), None)
        if temperature:
            columns.append(pl.col(temperature).cast(pl.Float64).alias("Temperature [degC]"))
        data = raw.select(columns).rename(extra_column_mappings or {})
        return self.standard_data_processing(data)


class BiologicMPR(BaseReader):
    """BioLogic EC-Lab ``.mpr`` files, decoded by ``galvani`` and processed as ionworksdata's ``.mpt`` reader does."""

    name: str = "Biologic MPR"

    def run(self, filename: str | Path, extra_column_mappings: dict[str, str] | None = None,
            options: dict[str, str] | None = None) -> pl.DataFrame:
        from galvani import BioLogic

        records = BioLogic.MPRfile(str(filename)).data
        data = pl.DataFrame({name: records[name] for name in records.dtype.names})
        renamings = {**Biologic._get_column_renamings(), **(extra_column_mappings or {})}
        data = data.rename({old: new for old, new in renamings.items() if old in data.columns
                            and new not in data.columns})
        if "-Z_Im [Ohm]" in data.columns:
            data = data.with_columns((-pl.col("-Z_Im [Ohm]")).alias("Z_Im [Ohm]")).drop("-Z_Im [Ohm]")
        if "Current [mA]" in data.columns:
            data = data.with_columns((pl.col("Current [mA]") / 1000.0).alias("Current [A]")).drop("Current [mA]")
        keep = [c for c in (*renamings.values(), "Current [A]", "Z_Im [Ohm]") if c in data.columns]
        return self.standard_data_processing(data, columns_keep=list(dict.fromkeys(keep)))


def reader_names() -> list[str]:
    """Every reader name ``reader=`` accepts: ionworksdata's, the two binary readers and ``"ionworks"``."""
    return sorted({IONWORKS, *BaseReader.get_reader_types()})


def reader_for(path: str | Path, reader: ReaderChoice) -> Optional[str]:
    """The reader chosen for ``path``: ``reader`` itself, or the first pattern of a mapping that matches it.

    A pattern matches the file name or the whole path (``fnmatch``); no match means "detect".

    Example:
        >>> reader_for("drop/CH8.csv", {"*.res": "arbin", "CH*.csv": "arbin"})
        'arbin'
    """
    if reader is None or isinstance(reader, str):
        return reader
    file = Path(path)
    return next((name for pattern, name in reader.items()
                 if fnmatch.fnmatch(file.name, pattern) or fnmatch.fnmatch(str(file), pattern)), None)


def _is_arbin_underscored(header: str) -> bool:
    """Arbin exports written with underscores (``Test_Time``, ``Step_Index``), which ionworksdata's sniff misses."""
    folded = header.replace("_", " ").lower()
    return all(name in folded for name in ("test time", "step index", "cycle index", "voltage", "current"))


def detect_format(path: str | Path) -> str:
    """The reader name for a file, from its extension and first lines.

    Raises:
        UnsupportedCyclerFile: the file is in no format any installed reader knows.

    Example:
        >>> detect_format("runs/test_2.ndax")
        'neware nda'
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix in (".nda", ".ndax"):
        return NEWARE_BINARY
    if suffix == ".mpr":
        return BIOLOGIC_MPR
    if suffix == ".parquet":
        try:
            columns = set(pl.read_parquet_schema(file))
        except (pl.exceptions.PolarsError, OSError):
            raise InvalidMeasurementError("Could not read the file as parquet: it is truncated or damaged",
                                          file=str(file)) from None
        if STANDARD_COLUMNS <= columns:
            return IONWORKS
    elif suffix not in (".res", ".xls", ".xlsx"):
        lines = head_lines(file)
        first = lines[0] if lines else ""
        header = {c.strip().strip('"') for c in first.split(separator_of(first))}
        if STANDARD_COLUMNS <= header:
            return IONWORKS
        if _is_arbin_underscored(first):
            return "arbin"
    try:
        return detect_reader(file)
    except ValueError:
        raise UnsupportedCyclerFile(
            "Not a cycler format any installed reader recognises", file=str(file), format="unknown",
            remedy=f"Pass reader= with one of {reader_names()} (per file: reader={{'*.csv': 'arbin'}})",
        ) from None


def _require_tools(reader: str, file: Path) -> None:
    """Fail early, saying what to install, where a reader needs a tool or extra that is missing."""
    if reader in ("arbin", "arbin res") and file.suffix.lower() == ".res" and shutil.which("mdb-export") is None:
        raise UnsupportedCyclerFile(
            "Arbin .res files are Access databases, read with mdbtools' mdb-export, which is not installed",
            file=str(file), format="Arbin .res",
            remedy="Install the system package mdbtools (apt-get install mdbtools; brew install mdbtools), "
                   "or export the test from Arbin MITS Pro as CSV",
        )
    if reader == BIOLOGIC_MPR:
        try:
            import galvani  # noqa: F401
        except ImportError:
            raise UnsupportedCyclerFile(
                "BioLogic .mpr files are read with galvani, which is not installed", file=str(file),
                format="BioLogic .mpr",
                remedy="pip install 'ionworks-prefect[biologic-mpr]' (galvani, GPLv3+), or export the data "
                       "from EC-Lab as .mpt text",
            ) from None


def _text_fixes(file: Path, reader: str) -> tuple[bool, bool]:
    """Whether the file's lines are wrapped in quotes, and whether its numbers use decimal commas."""
    if file.suffix.lower() in (".parquet", ".res", ".xls", ".xlsx", ".nda", ".ndax", ".mpr"):
        return False, False
    lines = head_lines(file)
    data = [line for line in lines[len(lines) // 2:] if line.strip()]
    quoted = bool(data) and all(line.startswith('"') and line.rstrip().endswith('"') for line in data[-20:])
    comma = False
    if reader not in _READS_DECIMAL_COMMAS and data and separator_of(data[-1]) != ",":
        fields = [f.strip() for line in data[-50:] for f in re.split(r"[\t;]", line)]
        comma = any(DECIMAL_COMMA.fullmatch(f) for f in fields) and not any(
            _DECIMAL_POINT.fullmatch(f) for f in fields)
    return quoted, comma


@contextmanager
def _normalised(file: Path, reader: str) -> Iterator[Path]:
    """The file, or a temporary copy with line-wrapping quotes removed and decimal commas made points.

    Written chunk by chunk, so a large file is never held in memory. Both quirks defeat ionworksdata's
    readers: a Novonix export re-saved with every line quoted has no findable header, and a Maccor text
    export with decimal commas reads ``0,1377`` V as 1377 V (its reader takes the comma for a thousands
    separator).
    """
    quoted, comma = _text_fixes(file, reader)
    if not (quoted or comma):
        yield file
        return
    with tempfile.TemporaryDirectory(prefix="iwp-read-") as tmp:
        copy = Path(tmp) / file.name
        with open(file, "rb") as source, open(copy, "wb") as target:
            rest = b""
            while chunk := source.read(_CHUNK_BYTES):
                data = rest + chunk
                cut = data.rfind(b"\n") + 1  # whole lines only, so a line's quotes are never split
                target.write(_fix(data[:cut], quoted, comma))
                rest = data[cut:]
            target.write(_fix(rest, quoted, comma))
        yield copy


def _fix(chunk: bytes, quoted: bool, comma: bool) -> bytes:
    if quoted:
        chunk = _QUOTED_LINE.sub(b"", chunk)
    return chunk.replace(b",", b".") if comma else chunk


_TRANSLATIONS = (
    ("Could not identify current units", "no current column was found (looked for current in A, mA or mA/cm2)"),
    ("new-line character seen in unquoted field", "the file is binary, not text"),
    ("Could not find header row", "no column header was found where this format puts it"),
    ("Could not find data header row", "no column header was found where this format puts it"),
    ("out of bounds for axis 0 with size 0", "the file has no data rows"),
    ("File out of specification", "it is truncated or damaged"),
)


def _reason(exc: Exception) -> str:
    """A vendor reader's failure in words a person can act on, without library internals."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for fragment, meaning in _TRANSLATIONS:
        if fragment in message:
            return meaning
    if match := POLARS_PARSE.search(message):
        return f"column {match['column']!r} holds the text {match['value']!r} where numbers are expected"
    return message


def read_measurement_file(path: str | Path, *, reader: ReaderChoice = None,
                          options: Optional[dict[str, Any]] = None) -> pl.DataFrame:
    """Read a cycler file into an Ionworks time-series frame (discharge current positive).

    Args:
        path: the file.
        reader: a reader name (see :func:`reader_names`), or a mapping of glob pattern -> reader name; None or
            no matching pattern detects the format (:func:`detect_format`).
        options: reader options passed to ionworksdata, e.g. ``{"sheets": {"type": "name", "value":
            "record"}}`` to choose a Neware workbook sheet.

    Returns:
        The time series, with ``Time [s]``, ``Current [A]``, ``Voltage [V]``, ``Step count`` and what else
        the format carries.

    Raises:
        UnsupportedCyclerFile: no installed reader reads the file; the message says what to install or pass.
        InvalidMeasurementError: the file could not be read; the message says why (file, column, row).

    Example:
        >>> read_measurement_file("runs/cell7_rpt.mpt").columns[:3]
        ['Time [s]', 'Current [A]', 'Voltage [V]']
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise InvalidMeasurementError("Measurement file not found", file=str(file))
    if file.stat().st_size == 0:
        raise InvalidMeasurementError("The file is empty", file=str(file))
    name = (reader_for(file, reader) or detect_format(file)).lower()
    known = reader_names()
    if name not in known:
        raise InvalidMeasurementError(f"Unknown reader {name!r}; readers: {known}", file=str(file))
    _require_tools(name, file)
    try:
        if name == IONWORKS:
            return pl.read_parquet(file) if file.suffix.lower() == ".parquet" else read_ionworks_csv(file)
        with _normalised(file, name) as readable:
            return time_series(readable, reader=name, options=options)
    except InvalidMeasurementError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise InvalidMeasurementError(f"Could not read the file as {name}: {_reason(exc)}", file=str(file)) from exc
