"""The official client's documented examples run unmodified against the sandbox (apart from ids and env)."""

from __future__ import annotations

import ionworks_schema as iws
import pytest

from ionworks_sandbox.compute.synthetic import synthetic_discharge
from tests.measurement_frames import upload
from tests.protocols import CCCV, PARAMETERIZED_DISCHARGE

pytestmark = pytest.mark.slow


def test_pipeline_docs_end_to_end_example(client, tmp_path, monkeypatch):
    data = tmp_path / "examples" / "data" / "chen_synthetic_1C"
    data.mkdir(parents=True)
    synthetic_discharge({}, c_rates=(1.0,), period_s=20.0).write_csv(data / "time_series.csv")
    monkeypatch.chdir(tmp_path)

    pipeline = iws.Pipeline(
        {
            "known": iws.direct_entries.DirectEntry(parameters={"Ambient temperature [K]": 298.15}),
            "fit": iws.DataFit(
                objectives={
                    "1C": iws.objectives.CurrentDriven(
                        data_input="file:examples/data/chen_synthetic_1C/time_series.csv",
                        options={"model": {"type": "SPMe"}},
                    ),
                },
                parameters={
                    "Negative particle diffusivity [m2.s-1]": iws.Parameter(
                        "Negative particle diffusivity [m2.s-1]", initial_value=2e-14, bounds=(1e-14, 1e-13)
                    ),
                },
                cost=iws.costs.RMSE(),
                optimizer=iws.optimizers.DifferentialEvolution(),
            ),
        },
        name="SPMe diffusivity fit",
    )
    submission = client.pipeline.create(pipeline)
    client.pipeline.wait_for_completion(submission.id, verbose=False)
    result = client.pipeline.result(submission.id)
    fitted = result.element_results["fit"]["parameter_values"]["Negative particle diffusivity [m2.s-1]"]
    assert 1e-14 <= fitted <= 1e-13
    assert client.pipeline.get(submission.id).status == "completed"
    assert any(p.id == submission.id for p in client.pipeline.list(limit=10))


def test_simple_pipeline_docs_example(client):
    """The simple-pipeline example as documented: objective without type or model, DE capped at 10 iterations.

    (The documented ``client.pipeline.create`` dict example with ``"data": "entry.data"`` objectives is
    rejected by client 0.38's own schema validation before any request is sent, so it cannot run anywhere.)
    """
    measurement_id = upload(client, synthetic_discharge({}, c_rates=(1.0,), period_s=20.0))
    config = {
        "elements": {
            "initial_params": {
                "element_type": "entry",
                "values": {"Negative particle diffusivity [m2.s-1]": 2e-14},
            },
            "fit": {
                "element_type": "data_fit",
                "objectives": {"voltage": {"data": f"db:{measurement_id}"}},
                "parameters": {
                    "Negative particle diffusivity [m2.s-1]": {"bounds": [1e-14, 1e-13], "initial_value": 2e-14}
                },
                "cost": {"type": "RMSE"},
                "optimizer": {"type": "DifferentialEvolution", "max_iterations": 10},
            },
        }
    }
    sp = client.simple_pipeline.create(
        config, name="NMC622 diffusivity fit", description="Single-parameter fit on the May 14 dataset"
    )
    assert sp.status in {"pending", "running"}
    completed = client.simple_pipeline.wait_for_completion(sp.id, timeout=600, poll_interval=2, verbose=False)
    assert 1e-14 <= completed.result["parameter_values"]["Negative particle diffusivity [m2.s-1]"] <= 1e-13


def test_simulation_docs_examples(client):
    response = client.simulation.protocol(
        {
            "parameterized_model": "spme-chen2020",
            "protocol_experiment": {
                "protocol": PARAMETERIZED_DISCHARGE,
                "name": "Parameterized Discharge",
            },
            "experiment_parameters": {"Initial SOC": 1.0, "C-rate": 0.5},
            "design_parameters": {"Positive electrode thickness [m]": 75e-6},
        }
    )
    result = client.simulation.wait_for_completion(response.simulation_id, timeout=120, poll_interval=2, verbose=False)
    assert result["storage_folder"]
    data = client.simulation.get_result(response.simulation_id)
    assert {"Time [s]", "Voltage [V]", "Current [A]"} <= set(data.time_series.columns)
    assert data.metrics
    listed = client.simulation.list(parameterized_model_id="spme-chen2020")
    assert any(s["id"] == response.simulation_id for s in listed)


def test_protocol_and_study_docs_examples(client, tmp_path):
    result = client.protocol.convert(protocol=CCCV, target="maccor")
    (tmp_path / result.primary_filename).write_bytes(result.primary_bytes)
    assert result.primary_filename.endswith(".000")
    assert client.protocol.find_input_references(
        'global:\n  initial_soc: input["Initial SOC"]\nsteps:\n  - direction: Discharge\n    mode: C-rate\n'
        '    value: input["C-rate"]\n'
    ) == ["Initial SOC", "C-rate"]

    study = client.study.create({"name": "1C Discharge Sweep", "description": "Comparing discharge curves"})
    response = client.simulation.protocol(
        {"parameterized_model": "spm-chen2020", "protocol_experiment": {"protocol": CCCV, "name": "x"},
         "experiment_parameters": {"initial_soc": 0.2}}
    )
    client.study.assign_simulation(study.id, response.simulation_id)
    measurement_id = upload(client, synthetic_discharge({}, c_rates=(1.0,), period_s=30.0))
    client.study.assign_measurement(study.id, measurement_id)
    assert [m["id"] for m in client.study.list_measurements(study.id)["items"]] == [measurement_id]
    client.study.update(study.id, {"name": "1C Discharge Sweep v2"})
    assert any(s.name == "1C Discharge Sweep v2" for s in client.study.list())
    client.study.remove_measurement(study.id, measurement_id)
    client.study.delete(study.id)
