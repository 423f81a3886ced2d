"""The bad-input catalog: every bad input the plugin is known to meet, with the typed error it must raise.

Each :class:`BadInput` is one row: what is wrong, the operation given it (a public task's function, called the way
a flow calls it), the error class and a fragment of its message that names the file, column, row, field, id or
URL. ``tests/test_bad_inputs.py`` runs every row against the live sandbox and checks that nothing was left behind
and that a permanent error failed in under a second without a retry. ``docs/bad-inputs.md`` is rendered from this
table: ``python -m tests.bad_inputs`` writes it (a test checks it is current).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ionworks_prefect import (
    CellTarget,
    InvalidCredentials,
    InvalidMeasurementError,
    InvalidPipelineConfig,
    InvalidResourceId,
    InvalidSimulationConfig,
    IonworksCredentials,
    IonworksNotFound,
    IonworksRequestError,
    MeasurementSanityError,
    PollSchedule,
    ProtocolInvalid,
    UnsupportedCyclerFile,
    assign_to_study,
    convert_protocol,
    fetch_pipeline_result,
    fetch_simulation_result,
    find_protocol_inputs,
    run_simulation,
    submit_pipeline,
    upload_measurement,
    validate_protocol,
    wait_for_pipeline,
)

from .measurement_frames import CURRENT, STEP, TIME, VOLTAGE, discharge_frame
from .pipeline_configs import DN, TRUE, synthetic
from .protocols import C_RATE_INPUT, discharge

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md"
FAST = PollSchedule(first=0.05, factor=1.5, ceiling=0.2)
MODEL = "spm-chen2020"


@dataclass
class Env:
    """What the rows run against: the sandbox's credentials, one cell instance, a folder of bad files."""

    credentials: IonworksCredentials
    instance_id: str
    files: Path
    other_org_credentials: IonworksCredentials
    pipeline_id: str


@dataclass(frozen=True)
class BadInput:
    """One bad input: ``run(env)`` must raise ``error`` with ``says`` in its message."""

    id: str
    area: str
    what: str
    run: Callable[[Env], Any] = field(repr=False)
    error: type[Exception]
    says: str


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a task's function (async ones to completion)."""
    result = fn(*args, **kwargs)
    return asyncio.run(result) if inspect.iscoroutine(result) else result


# ---- frames ---------------------------------------------------------------------------------------------------


def _frame(change: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[], pl.DataFrame]:
    return lambda: change(discharge_frame())


def _set(column: str, row: int, value: Any) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def change(frame: pl.DataFrame) -> pl.DataFrame:
        values = frame[column].to_list()
        values[row] = value
        return frame.with_columns(pl.Series(column, values, dtype=pl.Float64 if isinstance(value, float) else None,
                                            strict=False))
    return change


def _text(column: str, row: int, text: str) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def change(frame: pl.DataFrame) -> pl.DataFrame:
        values = [str(v) for v in frame[column].to_list()]
        values[row] = text
        return frame.with_columns(pl.Series(column, values))
    return change


def _upload_frame(make: Callable[[], Any], name: str | None = "bad frame", **options: Any) -> Callable[[Env], Any]:
    return lambda env: call(upload_measurement.fn, make(), env.instance_id, name, env.credentials, **options)


