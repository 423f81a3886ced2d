"""IonworksSimulation (a Prefect JobBlock) and run_ionworks_simulation against the live sandbox: Prefect's block
test suite, one simulation and a DOE batch triggered, waited on and fetched, a second trigger reusing the
simulation, three visible tasks, a refused config sending nothing."""

from __future__ import annotations

import pytest

from ionworks_prefect import InvalidSimulationConfig, IonworksSimulation, run_ionworks_simulation, run_simulation

from .measurement_frames import unique
from .protocols import C_RATE_INPUT, discharge
from .test_jobs import _OfflineSuite, task_names

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")
MODEL = "spm-chen2020"


def _config(**extra) -> dict:
    return {"parameterized_model": MODEL, "protocol_experiment": {"protocol": discharge(C_RATE_INPUT, 3.0),
                                                                  "name": unique("block discharge")},
            "experiment_parameters": {"C-rate": 1.0}, **extra}


class TestIonworksSimulationBlock(_OfflineSuite):
    @pytest.fixture
    def block(self):
        return IonworksSimulation


async def test_trigger_wait_fetch_matches_the_task_and_a_second_trigger_reuses_the_simulation():
    config = _config(experiment_parameters={"C-rate": 0.5})
    block = IonworksSimulation(simulation=config, max_wait_seconds=300)
    await block.save(unique("simulation-block").lower(), overwrite=True)

    run = await block.trigger()
    await run.wait_for_completion()
    (result,) = await run.fetch_result()
    assert result.simulation_id == run.simulation_ids[0]
    assert result.time_series["Current [A]"].max() == pytest.approx(2.5, rel=0.02)  # C/2 of 5 A.h
    assert result.time_series["Voltage [V]"].min() == pytest.approx(3.0, abs=0.02)
    again = await block.trigger()
    assert again.simulation_ids == run.simulation_ids
    direct = await run_simulation.fn(config)
    assert direct.simulation_id == result.simulation_id and direct.time_series.equals(result.time_series)


async def test_a_doe_batch_runs_as_three_tasks_with_one_result_per_design_in_order():
    thickness = [60e-6, 90e-6]
    doe = {"sampling": "grid", "rows": [{"type": "discrete", "name": "Positive electrode thickness [m]",
                                         "values": thickness}]}
    run_name = unique("run-ionworks-simulation")
    results = await run_ionworks_simulation.with_options(flow_run_name=run_name)(
        IonworksSimulation(simulation=_config(design_parameters_doe=doe), max_wait_seconds=300))
    assert len(results) == 2 and len({r.simulation_id for r in results}) == 2
    durations = [r.time_series["Time [s]"].max() for r in results]
    assert durations[1] > durations[0]  # the thicker cathode holds more charge
    assert await task_names(run_name) == ["Fetch Ionworks simulation run results", "Trigger Ionworks simulation",
                                          "Wait for Ionworks simulation run"]


async def test_a_refused_config_fails_the_trigger_and_sends_nothing(client):
    before = len(client.simulation.list(parameterized_model_id=MODEL, limit=1000))
    with pytest.raises(InvalidSimulationConfig, match="colour"):
        await IonworksSimulation(simulation={**_config(), "colour": "blue"}).trigger()
    assert len(client.simulation.list(parameterized_model_id=MODEL, limit=1000)) == before
