"""Server-side processing of an uploaded time series: check it, derive its steps and cycles, fingerprint it.

After ``confirm-upload`` a measurement moves ``pending -> running -> ready | failed``. Processing reads
``<id>/time_series.parquet``, checks the columns Ionworks needs (``Time [s]``, ``Current [A]``, ``Voltage [V]``,
``Step count``) and that time never runs backwards, then writes ``<id>/steps.parquet`` (derived with
``ionworksdata.steps.summarize`` unless the client uploaded its own) and ``<id>/cycles.parquet``
(``ionworksdata.cycle_metrics``; empty when the steps carry no capacities). A rejected upload ends ``failed``
with ``processing_error`` naming the file, column or row.

Example:
    >>> processor = MeasurementProcessor(store, storage); processor.start()
    >>> processor.run(measurement_id)        # inline, for small uploads
    >>> processor.submit(measurement_id)     # in a background thread, for large ones
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .errors import ApiError
from .storage import Storage
from .store import Store

TIME, CURRENT, VOLTAGE, STEP = "Time [s]", "Current [A]", "Voltage [V]", "Step count"
REQUIRED_COLUMNS = (TIME, CURRENT, VOLTAGE, STEP)
FREQUENCY = "Frequency [Hz]"
TIME_SERIES, STEPS, CYCLES = "time_series.parquet", "steps.parquet", "cycles.parquet"
# Uploads up to this many rows are processed before confirm-upload answers (well under 0.5 s); larger ones
# are processed in the background while the client polls.
INLINE_ROW_LIMIT = 200_000
IN_FLIGHT = ("pending", "running")
#: Columns step derivation reads: ``ionworksdata.transform.set_capacity`` / ``set_energy`` and
#: ``ionworksdata.steps.summarize`` (which ignores every other column).
DERIVATION_COLUMNS = frozenset({
    TIME, CURRENT, VOLTAGE, STEP, FREQUENCY, "Capacity [A.h]", "Discharge capacity [A.h]", "Charge capacity [A.h]",
    "Energy [W.h]", "Discharge energy [W.h]", "Charge energy [W.h]", "Power [W]", "Cycle from cycler",
    "Step from cycler", "Frame", "Stoichiometry", "SOC",
})
KIND = "cell_measurement"


class UploadRejected(Exception):
    """An upload Ionworks would refuse; the message names the file, column or row."""


def object_key(measurement_id: str, filename: str) -> str:
    """The storage key of one of a measurement's files."""
    return f"{measurement_id}/{filename}"


def parquet_row_count(path: Path) -> int | None:
    """Rows in a Parquet file from its footer alone, or ``None`` if it is not readable Parquet."""
    try:
        return int(pl.scan_parquet(path).select(pl.len()).collect().item())
    except (pl.exceptions.PolarsError, OSError):
        return None


def read_time_series(path: Path) -> pl.DataFrame:
    """The columns steps are derived from (:data:`DERIVATION_COLUMNS`), checked; raises :class:`UploadRejected`
    naming what is wrong. The other columns are only hashed (:func:`file_digest`), one at a time."""
    if not path.is_file():
        raise UploadRejected(f"{TIME_SERIES} was not uploaded")
    try:
        columns = list(pl.read_parquet_schema(path))
        # One column at a time, each into one buffer: ionworksdata reads columns with to_numpy, which copies
        # a column of several chunks whole at every call.
        frame = pl.DataFrame([pl.read_parquet(path, columns=[name])[name].rechunk()
                              for name in columns if name in DERIVATION_COLUMNS])
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UploadRejected(f"{TIME_SERIES} could not be read as Parquet: {exc}") from None
    check_time_series(frame, columns)
    return frame


def check_time_series(frame: pl.DataFrame, columns: list[str] | None = None) -> None:
    """Required columns present and numeric, time known and never decreasing (EIS rows may lack time).

    ``columns`` names all the upload's columns when ``frame`` holds only some of them.
    """
    if frame.height == 0:
        raise UploadRejected(f"{TIME_SERIES} has no rows")
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        listed = ", ".join(f"'{name}'" for name in missing)
        raise UploadRejected(f"Required column {listed} is missing from {TIME_SERIES} "
                             f"(columns: {columns or frame.columns})")
    for name in REQUIRED_COLUMNS:
        if not frame[name].dtype.is_numeric():
            raise UploadRejected(f"Column '{name}' must be numeric, found {frame[name].dtype}")
    steps = frame[STEP]
    if steps.null_count():
        raise UploadRejected(f"Column '{STEP}' has no value at row {_first(steps.is_null())}")
    time = frame[TIME].cast(pl.Float64).fill_nan(None)
    eis = frame[FREQUENCY].is_not_null() if FREQUENCY in frame.columns else pl.repeat(False, frame.height, eager=True)
    untimed = time.is_null() & ~eis
    if untimed.any():
        raise UploadRejected(f"Column '{TIME}' has no value at row {_first(untimed)} (only EIS rows may omit time)")
    # Forward-filled, each timed row is compared with the last timed row before it (EIS rows carry it along).
    carried = time.forward_fill()
    backwards = carried.diff() < 0
    if backwards.any():
        row = _first(backwards)
        previous = _first(time.head(row).is_not_null().reverse())
        raise UploadRejected(
            f"Column '{TIME}' must be monotonically non-decreasing: at row {row} time is {time[row]:g} s,"
            f" before the {carried[row - 1]:g} s of row {row - 1 - previous}"
        )


def _first(mask: pl.Series) -> int:
    return int(mask.arg_true()[0])


