"""Simulations and protocols computed by the sandbox, driven by the official client as in its docs."""

from __future__ import annotations

import numpy as np
import pybamm
import pytest
from ionworks.errors import IonworksError

from tests.protocols import CCCV, ONE_C_DISCHARGE, PARAMETERIZED_DISCHARGE

pytestmark = pytest.mark.slow


def test_single_simulation_matches_direct_pybamm(client):
    response = client.simulation.protocol(
        {"parameterized_model": "spm-chen2020", "protocol_experiment": {"protocol": ONE_C_DISCHARGE, "name": "1C Discharge"}}
    )
    done = client.simulation.wait_for_completion(response.simulation_id, timeout=120, poll_interval=0.5, verbose=False)
    assert done["storage_folder"]
    result = client.simulation.get_result(response.simulation_id)
    ours = result.time_series

    parameters = pybamm.ParameterValues("Chen2020")
    parameters["Ambient temperature [K]"] = 298.15
    parameters["Initial temperature [K]"] = 298.15
    experiment = pybamm.Experiment([pybamm.step.c_rate(1, termination="2.5 V", period=60)])
    direct = pybamm.Simulation(pybamm.lithium_ion.SPM(), parameter_values=parameters, experiment=experiment)
    solution = direct.solve(initial_soc=1.0)
    t_direct = solution["Time [s]"].entries
    v_direct = solution["Voltage [V]"].entries
    t_ours = ours["Time [s]"].to_numpy()
    v_ours = ours["Voltage [V]"].to_numpy()
    common = t_ours[(t_ours >= t_direct[0]) & (t_ours <= t_direct[-1])]
    difference = np.interp(common, t_ours, v_ours) - np.interp(common, t_direct, v_direct)
    assert np.max(np.abs(difference)) < 1e-3
    assert abs(t_ours[-1] - t_direct[-1]) < 5
    assert result.metrics
    assert result.steps.height >= 1


def test_input_placeholders_and_design_parameters(client):
    response = client.simulation.protocol(
        {
            "parameterized_model": "spm-chen2020",
            "protocol_experiment": {"protocol": PARAMETERIZED_DISCHARGE, "name": "Parameterized Discharge"},
            "experiment_parameters": {"Initial SOC": 1.0, "C-rate": 0.5},
            "design_parameters": {"Positive electrode thickness [m]": 75e-6},
        }
    )
    client.simulation.wait_for_completion(response.simulation_id, timeout=120, poll_interval=0.5, verbose=False)
    record = client.simulation.get(response.simulation_id)
    assert record["design_parameters"] == {"Positive electrode thickness [m]": 75e-6}
    series = client.simulation.get_result(response.simulation_id).time_series
    assert series["Current [A]"].max() == pytest.approx(2.5, rel=0.02)  # 0.5C of Chen2020's 5 A.h



def test_an_identical_run_is_returned_again_and_a_failed_one_is_run_anew(client):
    config = {"parameterized_model": "spm-chen2020",
              "protocol_experiment": {"protocol": PARAMETERIZED_DISCHARGE, "name": "Identical runs"},
              "experiment_parameters": {"Initial SOC": 1.0, "C-rate": 0.7}}
    first = client.simulation.protocol(config)
    again = client.simulation.protocol(config)
    assert (again.simulation_id, again.job_id, again.already_existed) == (first.simulation_id, first.job_id, True)
    other = client.simulation.protocol({**config, "experiment_parameters": {"Initial SOC": 1.0, "C-rate": 0.8}})
    assert other.simulation_id != first.simulation_id and not other.already_existed

    broken = {**config, "design_parameters": {"Positive electrode thickness [m]": -1.0}}
    failed = client.simulation.protocol(broken)
    with pytest.raises(IonworksError):
        client.simulation.wait_for_completion(failed.simulation_id, timeout=120, poll_interval=0.5, verbose=False)
    assert client.simulation.get(failed.simulation_id)["status"] in ("failed", "canceled")
    retried = client.simulation.protocol(broken)
    assert retried.simulation_id != failed.simulation_id and not retried.already_existed

def test_missing_input_is_422_naming_it(client):
    with pytest.raises(IonworksError) as caught:
        client.simulation.protocol(
            {
                "parameterized_model": "spm-chen2020",
                "protocol_experiment": {"protocol": PARAMETERIZED_DISCHARGE, "name": "missing input"},
                "experiment_parameters": {"Initial SOC": 1.0},
            }
        )
    assert caught.value.status_code == 422 and "C-rate" in caught.value.message


def test_grid_doe_gives_nine_simulations_with_their_values(client):
    thickness = [60e-6, 75e-6, 90e-6]
    responses = client.simulation.protocol_batch(
        {
            "parameterized_model": "spm-chen2020",
            "protocol_experiment": {"protocol": ONE_C_DISCHARGE, "name": "grid"},
            "design_parameters_doe": {
                "sampling": "grid",
                "rows": [
                    {"type": "discrete", "name": "Positive electrode thickness [m]", "values": thickness},
                    {"type": "discrete", "name": "Negative electrode thickness [m]", "values": [70e-6, 85e-6, 100e-6]},
                ],
            },
        }
    )
    assert len(responses) == 9
    ids = [r.simulation_id for r in responses]
    client.simulation.wait_for_completion(ids, timeout=300, poll_interval=0.5, verbose=False)
    seen = {tuple(sorted(client.simulation.get(i)["design_parameters"].items())) for i in ids}
    assert len(seen) == 9
    assert {dict(s)["Positive electrode thickness [m]"] for s in seen} == set(thickness)


def test_nested_protocol_with_cv_step_runs(client):
    response = client.simulation.protocol(
        {
            "parameterized_model": "spm-chen2020",
            "protocol_experiment": {"protocol": CCCV, "name": "CCCV"},
            "experiment_parameters": {"initial_soc": 0.2},
        }
    )
    client.simulation.wait_for_completion(response.simulation_id, timeout=180, poll_interval=0.5, verbose=False)
    steps = client.simulation.get_result(response.simulation_id).steps
    assert steps.height >= 3
    assert client.simulation.get(response.simulation_id)["termination"] == "completed"


def test_protocol_validate_and_inputs(client):
    assert client.protocol.validate(ONE_C_DISCHARGE)["valid"] is True
    broken = client.protocol.validate(ONE_C_DISCHARGE.replace("mode: C-rate", "mode: Teleport"))
    assert broken["valid"] is False and broken["error"]
    assert client.protocol.find_input_references(PARAMETERIZED_DISCHARGE) == ["Initial SOC", "C-rate"]