FRAME_ROWS = [
    ("frame-nan-voltage", "NaN voltage in row 120", _frame(_set(VOLTAGE, 120, math.nan)), {},
     MeasurementSanityError, "column 'Voltage [V]', row 120"),
    ("frame-inf-current", "infinite current in row 150", _frame(_set(CURRENT, 150, math.inf)), {},
     MeasurementSanityError, "column 'Current [A]', row 150"),
    ("frame-neg-inf-time", "-inf time in row 7", _frame(_set(TIME, 7, -math.inf)), {},
     MeasurementSanityError, "column 'Time [s]', row 7"),
    ("frame-null-voltage", "missing voltage in row 33", _frame(_set(VOLTAGE, 33, None)), {},
     MeasurementSanityError, "column 'Voltage [V]', row 33"),
    ("frame-text-voltage", "the text 'OVL' among voltages", _frame(_text(VOLTAGE, 42, "OVL")), {},
     InvalidMeasurementError, "'OVL'"),
    ("frame-decimal-comma", "voltages written with decimal commas",
     _frame(lambda f: f.with_columns(pl.col(VOLTAGE).map_elements(lambda v: f"{v:.3f}".replace(".", ","),
                                                                   return_dtype=pl.Utf8))), {},
     InvalidMeasurementError, "decimal commas"),
    ("frame-duplicated-column", "a voltage column read twice ('Voltage [V]_duplicated_0')",
     _frame(lambda f: f.with_columns(pl.col(VOLTAGE).alias("Voltage [V]_duplicated_0"))), {},
     MeasurementSanityError, "'Voltage [V]' appears twice"),
    ("frame-voltage-7v", "7 V in a lithium-ion cell", _frame(_set(VOLTAGE, 10, 7.0)), {},
     MeasurementSanityError, "Voltage 7 V is outside the plausible 0-6 V"),
    ("frame-voltage-negative", "-1 V", _frame(_set(VOLTAGE, 11, -1.0)), {},
     MeasurementSanityError, "Voltage -1 V is outside"),
    ("frame-voltage-window", "4.1 V beyond the cell's 2.5-3.6 V window", _frame(lambda f: f),
     {"voltage_window": (2.5, 3.6)}, MeasurementSanityError, "outside the plausible 2.5-3.6 V"),
    ("frame-current-2000a", "2,000 A without a rated capacity", _frame(_set(CURRENT, 150, 2000.0)), {},
     MeasurementSanityError, "Current 2000 A is beyond 1000 A"),
    ("frame-current-over-50c", "500 A for a 5 A.h cell (100 C)", _frame(_set(CURRENT, 150, 500.0)),
     {"rated_capacity": 5.0}, MeasurementSanityError, "beyond 50 C of the rated 5 A.h"),
    ("frame-time-backwards", "time running backwards at row 200", _frame(_set(TIME, 200, 5.0)), {},
     MeasurementSanityError, "Time goes backwards"),
    ("frame-time-hours", "time in hours", _frame(lambda f: f.with_columns(pl.col(TIME) / 3600)), {},
     MeasurementSanityError, "looks like hours"),
    ("frame-time-microseconds", "time in microseconds", _frame(lambda f: f.with_columns(pl.col(TIME) * 1e6)), {},
     MeasurementSanityError, "looks like milliseconds"),
    ("frame-time-offset", "time starting at 100 s", _frame(lambda f: f.with_columns(pl.col(TIME) + 100)), {},
     InvalidMeasurementError, "Time [s]"),
    ("frame-sign-reversed", "discharge current negative (charge-positive convention)",
     _frame(lambda f: f.with_columns(-pl.col(CURRENT))), {}, InvalidMeasurementError, "Current [A]"),
    ("frame-steps-not-sequential", "step counts 0, 5, 2", _frame(lambda f: f.with_columns(
        pl.col(STEP).replace({1: 5}))), {}, InvalidMeasurementError, "Step count"),
    ("frame-no-rows", "an empty frame", _frame(lambda f: f.head(0)), {}, InvalidMeasurementError, "no rows"),
    ("frame-no-time", "no 'Time [s]' column", _frame(lambda f: f.drop(TIME)), {}, InvalidMeasurementError,
     "column 'Time [s]'"),
    ("frame-no-voltage", "no 'Voltage [V]' column", _frame(lambda f: f.drop(VOLTAGE)), {}, InvalidMeasurementError,
     "column 'Voltage [V]'"),
    ("frame-step-column-only", "a dict of lists with a time column only", lambda: {"Time [s]": [0.0, 1.0]}, {},
     InvalidMeasurementError, "column 'Current [A]'"),
    ("frame-pandas-nan", "a pandas frame with NaN current in row 99",
     lambda: _set(CURRENT, 99, math.nan)(discharge_frame()).to_pandas(), {}, MeasurementSanityError,
     "column 'Current [A]', row 99"),
    ("frame-not-a-frame", "the number 42 instead of a frame", lambda: 42, {},
     InvalidMeasurementError, "must be a polars or pandas DataFrame or a file path"),
    ("frame-no-name", "a frame without a measurement name", _frame(lambda f: f), {"name": None},
     InvalidMeasurementError, "A measurement name is required"),
    ("frame-cycles-without-column", "cycles= on data without 'Cycle count'", _frame(lambda f: f),
     {"cycles": (1, 2)}, InvalidMeasurementError, "'Cycle count'"),
    ("frame-cycles-none-match", "cycles=(5, 6) of a one-cycle test",
     _frame(lambda f: f.with_columns(pl.lit(1).alias("Cycle count"))), {"cycles": (5, 6)}, InvalidMeasurementError,
     "No rows in cycles 5-6"),
    ("frame-empty-name", "an empty measurement name", _frame(lambda f: f), {"name": "  "}, InvalidMeasurementError,
     "name: a measurement name must be a non-empty string"),
    ("frame-tag-too-long", "a 51-character tag", _frame(lambda f: f), {"tags": ["x" * 51]}, InvalidMeasurementError,
     "tags[0]"),
    ("frame-too-many-tags", "50 extra tags (the digest tag is the 51st)", _frame(lambda f: f),
     {"tags": [f"t{i}" for i in range(50)]}, InvalidMeasurementError, "tags: 50 tags"),
    ("frame-tags-a-string", "tags given as one string", _frame(lambda f: f), {"tags": "rpt:RPT 3"},
     InvalidMeasurementError, "tags: must be a list of strings"),
    ("frame-empty-tag", "an empty tag", _frame(lambda f: f), {"tags": ["rpt:0", " "]}, InvalidMeasurementError,
     "tags[1]"),
]


