"""The client's cycler-data rules, with the sign vote's fits solved at once, agree with the client's own validator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from ionworks.validators import (
    MeasurementValidationError,
    positive_current_is_charge,
    validate_measurement_data,
    validate_time_missing_only_on_eis_rows,
    validate_time_monotonic,
)
from scipy.integrate import trapezoid

from ionworks_prefect import client_rules
from ionworks_prefect.client_rules import (
    FREQUENCY,
    _rest_tolerance,
    _scan_current,
    _sign_vote_passes,
    client_rule_issues,
    vote_windows,
)
from ionworks_prefect.cycler_files import read_measurement_file
from ionworks_prefect.measurement_checks import sanity_issues
from ionworks_prefect.step_fits import step_votes

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


def _windows(frame: pl.DataFrame, rows: int) -> list[tuple[np.ndarray, ...]]:
    return list(vote_windows(frame.lazy(), rows=rows))


def _whole_steps(frame: pl.DataFrame) -> tuple[np.ndarray, ...]:
    """The vote's steps over the whole series: one window."""
    [steps] = _windows(frame, rows=len(frame))
    return steps


def with_eis_rows(frame: pl.DataFrame, every: int = 997) -> pl.DataFrame:
    """Every ``every``-th row an EIS point: no time, a frequency."""
    eis = pl.int_range(pl.len()) % every == every // 2
    return frame.with_columns(pl.when(eis).then(None).otherwise(pl.col(TIME)).alias(TIME),
                              pl.when(eis).then(1000.0).otherwise(None).alias(FREQUENCY))


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
    "EIS rows": with_eis_rows(cycling(seed=7)),
    "reversed, EIS rows": with_eis_rows(cycling(seed=8)).with_columns(-pl.col(CURRENT)),
    # Steps of 256 rows: step 256 starts the second batch of rows read, and is the one skipped.
    "skipped step, between batches": cycling(steps=300, rows=256, seed=14).with_columns(
        pl.when(pl.col(STEP) >= 256).then(pl.col(STEP) + 1).otherwise(pl.col(STEP)).alias(STEP)),
    "long, no step column": cycling(steps=300, rows=256, seed=15).drop(STEP),
}


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_same_issues_as_the_client_validator(name):
    """Same codes, messages and payloads, in the same order."""
    frame = FRAMES[name]
    try:
        validate_measurement_data(frame)
        theirs = []
    except MeasurementValidationError as exc:
        theirs = exc.errors
    assert [(i.code, i.message, i.payload) for i in client_rule_issues(frame)] == [
        (i.code, i.message, i.payload) for i in theirs]


@pytest.mark.parametrize("name", ["newarenda_test_2.ndax", "cellpy_neware_uio.csv", "beep_maccor_xTESLADIAG_000019_CH70.070"])
def test_same_verdict_on_real_files_and_their_sign_flipped_copies(name):
    frame = read_measurement_file(REAL / name)
    flipped = frame.with_columns(-pl.col(CURRENT))
    assert [str(i.code) for i in client_rule_issues(frame)] == _client_codes(frame) == []
    assert [str(i.code) for i in client_rule_issues(flipped)] == _client_codes(flipped) != []


def _random_steps(seed: int, count: int = 600) -> tuple[np.ndarray, ...]:
    """Steps of every shape the vote meets: constant, noisy, quantised, decaying (CV) and erratic current; voltage
    following it either way, flat, or random; 2 to 2,000 rows; even and uneven sampling."""
    rng = np.random.default_rng(seed)
    times, currents, voltages, lengths, end = [], [], [], [], 0.0
    for _ in range(count):
        n = int(rng.choice([2, 3, 4, 5, 10, 50, 300, 2000]))
        x = np.linspace(0.0, 1.0, n)
        amp = float(rng.choice([1e-4, 1e-2, 1.0, 5.0]) * rng.choice([-1, 1]))
        current = [np.full(n, amp), amp * (1 + rng.normal(0, 1e-4, n)), amp * np.exp(-3 * x),
                   amp * (1 + rng.normal(0, 0.3, n)), amp * np.round(1 + rng.normal(0, 1e-3, n), 3),
                   amp * rng.uniform(-1, 2, n), np.where(x < 0.5, amp, 1.5 * amp)][rng.integers(0, 7)]
        voltage = [3.7 - np.sign(amp) * 0.5 * x + rng.normal(0, 5e-4, n),
                   3.7 + np.sign(amp) * 0.5 * x + rng.normal(0, 5e-4, n), np.full(n, 4.2),
                   3.7 - 0.05 * current + rng.normal(0, 1e-3, n), rng.uniform(2.5, 4.2, n)][rng.integers(0, 5)]
        step = float(rng.choice([0.1, 1.0, 10.0]))
        time = end + np.cumsum(step * (rng.uniform(0.5, 1.5, n) if rng.random() < 0.5 else np.ones(n)))
        end = time[-1]
        times.append(time), currents.append(current), voltages.append(voltage), lengths.append(n)
    ends = np.cumsum(lengths)
    return np.concatenate(times), np.concatenate(currents), np.concatenate(voltages), ends - lengths, ends


