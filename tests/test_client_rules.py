"""The client's cycler-data rules, with the sign vote in linear time, agree with the client's own validator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from ionworks.validators import MeasurementValidationError, validate_measurement_data

from ionworks_prefect.client_rules import client_rule_issues
from ionworks_prefect.cycler_files import read_measurement_file

from .measurement_frames import CURRENT, STEP, TIME, VOLTAGE, discharge_frame

REAL = Path(__file__).parent / "data" / "real-cycler"


def cycling(steps: int = 40, rows: int = 200, seed: int = 0) -> pl.DataFrame:
    """Rest, discharge, rest, charge, ...: discharge current positive, voltage following the current."""
    rng = np.random.default_rng(seed)
    step = np.repeat(np.arange(steps), rows)
    kind = step % 4
    position = np.tile(np.linspace(0.0, 1.0, rows), steps)
    voltage = np.choose(kind, [np.full(step.size, 4.05), 4.0 - 0.8 * position, np.full(step.size, 3.15),
                               3.2 + 0.8 * position])
    return pl.DataFrame({TIME: np.arange(step.size, dtype=float), CURRENT: np.choose(kind, [0.0, 1.0, 0.0, -1.0]),
                         VOLTAGE: voltage + rng.normal(0, 5e-4, step.size), STEP: step})


def _client_codes(frame: pl.DataFrame) -> list[str]:
    try:
        validate_measurement_data(frame)
    except MeasurementValidationError as exc:
        return [str(issue.code) for issue in exc.errors]
    return []


FRAMES = {
    "discharge": discharge_frame(),
    "reversed discharge": discharge_frame().with_columns(-pl.col(CURRENT)),
    "cycling": cycling(),
    "reversed cycling": cycling(seed=1).with_columns(-pl.col(CURRENT)),
    "unsigned cycling": cycling(seed=2).with_columns(pl.col(CURRENT).abs()),
    "rest only": discharge_frame().with_columns(pl.lit(0.0).alias(CURRENT)),
    "late start": cycling(seed=3).with_columns(pl.col(TIME) + 7.0),
    "skipped step": cycling(seed=4).with_columns(pl.when(pl.col(STEP) >= 10).then(pl.col(STEP) + 1)
                                                 .otherwise(pl.col(STEP)).alias(STEP)),
    "no step column": cycling(seed=5).drop(STEP),
}


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_same_issues_as_the_client_validator(name):
    frame = FRAMES[name]
    assert [str(issue.code) for issue in client_rule_issues(frame)] == _client_codes(frame)


@pytest.mark.parametrize("name", ["newarenda_test_2.ndax", "cellpy_neware_uio.csv", "beep_maccor_xTESLADIAG_000019_CH70.070"])
def test_same_verdict_on_real_files_and_their_sign_flipped_copies(name):
    frame = read_measurement_file(REAL / name)
    flipped = frame.with_columns(-pl.col(CURRENT))
    assert [str(i.code) for i in client_rule_issues(frame)] == _client_codes(frame) == []
    assert [str(i.code) for i in client_rule_issues(flipped)] == _client_codes(flipped) != []
