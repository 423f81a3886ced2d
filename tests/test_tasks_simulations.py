"""Simulation tasks against the live sandbox: single run, DOE batch, cached fetch, failures."""

from __future__ import annotations

import pytest
from prefect import flow

from ionworks_prefect import (
    InvalidSimulationConfig,
    PollSchedule,
    SimulationFailed,
    SimulationResult,
    fetch_simulation_result,
    run_simulation,
    run_simulation_batch,
)

from .protocols import C_RATE_INPUT, discharge

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")
FAST = PollSchedule(first=0.1, factor=1.5, ceiling=1.0)
MODEL = "spm-chen2020"
ONE_C = discharge(C_RATE_INPUT, 3.0)


def _config(**extra):
    return {"parameterized_model": MODEL, "protocol_experiment": {"protocol": ONE_C, "name": "discharge"},
            "experiment_parameters": {"C-rate": 1.0}, **extra}


async def test_run_simulation_returns_frames_and_metrics_and_fetch_is_cached():
    @flow
    async def simulate():
        result = await run_simulation(_config(), poll_schedule=FAST)
        cached = fetch_simulation_result(result.simulation_id, return_state=True)
        again = fetch_simulation_result(result.simulation_id, return_state=True)
        return result, cached, again

    result, cached, again = await simulate()
    assert isinstance(result, SimulationResult) and result.metrics
    assert result.time_series["Current [A]"].max() == pytest.approx(5.0, rel=0.02)  # 1C of 5 A.h
    assert result.time_series["Voltage [V]"].min() == pytest.approx(3.0, abs=0.02)
    assert result.steps.height >= 1
    assert again.name == "Cached"
    assert (await again.aresult()).time_series.equals((await cached.aresult()).time_series)


async def test_batch_returns_one_result_per_design_in_order():
    thickness = [60e-6, 90e-6]
    doe = {"sampling": "grid", "rows": [{"type": "discrete", "name": "Positive electrode thickness [m]",
                                         "values": thickness}]}

    @flow
    async def sweep():
        return await run_simulation_batch(_config(design_parameters_doe=doe), poll_schedule=FAST)

    results = await sweep()
    assert len(results) == 2 and len({r.simulation_id for r in results}) == 2
    durations = [r.time_series["Time [s]"].max() for r in results]
    assert durations[0] != durations[1]  # thicker cathode, different capacity


async def test_bad_requests_fail_clearly():
    @flow
    async def unknown_key():
        return await run_simulation({**_config(), "colour": "blue"}, poll_schedule=FAST)

    with pytest.raises(InvalidSimulationConfig, match="colour"):
        await unknown_key()

    @flow
    async def impossible():
        return await run_simulation(_config(design_parameters={"Positive electrode thickness [m]": -1.0}),
                                    poll_schedule=FAST)

    with pytest.raises(SimulationFailed) as caught:
        await impossible()
    assert caught.value.status in {"failed", "canceled"} and caught.value.error