def data_digest(frame: pl.DataFrame) -> str:
    """SHA-256 over the frame's values by column name, independent of the Parquet writer and of int/float widths.

    Example:
        >>> data_digest(pl.DataFrame({"a": [1, 2]})) == data_digest(pl.DataFrame({"a": [1.0, 2.0]}))
        True
    """
    return _digest(frame[name] for name in sorted(frame.columns))


def file_digest(path: Path, loaded: pl.DataFrame) -> str:
    """:func:`data_digest` of the Parquet file at ``path``, taking the columns ``loaded`` holds from it and
    reading each other column on its own, so the whole file is never in memory at once."""
    names = sorted(pl.read_parquet_schema(path))
    return _digest(loaded[name] if name in loaded.columns else pl.read_parquet(path, columns=[name])[name]
                   for name in names)


def _digest(columns: Iterable[pl.Series]) -> str:
    digest = hashlib.sha256()
    for column in columns:
        digest.update(json.dumps(column.name).encode())
        if column.dtype.is_numeric():
            digest.update(b"n")
            # Buffers hashed in place chunk by chunk (float64, little-endian on every supported platform): the
            # same bytes as the whole column's, never joined into one copy.
            chunks = column.get_chunks()
            for chunk in chunks:
                digest.update(memoryview(np.ascontiguousarray(chunk.cast(pl.Float64).fill_null(np.nan).to_numpy(),
                                                              dtype="<f8")))
            for chunk in chunks:
                digest.update(memoryview(chunk.is_null().to_numpy()))
        else:
            digest.update(b"v")
            digest.update(json.dumps(column.to_list(), default=str).encode())
    return digest.hexdigest()


def derive_steps(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per step (``ionworksdata.steps.summarize``), with capacities integrated when the upload has none."""
    from ionworksdata import steps, transform

    work = frame
    if "Discharge capacity [A.h]" not in work.columns and "Charge capacity [A.h]" not in work.columns:
        work = transform.set_capacity(work)
    if "Discharge energy [W.h]" not in work.columns and "Charge energy [W.h]" not in work.columns:
        work = transform.set_energy(work)
    return steps.summarize(work)


def cycle_table(steps: pl.DataFrame) -> pl.DataFrame:
    """Per-cycle metrics, or an empty table when the steps lack what they need (capacities, cycle count)."""
    from ionworksdata import cycle_metrics

    try:
        return cycle_metrics.get_cycle_metrics(steps)
    except (pl.exceptions.PolarsError, ValueError, KeyError, TypeError):
        return pl.DataFrame()


def columns_of(frame: pl.DataFrame) -> dict[str, list[Any]]:
    """A frame as the column-oriented JSON object the client turns back into a DataFrame."""
    return {name: frame[name].to_list() for name in frame.columns}


class MeasurementProcessor:
    """Runs processing for confirmed measurements, inline or on background threads, and resumes after a restart."""

    def __init__(self, store: Store, storage: Storage, workers: int = 2) -> None:
        self.store = store
        self.storage = storage
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="measurement-processing")
        self._digests = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="measurement-digest")

    def start(self) -> None:
        """Warm the ``ionworksdata`` import and re-queue work a previous run left unfinished."""
        self._pool.submit(_warm_up)
        for record in self.store.list(KIND):
            if record.get("processing_status") in IN_FLIGHT:
                self.store.update(KIND, record["id"], {"processing_status": "pending"})
                self.submit(record["id"])

    def close(self) -> None:
        """Finish running work; queued work stays ``pending`` and resumes on the next start."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._digests.shutdown(wait=True)

    def submit(self, measurement_id: str) -> Future:
        return self._pool.submit(self.run, measurement_id)

    def run(self, measurement_id: str) -> None:
        """Process one measurement now and record ``ready`` or ``failed`` on it."""
        record = self.store.find(KIND, measurement_id)
        if record is None or record.get("processing_status") not in IN_FLIGHT:
            return
        self.store.update(KIND, measurement_id, {"processing_status": "running", "processing_error": None})
        try:
            changes = {"processing_status": "ready", "processing_error": None, **self._process(record)}
        except UploadRejected as exc:
            changes = {"processing_status": "failed", "processing_error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a processing bug must end as "failed", never stay "running"
            changes = {"processing_status": "failed", "processing_error": f"Step derivation failed: {exc}"}
        try:
            self.store.update(KIND, measurement_id, changes)
        except ApiError:
            self.storage.delete_prefix(measurement_id)  # deleted while processing: drop what was written

    def _process(self, record: dict[str, Any]) -> dict[str, Any]:
        measurement_id = record["id"]
        frame = read_time_series(self.storage.path(object_key(measurement_id, TIME_SERIES)))
        # hashlib and polars release the GIL: hashed beside the step derivation.
        digest = self._digests.submit(file_digest, self.storage.path(object_key(measurement_id, TIME_SERIES)), frame)
        steps_path = self.storage.path(object_key(measurement_id, STEPS))
        if record.get("steps_source") == "uploaded":
            try:
                steps = pl.read_parquet(steps_path)
            except (pl.exceptions.PolarsError, OSError) as exc:
                raise UploadRejected(f"{STEPS} could not be read as Parquet: {exc}") from None
        else:
            steps = derive_steps(frame)
            _write(steps, steps_path)
        _write(cycle_table(steps), self.storage.path(object_key(measurement_id, CYCLES)))
        return {"row_count": frame.height, "step_count": steps.height, "data_digest": digest.result()}


def _write(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".write-")
    os.close(fd)
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def _warm_up() -> None:
    import ionworksdata.cycle_metrics  # noqa: F401
    import ionworksdata.steps  # noqa: F401
    import ionworksdata.transform  # noqa: F401