def _client_votes(time, current, voltage, starts, ends) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The client's per-step test and its loop's weight (``trapezoid(|I|, t)``), step by step."""
    votes = [positive_current_is_charge(time[s:e], current[s:e], voltage[s:e]) for s, e in zip(starts, ends)]
    moved = [trapezoid(np.abs(current[s:e]), time[s:e]) for s, e in zip(starts, ends)]
    return np.array([v[0] for v in votes]), np.array([v[1] for v in votes]), np.array(moved)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_steps_solved_at_once_vote_as_the_clients_per_step_test(seed):
    """Same verdict for every step; confidence within the client's bvls tolerance (it stops near the optimum the
    closed form finds exactly: a few 1e-4 on steps of a handful of rows, far less elsewhere)."""
    steps = _random_steps(seed)
    is_charge, p_value, moved = step_votes(*steps)
    client_is_charge, client_p_value, client_moved = _client_votes(*steps)
    assert (is_charge == client_is_charge).all() and np.allclose(moved, client_moved, rtol=1e-12, atol=0)
    assert np.abs(p_value - client_p_value).max() < 1e-3
    assert np.median(np.abs(p_value - client_p_value)) < 1e-9


@pytest.mark.parametrize("name", ["newarenda_test_2.ndax", "cellpy_neware_uio.csv", "beep_maccor_xTESLADIAG_000019_CH70.070",
                                  "cellpy_arbin_20160805_test001_45_cc_01.res", "cellpy_biologic_biol.mpr"])
def test_all_steps_solved_at_once_vote_as_the_client_on_real_files(name):
    frame = read_measurement_file(REAL / name)
    for data in (frame, frame.with_columns(-pl.col(CURRENT))):
        steps = _whole_steps(data)
        is_charge, p_value, moved = step_votes(*steps)
        client_is_charge, client_p_value, client_moved = _client_votes(*steps)
        assert (is_charge == client_is_charge).all() and np.abs(p_value - client_p_value).max() < 1e-9
        assert np.allclose(moved, client_moved, rtol=1e-12, atol=0)


def test_the_vote_on_a_large_cycler_series_matches_the_client():
    """Exactly constant currents (the fit's current column collinear with its intercept) on 500 steps."""
    frame = cycling(steps=500, rows=400, seed=6)
    steps = _whole_steps(frame)
    is_charge, p_value, _ = step_votes(*steps)
    client_is_charge, client_p_value, _ = _client_votes(*steps)
    assert (is_charge == client_is_charge).all() and np.abs(p_value - client_p_value).max() < 1e-9
    assert _sign_vote_passes(frame) and not _sign_vote_passes(frame.with_columns(-pl.col(CURRENT)))


WINDOWED = {"cycling": cycling(steps=500, rows=400, seed=9), "EIS rows": with_eis_rows(cycling(steps=200, seed=10)),
            "no step column": cycling(steps=200, seed=11).drop(STEP),
            "one long step": pl.concat([cycling(steps=4, rows=20_000, seed=12), cycling(steps=40, seed=13)
                                        .with_columns(pl.col(TIME) + 80_000.0, pl.col(STEP) + 4)])}


@pytest.mark.parametrize("name", sorted(WINDOWED))
def test_windows_of_whole_steps_vote_as_the_whole_series(name):
    """The vote streams current and voltage: windows of 1,000 rows hold the same steps, each whole, with the
    same votes, bit for bit, as the series read at once."""
    frame = WINDOWED[name]
    whole = _whole_steps(frame)
    windows = _windows(frame, rows=1000)
    assert len(windows) > 5
    longest = int((whole[4] - whole[3]).max())
    assert all(len(w[1]) <= 2 * 1000 + longest for w in windows)
    for k in (0, 1, 2):  # each step's first and last time, current and voltage
        for edge in (lambda w: w[3], lambda w: w[4] - 1):
            assert np.array_equal(np.concatenate([w[k][edge(w)] for w in windows]), whole[k][edge(whole)],
                                  equal_nan=True)
    votes = [step_votes(*w) for w in windows]
    for k, value in enumerate(step_votes(*whole)):
        assert np.array_equal(np.concatenate([v[k] for v in votes]), value)


@pytest.mark.parametrize("seed", range(4))
def test_the_sanity_checks_fail_every_series_the_clients_monotonic_check_fails(seed):
    """client_rule_issues leaves the client's validate_time_monotonic out: the sanity checks run first and fail
    any decrease between consecutive timed rows, which covers the client's decrease beyond 1e-12 s."""
    rng = np.random.default_rng(seed)
    base = with_eis_rows(cycling(steps=8, rows=50, seed=seed), every=37)
    failed_by_client = 0
    for _ in range(60):
        row, drop = int(rng.integers(1, len(base))), float(rng.choice([1e-13, 1e-11, 1e-6, 0.5, 3.0]))
        time = base.get_column(TIME).to_numpy().copy()
        time[row:] -= 1.0 + drop  # rows are 1 s apart: the time falls by about `drop` at `row`
        frame = base.with_columns(pl.Series(TIME, time, nan_to_null=True))
        client = validate_time_monotonic(frame)
        assert any(issue["check"] == "time_monotonic" for issue in sanity_issues(frame)) or not client
        failed_by_client += bool(client)
    assert failed_by_client > 20


@pytest.mark.parametrize("seed", range(4))
def test_the_sanity_checks_fail_every_series_with_a_time_missing_off_eis_rows(seed):
    """client_rule_issues leaves the client's validate_time_missing_only_on_eis_rows out: the sanity checks fail
    a row with neither a time nor a frequency, and a NaN time or frequency as not finite."""
    rng = np.random.default_rng(seed)
    base = with_eis_rows(cycling(steps=8, rows=50, seed=seed), every=37)
    failed_by_client = 0
    for _ in range(40):
        rows = rng.integers(0, len(base), size=int(rng.integers(1, 4)))
        time = base.get_column(TIME).to_numpy().copy()
        frequency = base.get_column(FREQUENCY).to_numpy().copy()
        time[rows] = np.nan
        frequency[rows] = rng.choice([np.nan, 1000.0], size=len(rows))
        for nan_is_null in (True, False):
            frame = base.with_columns(pl.Series(TIME, time, nan_to_null=nan_is_null),
                                      pl.Series(FREQUENCY, frequency, nan_to_null=nan_is_null))
            client = validate_time_missing_only_on_eis_rows(frame)
            assert sanity_issues(frame) or not client
            failed_by_client += bool(client)
    assert failed_by_client > 20


@pytest.mark.parametrize("seed", range(6))
def test_the_rest_tolerance_is_the_clients_with_or_without_reading_the_current_whole(seed, monkeypatch):
    """``min(1e-3, max(0.02 * percentile(|I|, 95), 1e-12))``, as the client takes it, bit for bit: its full 1e-3 A
    is known without the percentile when few enough currents are small, and taken over the whole current
    otherwise (both ways are met here)."""
    whole = []
    monkeypatch.setattr(client_rules, "_rest_tolerance",
                        lambda *args: whole.append(1) or _rest_tolerance(*args))
    rng = np.random.default_rng(seed)
    for trial in range(40):
        n = int(rng.choice([1, 2, 3, 20, 101, 5000]))
        scale = float(rng.choice([1e-6, 1e-3, 0.04, 0.05, 0.051, 0.06, 1.0]))
        current = scale * [np.ones(n), rng.uniform(0, 2, n), np.round(rng.uniform(0, 2, n), 1)][trial % 3]
        current[rng.random(n) < rng.uniform(0, 0.2)] = 0.0
        time = np.arange(n, dtype=float)
        time[rng.random(n) < 0.02] = np.nan  # EIS rows, left out
        frame = pl.DataFrame({TIME: time, CURRENT: current})
        timed = current[~np.isnan(time)]
        if len(timed) == 0:
            continue
        expected = min(1e-3, max(0.02 * float(np.percentile(np.abs(timed), 95)), 1e-12))
        assert _scan_current(frame.lazy(), False, 7)[:3] == (len(timed), expected, float(np.abs(timed).max()))
    assert 0 < len(whole) < 40 * 0.9