def _frame_row(row: tuple) -> BadInput:
    slug, what, make, options, error, says = row
    options = dict(options)
    name = options.pop("name", "bad frame")
    return BadInput(slug, "frame", what, _upload_frame(make, name, **options), error, says)


# ---- cycler files ---------------------------------------------------------------------------------------------


def _csv(frame: pl.DataFrame) -> str:
    return frame.write_csv()


FILES: dict[str, Callable[[], bytes | str]] = {
    "text.csv": lambda: _csv(_text(VOLTAGE, 17, "ERR")(discharge_frame())),
    "nan.csv": lambda: _csv(_set(VOLTAGE, 55, math.nan)(discharge_frame())),
    "inf.csv": lambda: _csv(_set(CURRENT, 60, math.inf)(discharge_frame())),
    "high.csv": lambda: _csv(_set(VOLTAGE, 70, 9.5)(discharge_frame())),
    "backwards.csv": lambda: _csv(_set(TIME, 90, 1.0)(discharge_frame())),
    "header-only.csv": lambda: "Time [s],Current [A],Voltage [V]\n",
    "duplicate-header.csv": lambda: "Time [s],Voltage [V],Voltage [V]\n0,4.1,4.1\n1,4.1,4.1\n",
    "empty.csv": lambda: "",
    "garbage.csv": lambda: bytes(range(256)) * 8,
    "truncated.parquet": lambda: b"PAR1" + b"\x00" * 64,
    "mystery.xyz": lambda: "not a cycler file\n",
    "broken.mpt": lambda: "EC-Lab ASCII FILE\nNb header lines : 99\nnonsense\n",
    "broken.xlsx": lambda: b"PK\x03\x04 not really a workbook",
    "no-current.csv": lambda: _csv(discharge_frame().drop(CURRENT)),
    "decimal-comma.csv": lambda: "Time [s];Current [A];Voltage [V]\n0;0,0;4,10\n1;0,0;4,10\n2;1,0;4,05\n",
    "ragged.csv": lambda: "Time [s],Current [A],Voltage [V]\n0,0,4.1\n1,0\n2,0,4.1,9,9\n",
    "hours.csv": lambda: _csv(discharge_frame().with_columns(pl.col(TIME) / 3600)),
    "data.json": lambda: '{"Time [s]": [0, 1], "Voltage [V]": [4.1, 4.1]}',
}


