"""Sandbox processing reads only the columns steps are derived from: the same steps and digest as from the whole
upload, on real cycler files and on frames carrying every optional column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ionworks_prefect.cycler_files import read_measurement_file
from ionworks_sandbox.measurement_processing import (
    DERIVATION_COLUMNS,
    data_digest,
    derive_steps,
    file_digest,
    read_time_series,
)

REAL = Path(__file__).parent / "data" / "real-cycler"
FILES = ["newarenda_test_2.ndax", "cellpy_neware_uio.csv", "beep_maccor_xTESLADIAG_000019_CH70.070",
         "cellpy_arbin_20160805_test001_45_cc_01.res", "cellpy_biologic_biol.mpr",
         "beep_novonix_test_Nova_Form-CH01-01_short.csv"]


def _with_everything(rows: int = 6_000) -> pl.DataFrame:
    """A cycler series with capacities, energies, cycler step and cycle numbers, temperature and text."""
    rng = np.random.default_rng(0)
    step = np.arange(rows) // 500
    current = np.choose(step % 4, [0.0, 1.0, 0.0, -1.0])
    return pl.DataFrame({
        "Time [s]": np.arange(rows, dtype=float), "Current [A]": current,
        "Voltage [V]": 3.7 - 0.1 * current + rng.normal(0, 1e-3, rows), "Step count": step,
        "Cycle count": step // 4, "Cycle from cycler": step // 4 + 1, "Step from cycler": step % 4 + 1,
        "Temperature [degC]": 25 + rng.normal(0, 0.1, rows), "Discharge capacity [A.h]": np.cumsum(current.clip(0)) / 3600,
        "Charge capacity [A.h]": np.cumsum((-current).clip(0)) / 3600, "Operator": ["lab"] * rows,
    })


@pytest.mark.parametrize("name", [*FILES, "synthetic"])
def test_steps_and_digest_from_the_derivation_columns_equal_those_from_the_whole_upload(name, tmp_path):
    frame = _with_everything() if name == "synthetic" else read_measurement_file(REAL / name)
    path = tmp_path / "time_series.parquet"
    frame.write_parquet(path)
    read = read_time_series(path)
    assert set(read.columns) == set(frame.columns) & DERIVATION_COLUMNS and read.height == frame.height
    assert_frame_equal(derive_steps(read), derive_steps(pl.read_parquet(path)))
    assert file_digest(path, read) == data_digest(pl.read_parquet(path))