def write_files(folder: Path) -> None:
    """Write every bad file of the catalog into ``folder`` (and an empty subfolder)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in FILES.items():
        content = make()
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    (folder / "a-folder.csv").mkdir(exist_ok=True)


def _upload_file(name: str, **options: Any) -> Callable[[Env], Any]:
    return lambda env: call(upload_measurement.fn, str(env.files / name), env.instance_id, None, env.credentials,
                            **options)


FILE_ROWS = [
    ("file-text", "text.csv", {}, "the text 'ERR' in the voltage column, row 17", InvalidMeasurementError, "'ERR'"),
    ("file-nan", "nan.csv", {}, "NaN voltage in row 55", MeasurementSanityError, "row 55"),
    ("file-inf", "inf.csv", {}, "infinite current in row 60", MeasurementSanityError, "row 60"),
    ("file-high-voltage", "high.csv", {}, "9.5 V in row 70", MeasurementSanityError, "file '"),
    ("file-backwards", "backwards.csv", {}, "time back to 1 s at row 90", MeasurementSanityError, "Time goes backwards"),
    ("file-header-only", "header-only.csv", {}, "a header and no rows", InvalidMeasurementError, "header-only.csv"),
    ("file-duplicate-header", "duplicate-header.csv", {"reader": "csv"}, "read as plain CSV: no current column",
     InvalidMeasurementError, "Could not find a Current column"),
    ("file-empty", "empty.csv", {}, "an empty file", InvalidMeasurementError, "The file is empty"),
    ("file-garbage", "garbage.csv", {}, "binary garbage named .csv", InvalidMeasurementError, "garbage.csv"),
    ("file-truncated-parquet", "truncated.parquet", {}, "a truncated parquet file", InvalidMeasurementError,
     "truncated or damaged"),
    ("file-unknown-format", "mystery.xyz", {}, "an unknown extension and content", UnsupportedCyclerFile,
     "mystery.xyz"),
    ("file-broken-mpt", "broken.mpt", {}, "a BioLogic header with nothing after it", InvalidMeasurementError,
     "broken.mpt"),
    ("file-broken-xlsx", "broken.xlsx", {}, "a zip signature that is no workbook", InvalidMeasurementError,
     "broken.xlsx"),
    ("file-no-current", "no-current.csv", {}, "no current column", InvalidMeasurementError,
     "file '"),
    ("file-duplicate-header-detected", "duplicate-header.csv", {}, "a header that matches no reader",
     UnsupportedCyclerFile, "Not a cycler format any installed reader recognises"),
    ("file-ragged", "ragged.csv", {}, "rows of 3, 2 and 5 fields", InvalidMeasurementError, "ragged.csv"),
    ("file-hours", "hours.csv", {}, "time in hours", MeasurementSanityError, "looks like hours"),
    ("file-json", "data.json", {}, "a JSON file", InvalidMeasurementError, "data.json"),
    ("file-missing", "not-there.csv", {}, "a path that does not exist", InvalidMeasurementError,
     "Measurement file not found"),
    ("file-directory", "a-folder.csv", {}, "a directory named like a file", InvalidMeasurementError, "a-folder.csv"),
    ("file-unknown-reader", "nan.csv", {"reader": "maccor9000"}, "reader='maccor9000'", InvalidMeasurementError,
     "Unknown reader 'maccor9000'"),
    ("file-wrong-reader", "nan.csv", {"reader": "biologic_mpt"}, "a CSV read as BioLogic .mpt",
     InvalidMeasurementError, "nan.csv"),
    ("file-decimal-comma", "decimal-comma.csv", {"reader": "csv"}, "semicolons and decimal commas read as plain CSV",
     InvalidMeasurementError, "decimal-comma.csv"),
]


def _file_row(row: tuple) -> BadInput:
    slug, name, options, what, error, says = row
    return BadInput(slug, "cycler file", f"{name}: {what}", _upload_file(name, **options), error, says)


# ---- pipeline configs -----------------------------------------------------------------------------------------


def _fit(parameter: dict[str, Any], *, data: Any = "db:00000000-0000-0000-0000-000000000000",
         name: str = DN, element: dict[str, Any] | None = None) -> dict[str, Any]:
    fit = {"element_type": "data_fit",
           "objectives": {"1C": {"type": "CurrentDriven", "data": data, "options": {"model": {"type": "SPMe"}}}},
           "parameters": {name: parameter}, "cost": {"type": "RMSE"}, "optimizer": {"type": "DummyOptimizer"},
           **(element or {})}
    return {"elements": {"known": {"element_type": "entry", "values": {"Ambient temperature [K]": 298.15,
                                                                        "Positive particle diffusivity [m2.s-1]":
                                                                            TRUE["Positive particle diffusivity [m2.s-1]"]}},
                         "fit": fit}, "name": "bad fit"}


def _submit(config: Any, **options: Any) -> Callable[[Env], Any]:
    def run(env: Env) -> Any:
        made = config(env) if callable(config) else config
        return call(submit_pipeline.fn, made, env.credentials, base_dir=env.files, **options)
    return run


def _inline(rows: int) -> dict[str, list[float]]:
    frame = synthetic()
    times = np.arange(rows, dtype=float)
    return {"Time [s]": times.tolist(), "Current [A]": [float(frame[CURRENT][0])] * rows,
            "Voltage [V]": np.interp(times, frame[TIME].to_numpy(), frame[VOLTAGE].to_numpy()).tolist()}


def _big_file(env: Env, broken: bool = False) -> str:
    """A synthetic discharge of more than 1,000 rows as a CSV (``broken``: with a NaN voltage at row 1,100)."""
    frame = synthetic(period_s=1.0)
    if broken:
        frame = _set(VOLTAGE, 1100, math.nan)(frame)
    name = f"big{'-broken' if broken else ''}.csv"
    frame.write_csv(env.files / name)
    return f"file:{name}"


P = f"elements.fit.parameters.{DN}"
PIPELINE_ROWS = [
    ("pipeline-not-a-dict", "a list instead of a pipeline", [1, 2], {}, InvalidPipelineConfig,
     "must be an ionworks_schema.Pipeline or a dict"),
    ("pipeline-no-elements", "no elements", {"name": "empty"}, {}, InvalidPipelineConfig,
     "elements: a pipeline needs at least one element"),
    ("pipeline-empty-elements", "an empty elements mapping", {"elements": {}}, {}, InvalidPipelineConfig,
     "elements: a pipeline needs at least one element"),
    ("pipeline-unknown-element", "element_type 'magic'", {"elements": {"x": {"element_type": "magic"}}}, {},
     InvalidPipelineConfig, "magic"),
    ("pipeline-nan-initial", "initial value NaN", _fit({"initial_value": math.nan, "bounds": [1e-14, 1e-13]}), {},
     InvalidPipelineConfig, f"{P}.initial_value: must be a finite number"),
    ("pipeline-inf-initial", "initial value inf", _fit({"initial_value": math.inf}), {}, InvalidPipelineConfig,
     f"{P}.initial_value"),
    ("pipeline-neg-inf-initial", "initial value -inf", _fit({"initial_value": -math.inf, "bounds": [0, 1]}), {},
     InvalidPipelineConfig, f"{P}.initial_value"),
    ("pipeline-bounds-reversed", "bounds (1e-13, 1e-14)", _fit({"initial_value": 2e-14, "bounds": [1e-13, 1e-14]}),
     {}, InvalidPipelineConfig, f"{P}.bounds: the lower bound"),
    ("pipeline-bounds-equal", "bounds (1e-14, 1e-14)", _fit({"initial_value": 1e-14, "bounds": [1e-14, 1e-14]}), {},
     InvalidPipelineConfig, f"{P}.bounds"),
    ("pipeline-bounds-nan", "a NaN bound", _fit({"initial_value": 2e-14, "bounds": [math.nan, 1e-13]}), {},
     InvalidPipelineConfig, f"{P}.bounds"),
    ("pipeline-bounds-three", "three bounds", _fit({"initial_value": 2e-14, "bounds": [0, 1, 2]}), {},
     InvalidPipelineConfig, "bounds"),
    ("pipeline-log-zero-lower", "Log10 scale with a lower bound of 0",
     _fit({"initial_value": 2e-14, "bounds": [0.0, 1e-13], "transform": "Log10"}), {}, InvalidPipelineConfig,
     f"{P}.bounds: a Log10 (log-scale) parameter needs finite bounds above 0"),
    ("pipeline-log-negative", "Log scale with negative bounds",
     _fit({"initial_value": -0.5, "bounds": [-1.0, -0.1], "transform": "Log"}), {}, InvalidPipelineConfig,
     f"{P}.bounds: a Log (log-scale)"),
    ("pipeline-log-inf-upper", "Log10 scale with an infinite upper bound",
     _fit({"initial_value": 2e-14, "bounds": [1e-16, math.inf], "transform": "Log10"}), {}, InvalidPipelineConfig,
     f"{P}.bounds"),
    ("pipeline-log-negative-initial", "Log10 scale, no bounds, initial value -1",
     _fit({"initial_value": -1.0, "transform": "Log10"}), {}, InvalidPipelineConfig,
     f"{P}.initial_value: -1.0 is not above 0"),
    ("pipeline-initial-above", "initial value above the upper bound",
     _fit({"initial_value": 5e-13, "bounds": [1e-14, 1e-13]}), {}, InvalidPipelineConfig,
     f"{P}.initial_value: 5e-13 is outside the bounds"),
    ("pipeline-initial-below", "initial value below the lower bound",
     _fit({"initial_value": 1e-15, "bounds": [1e-14, 1e-13]}), {}, InvalidPipelineConfig,
     f"{P}.initial_value: 1e-15 is outside"),
    ("pipeline-initial-text", "initial value '2e-14' (text)", _fit({"initial_value": "2e-14"}), {},
     InvalidPipelineConfig, "initial_value"),
    ("pipeline-inline-1001", "1,001 inline rows", _fit({"initial_value": 2e-14, "bounds": [1e-14, 1e-13]},
                                                        data=_inline(1001)), {},
     InvalidPipelineConfig, "elements.fit.objectives.1C.data: inline time series has 1001 rows"),
    ("pipeline-file-missing", "file:missing.csv", _fit({"initial_value": 2e-14, "bounds": [1e-14, 1e-13]},
                                                       data="file:missing.csv"), {},
     InvalidPipelineConfig, "'file:missing.csv' not found"),
    ("pipeline-folder-empty", "folder: without time_series.csv", _fit(
        {"initial_value": 2e-14, "bounds": [1e-14, 1e-13]}, data="folder:a-folder.csv"), {},
     InvalidPipelineConfig, "'folder:a-folder.csv' cannot be read"),
    ("pipeline-big-file-no-cell", "a 3,600-row file without cell=",
     lambda env: _fit({"initial_value": 2e-14, "bounds": [1e-14, 1e-13]}, data=_big_file(env)), {},
     InvalidPipelineConfig, "has more than 1,000 rows, which cannot be sent inline; pass cell="),
    ("pipeline-big-file-broken", "a 3,600-row file with NaN voltage at row 1,100, to upload",
     lambda env: _fit({"initial_value": 2e-14, "bounds": [1e-14, 1e-13]}, data=_big_file(env, broken=True)),
     {"cell": "instance"}, MeasurementSanityError, "row 1100"),
    ("pipeline-small-file-broken", "a 300-row inlined file with NaN voltage in row 55",
     _fit({"initial_value": 2e-14, "bounds": [1e-14, 1e-13]}, data="file:nan.csv"), {}, InvalidPipelineConfig,
     "elements.fit.objectives.1C.data.Voltage [V][55]"),
    ("pipeline-inline-inf", "inline data with an infinite current in row 3",
     _fit({"initial_value": 2e-14, "bounds": [1e-14, 1e-13]},
          data={**_inline(10), "Current [A]": [5.0, 5.0, 5.0, math.inf, *[5.0] * 6]}), {}, InvalidPipelineConfig,
     "elements.fit.objectives.1C.data.Current [A][3]"),
    ("pipeline-unknown-parameter", "a fitted name no model has (server 422 with the closest names)",
     _fit({"initial_value": 2e-14, "bounds": [1e-14, 1e-13]}, name="Negative particle difusivity [m2.s-1]",
          data=_inline(50)), {}, IonworksRequestError, "closest known names"),
    ("pipeline-unknown-parameter-uploaded", "the same, with a 3,600-row file uploaded first (then removed)",
     lambda env: _fit({"initial_value": 2e-14, "bounds": [1e-14, 1e-13]}, name="Negative particle difusivity",
                      data=_big_file(env)), {"cell": "instance"}, IonworksRequestError, "closest known names"),
    ("pipeline-unknown-optimizer", "optimizer type 'Magic'", _fit({"initial_value": 2e-14},
                                                                   element={"optimizer": {"type": "Magic"}}), {},
     InvalidPipelineConfig, "Magic"),
    ("pipeline-unknown-cost", "cost type 'Median'", _fit({"initial_value": 2e-14}, element={"cost": {"type": "Median"}}),
     {}, InvalidPipelineConfig, "Median"),
    ("pipeline-no-objectives", "a data fit without objectives", _fit({"initial_value": 2e-14},
                                                                      element={"objectives": {}}), {},
     IonworksRequestError, "objectives"),
]


def _pipeline_row(row: tuple) -> BadInput:
    slug, what, config, options, error, says = row

    def run(env: Env) -> Any:
        resolved = {k: (env.instance_id if v == "instance" else v) for k, v in options.items()}
        return _submit(config, **resolved)(env)

    return BadInput(slug, "pipeline", what, run, error, says)


# ---- protocols and simulations --------------------------------------------------------------------------------

BAD_PROTOCOL = "steps:\n  - direction: Sideways\n    mode: C-rate\n    value: 1\n"
ONE_C = discharge(C_RATE_INPUT, 3.0)


def _simulation(**config: Any) -> Callable[[Env], Any]:
    base = {"parameterized_model": MODEL, "protocol_experiment": {"protocol": ONE_C, "name": "catalog discharge"},
            "experiment_parameters": {"C-rate": 1.0}}
    merged = {k: v for k, v in {**base, **config}.items() if v is not None}
    return lambda env: call(run_simulation.fn, merged, env.credentials, max_wait_seconds=5, poll_schedule=FAST)


PROTOCOL_ROWS = [
    ("protocol-invalid", "a step direction 'Sideways'", lambda env: call(
        validate_protocol.fn, BAD_PROTOCOL, env.credentials, raise_if_invalid=True), ProtocolInvalid, "Sideways"),
    ("protocol-not-yaml", "text that is no YAML mapping", lambda env: call(
        validate_protocol.fn, "::: [", env.credentials, raise_if_invalid=True), ProtocolInvalid, "not valid"),
    ("protocol-convert-invalid", "an invalid protocol to convert", lambda env: call(
        convert_protocol.fn, BAD_PROTOCOL, "maccor", env.credentials), ProtocolInvalid, "to maccor"),
    ("protocol-convert-unknown-target", "target 'cycler9000'", lambda env: call(
        convert_protocol.fn, ONE_C.replace(C_RATE_INPUT, "1"), "cycler9000", env.credentials), IonworksRequestError,
     "cycler9000"),
    ("protocol-convert-no-capacity", "neware needs the nominal capacity for C-rates", lambda env: call(
        convert_protocol.fn, ONE_C.replace(C_RATE_INPUT, "1"), "neware", env.credentials), ProtocolInvalid,
     "neware"),
    ("protocol-inputs-empty", "an empty protocol", lambda env: call(find_protocol_inputs.fn, "", env.credentials),
     IonworksRequestError, "protocol"),
]

SIMULATION_ROWS = [
    ("simulation-unknown-key", "a misspelt key 'protocl_id'", _simulation(protocl_id="x"), InvalidSimulationConfig,
     "protocl_id"),
    ("simulation-unknown-model", "a parameterized model that does not exist (its template is removed again)",
     _simulation(parameterized_model="00000000-0000-0000-0000-000000000000"), IonworksRequestError,
     "00000000-0000-0000-0000-000000000000"),
    ("simulation-two-protocols", "protocol_experiment and protocol_id", _simulation(protocol_id="abc"),
     InvalidSimulationConfig, "protocol"),
    ("simulation-no-protocol", "neither protocol_experiment nor protocol_id", _simulation(protocol_experiment=None),
     InvalidSimulationConfig, "protocol"),
    ("simulation-conditions", "conditions in a single simulation", _simulation(conditions=[{}]),
     InvalidSimulationConfig, "conditions"),
    ("simulation-invalid-protocol", "an invalid protocol", _simulation(
        protocol_experiment={"protocol": BAD_PROTOCOL, "name": "catalog bad"}), IonworksRequestError, "Sideways"),
    ("simulation-unknown-template", "protocol_id of no saved protocol", _simulation(
        protocol_experiment=None, protocol_id="00000000-0000-0000-0000-00000000abcd"), IonworksNotFound,
     "00000000-0000-0000-0000-00000000abcd"),
    ("simulation-not-a-dict", "a list instead of a config", lambda env: call(
        run_simulation.fn, [MODEL], env.credentials), InvalidSimulationConfig, "must be a dict"),
    ("simulation-doe-two-rows", "a two-run DOE given to run_simulation", _simulation(design_parameters_doe={
        "sampling": "grid", "rows": [{"type": "discrete", "name": "Ambient temperature [K]",
                                      "values": [288.15, 298.15]}]}), InvalidSimulationConfig, "2 simulations"),
]


# ---- ids -------------------------------------------------------------------------------------------------------

def _fetch_pipeline(pipeline_id: Any) -> Callable[[Env], Any]:
    return lambda env: call(fetch_pipeline_result.fn, pipeline_id, env.credentials)


ID_ROWS = [
    ("id-pipeline-empty", "pipeline id ''", _fetch_pipeline(""), InvalidResourceId, "non-empty string, got ''"),
    ("id-pipeline-blank", "pipeline id '   '", _fetch_pipeline("   "), InvalidResourceId, "got '   '"),
    ("id-pipeline-none", "pipeline id None", _fetch_pipeline(None), InvalidResourceId, "got None"),
    ("id-pipeline-number", "pipeline id 42", _fetch_pipeline(42), InvalidResourceId, "got 42"),
    ("id-pipeline-dot", "pipeline id '.'", _fetch_pipeline("."), InvalidResourceId, "'.' is not an Ionworks id"),
    ("id-pipeline-dotdot", "pipeline id '..'", _fetch_pipeline(".."), InvalidResourceId, "'..' is not"),
    ("id-pipeline-traversal", "pipeline id '../users/me' (escaped, one segment)", _fetch_pipeline("../users/me"),
     IonworksNotFound, "GET /pipelines/..%2Fusers%2Fme"),
    ("id-pipeline-query", "pipeline id 'abc def?x=1' (escaped)", _fetch_pipeline("abc def?x=1"), IonworksNotFound,
     "/pipelines/abc%20def%3Fx%3D1"),
    ("id-pipeline-unknown", "a pipeline id of no pipeline", _fetch_pipeline("00000000-0000-0000-0000-0000000000ff"),
     IonworksNotFound, "00000000-0000-0000-0000-0000000000ff"),
    ("id-wait-traversal", "waiting on '../users/me'", lambda env: call(
        wait_for_pipeline.fn, "../users/me", env.credentials, max_wait_seconds=5, poll_schedule=FAST),
     IonworksNotFound, "/pipelines/..%2Fusers%2Fme"),
    ("id-wait-empty", "waiting on ''", lambda env: call(
        wait_for_pipeline.fn, "", env.credentials, max_wait_seconds=5, poll_schedule=FAST), InvalidResourceId, "''"),
    ("id-simulation-traversal", "simulation id '../../healthz' (escaped)", lambda env: call(
        fetch_simulation_result.fn, "../../healthz", env.credentials), IonworksNotFound,
     "GET /simulations/..%2F..%2Fhealthz"),
    ("id-simulation-empty", "simulation id ''", lambda env: call(fetch_simulation_result.fn, "", env.credentials),
     InvalidResourceId, "simulation id"),
    ("id-cell-empty", "cell instance id ''", lambda env: call(
        upload_measurement.fn, discharge_frame(), "", "x", env.credentials), InvalidResourceId, "cell instance id"),
    ("id-cell-traversal", "cell instance id '../cell_specifications'", lambda env: call(
        upload_measurement.fn, discharge_frame(), "../cell_specifications", "x", env.credentials), IonworksNotFound,
     "/cell_instances/..%2Fcell_specifications/"),
    ("id-study-empty", "study id ''", lambda env: call(assign_to_study.fn, "", [], [], env.credentials),
     InvalidResourceId, "''"),
    ("id-study-measurement-empty", "measurement id '' to assign", lambda env: call(
        assign_to_study.fn, "s", [""], [], env.credentials), InvalidResourceId, "measurement id"),
    ("id-study-traversal", "study id '../projects'", lambda env: call(
        assign_to_study.fn, "../projects", ["00000000-0000-0000-0000-000000000001"], [], env.credentials),
     IonworksNotFound, "/studies/..%2Fprojects/"),
    ("id-other-organization", "another organization's key reading our pipeline", lambda env: call(
        fetch_pipeline_result.fn, env.pipeline_id, env.other_org_credentials), IonworksNotFound, "not found"),
]


# ---- credentials ----------------------------------------------------------------------------------------------


def _with(env: Env, **fields: Any) -> IonworksCredentials:
    base = {"api_key": env.credentials.api_key.get_secret_value(), "api_url": env.credentials.api_url,
            "project_id": env.credentials.project_id}
    return IonworksCredentials(**{**base, **fields})


def _without_key_in_environment(env: Env) -> Any:
    saved = {k: os.environ.pop(k) for k in ("IONWORKS_API_KEY", "IONWORKS_API_TOKEN") if k in os.environ}
    try:
        return call(upload_measurement.fn, discharge_frame(), env.instance_id, "x",
                    IonworksCredentials(api_url=env.credentials.api_url, project_id="p"))
    finally:
        os.environ.update(saved)


def _upload_with(credentials: Callable[[Env], Any]) -> Callable[[Env], Any]:
    return lambda env: call(upload_measurement.fn, discharge_frame(), env.instance_id, "x", credentials(env))


CREDENTIAL_ROWS = [
    ("credentials-bad-scheme", "api_url 'htp:/nowhere'", _upload_with(lambda env: _with(env, api_url="htp:/nowhere")),
     InvalidCredentials, "'htp:/nowhere'"),
    ("credentials-no-host", "api_url 'http:/nowhere'", _upload_with(lambda env: _with(env, api_url="http:/nowhere")),
     InvalidCredentials, "'http:/nowhere'"),
    ("credentials-no-scheme", "api_url 'api.ionworks.com'", _upload_with(
        lambda env: _with(env, api_url="api.ionworks.com")), InvalidCredentials, "'api.ionworks.com'"),
    ("credentials-ftp", "api_url 'ftp://files.example'", _upload_with(
        lambda env: _with(env, api_url="ftp://files.example")), InvalidCredentials, "'ftp://files.example'"),
    ("credentials-port-zero", "api_url 'http://127.0.0.1:0'", _upload_with(
        lambda env: _with(env, api_url="http://127.0.0.1:0")), InvalidCredentials, "'http://127.0.0.1:0'"),
    ("credentials-query", "api_url with a query", _upload_with(
        lambda env: _with(env, api_url="http://127.0.0.1:8000/?key=1")), InvalidCredentials, "?key=1"),
    ("credentials-unknown-block", "a saved block name that does not exist", _upload_with(lambda env: "no-such-block"),
     InvalidCredentials, "'no-such-block'"),
    ("credentials-empty-name", "a block name ''", _upload_with(lambda env: ""), InvalidCredentials, "an empty name"),
    ("credentials-wrong-type", "credentials=42", _upload_with(lambda env: 42), InvalidCredentials, "a int"),
    ("credentials-no-key", "no key and no token anywhere", _without_key_in_environment, InvalidCredentials,
     "No Ionworks credentials for"),
    ("credentials-wrong-key", "a key the server does not know (401)", _upload_with(
        lambda env: _with(env, api_key="not-a-key")), IonworksRequestError, "401"),
    ("credentials-cell-target-wrong-key", "a wrong key creating a CellTarget's cell", lambda env: call(
        upload_measurement.fn, discharge_frame(), CellTarget(specification="catalog", instance="c"), "x",
        _with(env, api_key="not-a-key")), IonworksRequestError, "401"),
]

CATALOG: list[BadInput] = [
    *(_frame_row(r) for r in FRAME_ROWS),
    *(_file_row(r) for r in FILE_ROWS),
    *(_pipeline_row(r) for r in PIPELINE_ROWS),
    *(BadInput(slug, "protocol", what, run, error, says) for slug, what, run, error, says in PROTOCOL_ROWS),
    *(BadInput(slug, "simulation", what, run, error, says) for slug, what, run, error, says in SIMULATION_ROWS),
    *(BadInput(slug, "id", what, run, error, says) for slug, what, run, error, says in ID_ROWS),
    *(BadInput(slug, "credentials", what, run, error, says) for slug, what, run, error, says in CREDENTIAL_ROWS),
]


def render() -> str:
    """``docs/bad-inputs.md``: the catalog as a table, one row per bad input."""
    lines = [
        "# Bad inputs",
        "",
        "Every bad input the plugin is known to meet, the typed error it raises and a fragment of the message.",
        "Generated from `tests/bad_inputs.py` (`python -m tests.bad_inputs`); `tests/test_bad_inputs.py` runs each",
        "row against the live sandbox over HTTP and checks that it raised that error, that nothing was left on the",
        "server (measurements, pending uploads, pipelines, simulations, templates, studies, cells), and that it",
        "failed in under a second without a retry. All errors derive from `IonworksPrefectError`.",
        "",
        f"{len(CATALOG)} bad inputs.",
        "",
        "| # | area | id | what is wrong | error | message names |",
        "|---|---|---|---|---|---|",
    ]
    for number, row in enumerate(CATALOG, 1):
        what = row.what.replace("|", "\\|")
        says = row.says.replace("|", "\\|").replace("`", "'")
        lines.append(f"| {number} | {row.area} | `{row.id}` | {what} | `{row.error.__name__}` | `{says}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC} ({len(CATALOG)} rows)")
