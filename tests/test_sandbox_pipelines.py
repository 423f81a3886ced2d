"""Pipelines and simple pipelines computed for real by the sandbox, driven by the official client."""

from __future__ import annotations

import time

import httpx
import ionworks_schema as iws
import pybamm
import pytest
from ionworks.errors import IonworksError

from ionworks_sandbox.compute.synthetic import synthetic_discharge
from tests.measurement_frames import upload

DN = "Negative particle diffusivity [m2.s-1]"
DP = "Positive particle diffusivity [m2.s-1]"
TRUE = {DN: 5.0e-14, DP: 8.0e-15}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_c(client):
    return upload(client, synthetic_discharge(TRUE, c_rates=(1.0,), model="SPMe", noise_v=0.001, seed=1))


@pytest.fixture(scope="module")
def half_c(client):
    return upload(client, synthetic_discharge(TRUE, c_rates=(0.5,), model="SPMe", noise_v=0.001, seed=2))


def fit(objectives: dict, parameters: dict, name: str) -> iws.Pipeline:
    known = {"Ambient temperature [K]": 298.15, **{p: v for p, v in TRUE.items() if p not in parameters}}
    return iws.Pipeline(
        {
            "known": iws.direct_entries.DirectEntry(parameters=known),
            "fit": iws.DataFit(
                objectives={
                    key: iws.objectives.CurrentDriven(data_input=f"db:{mid}", options={"model": {"type": "SPMe"}})
                    for key, mid in objectives.items()
                },
                parameters={p: iws.Parameter(p, initial_value=v, bounds=b) for p, (v, b) in parameters.items()},
                cost=iws.costs.RMSE(),
                optimizer=iws.optimizers.DifferentialEvolution(),
            ),
        },
        name=name,
    )


def test_one_parameter_fit_recovers_diffusivity(client, one_c):
    pipeline = fit({"1C": one_c}, {DN: (2e-14, (1e-14, 1e-13))}, "Dn fit")
    submitted = client.pipeline.create(pipeline)
    final = client.pipeline.wait_for_completion(submitted.id, timeout=300, poll_interval=0.5, verbose=False)
    assert final.status == "completed"
    result = client.pipeline.result(submitted.id)
    fitted = result.element_results["fit"]["parameter_values"][DN]
    assert abs(fitted / TRUE[DN] - 1) < 0.05
    assert result.result["parameter_values"]["Ambient temperature [K]"] == 298.15
    assert result.element("fit") is not None
    elements = client.get(f"/pipelines/{submitted.id}/elements")
    assert [e["status"] for e in elements] == ["completed", "completed"]


def test_two_parameter_two_objective_fit_converges(client, one_c, half_c):
    pipeline = fit({"1C": one_c, "0.5C": half_c}, {DN: (2e-14, (1e-14, 1e-13)), DP: (4e-15, (1e-15, 5e-14))}, "Dn Dp fit")
    submitted = client.pipeline.create(pipeline)
    client.pipeline.wait_for_completion(submitted.id, timeout=600, poll_interval=0.5, verbose=False)
    fitted = client.pipeline.result(submitted.id).element_results["fit"]["parameter_values"]
    for name in (DN, DP):
        assert abs(fitted[name] / TRUE[name] - 1) < 0.10, (name, fitted[name])


def test_validation_reports_summary_stats_and_metadata(client, one_c):
    pipeline = iws.Pipeline(
        {
            "truth": iws.direct_entries.DirectEntry(parameters=dict(TRUE)),
            "validate": iws.Validation(
                objectives={"1C": iws.objectives.CurrentDriven(data_input=f"db:{one_c}", options={"model": {"type": "SPMe"}})},
                summary_stats=[iws.costs.RMSE(), iws.costs.MAE()],
            ),
        },
        name="validate truth",
    )
    submitted = client.pipeline.create(pipeline)
    client.pipeline.wait_for_completion(submitted.id, timeout=300, poll_interval=0.5, verbose=False)
    stats = client.pipeline.result(submitted.id).element_results["validate"]["summary_stats"]
    assert stats, "validation must report summary statistics"
    rmse = next(value for key, value in _flatten(stats) if "rmse" in key.lower())
    assert rmse < 0.003, stats
    metadata = client.pipeline.get_element_metadata(submitted.id, "validate")
    assert metadata


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flatten(value, f"{prefix}.{key}")
    elif isinstance(tree, (int, float)):
        yield prefix, tree


def test_capacity_pipeline_from_the_client_docs(client):
    pipeline = iws.Pipeline(
        {
            "known": iws.direct_entries.DirectEntry(parameters={"Ambient temperature [K]": 298.15}),
            "Q_pos": iws.calculations.ElectrodeCapacity(electrode="positive"),
        },
        name="Capacity pipeline",
    )
    submission = client.pipeline.create(pipeline)
    client.pipeline.wait_for_completion(submission.id, timeout=120, poll_interval=0.5, verbose=False)
    result = client.pipeline.result(submission.id)
    capacities = [v for k, v in result.element_results["Q_pos"]["parameter_values"].items() if "capacity" in k.lower()]
    chen = pybamm.ParameterValues("Chen2020")
    expected = (
        chen["Maximum concentration in positive electrode [mol.m-3]"]
        * chen["Positive electrode active material volume fraction"]
        * chen["Positive electrode thickness [m]"]
        * chen["Electrode height [m]"]
        * chen["Electrode width [m]"]
        * 96485.33212
        / 3600
    )
    assert capacities and capacities[0] == pytest.approx(expected, rel=1e-3)


def test_pipeline_links_open_a_page_on_the_sandbox(client, sandbox):
    name = "Capacity <check> & page"
    pipeline = iws.Pipeline({"known": iws.direct_entries.DirectEntry(parameters={"Ambient temperature [K]": 298.15}),
                             "Q_pos": iws.calculations.ElectrodeCapacity(electrode="positive")}, name=name)
    submission = client.pipeline.create(pipeline)
    client.pipeline.wait_for_completion(submission.id, timeout=120, poll_interval=0.5, verbose=False)
    url = client.urls.pipeline(submission.id)
    assert url == f"{sandbox.url}/app/projects/{client.project_id}/pipelines/{submission.id}"
    page = httpx.get(url)  # no key: opened from a browser
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Capacity &lt;check&gt; &amp; page" in page.text and "<check>" not in page.text
    assert "completed" in page.text and "Q_pos" in page.text and "Ambient temperature [K]" in page.text
    wrong_project = httpx.get(url.replace(client.project_id, "00000000-0000-0000-0000-000000000000"))
    assert wrong_project.status_code == 404 and submission.id in wrong_project.text


def test_unsupported_element_is_422_listing_supported(client):
    body = {
        "elements": {"sens": {"element_type": "sobol_sensitivity", "parameters": {DN: {"bounds": [1e-14, 1e-13]}}}},
        "project_id": client.project_id,
        "options": {},
    }
    with pytest.raises(IonworksError) as caught:
        client.post("/pipelines", body)
    assert caught.value.status_code == 422
    assert "sobol_sensitivity" in caught.value.message and "data_fit" in caught.value.message


def test_unknown_measurement_is_404_naming_the_field(client):
    pipeline = fit({"1C": "00000000-0000-0000-0000-000000000000"}, {DN: (2e-14, (1e-14, 1e-13))}, "missing data")
    with pytest.raises(IonworksError) as caught:
        client.pipeline.create(pipeline)
    assert caught.value.status_code == 404
    assert "elements.fit.objectives.1C" in caught.value.message


def test_cancel_stops_a_running_fit(client, one_c):
    slow = iws.Pipeline(
        {
            "fit": iws.DataFit(
                objectives={"1C": iws.objectives.CurrentDriven(data_input=f"db:{one_c}", options={"model": {"type": "DFN"}})},
                parameters={
                    DN: iws.Parameter(DN, initial_value=2e-14, bounds=(1e-15, 1e-12)),
                    DP: iws.Parameter(DP, initial_value=4e-15, bounds=(1e-16, 1e-13)),
                },
                optimizer=iws.optimizers.DifferentialEvolution(),
            )
        },
        name="slow fit",
    )
    submitted = client.pipeline.create(slow)
    deadline = time.monotonic() + 60
    while client.pipeline.get(submitted.id).status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    client.post(f"/pipelines/{submitted.id}/cancel", {})
    started = time.monotonic()
    while not client.pipeline.get(submitted.id).is_terminal:
        assert time.monotonic() - started < 5
        time.sleep(0.1)
    final = client.pipeline.get(submitted.id)
    assert final.status == "canceled" and final.is_failed


def test_simple_pipeline_fit_list_and_filters(client, one_c):
    config = {
        "elements": {
            "initial_params": {"element_type": "entry", "values": {"Ambient temperature [K]": 298.15, DP: TRUE[DP]}},
            "fit": {
                "element_type": "data_fit",
                "objectives": {"voltage": {"type": "CurrentDriven", "data": f"db:{one_c}", "options": {"model": {"type": "SPMe"}}}},
                "parameters": {DN: {"bounds": [1e-14, 1e-13], "initial_value": 2e-14}},
                "cost": {"type": "RMSE"},
                "optimizer": {"type": "DifferentialEvolution"},
            },
        }
    }
    sp = client.simple_pipeline.create(config, name="diffevo Dn fit", description="simple fit")
    assert sp.status in {"pending", "running"}
    done = client.simple_pipeline.wait_for_completion(sp.id, timeout=300, poll_interval=0.5, verbose=False)
    assert abs(done.result["parameter_values"][DN] / TRUE[DN] - 1) < 0.05
    assert any(p.id == sp.id for p in client.simple_pipeline.list(name="ilike.%diffevo%").items)
    assert any(p.id == sp.id for p in client.simple_pipeline.list(status="in.(completed,failed)").items)
    assert not any(p.id == sp.id for p in client.simple_pipeline.list(status="in.(pending,running)").items)
    assert any(p.id == sp.id for p in client.simple_pipeline.list(created_at_gt="2020-01-01", order_by="created_at", order="asc").items)
    client.simple_pipeline.update(sp.id, name="renamed")
    assert client.simple_pipeline.get(sp.id).name == "renamed"
    client.simple_pipeline.delete(sp.id)
    with pytest.raises(IonworksError):
        client.simple_pipeline.get(sp.id)


def test_simple_pipeline_rejects_two_fits(client, one_c):
    fit_element = {
        "element_type": "data_fit",
        "objectives": {"v": {"type": "CurrentDriven", "data": f"db:{one_c}", "options": {"model": {"type": "SPM"}}}},
        "parameters": {DN: {"bounds": [1e-14, 1e-13], "initial_value": 2e-14}},
    }
    with pytest.raises(IonworksError) as caught:
        client.simple_pipeline.create({"elements": {"a": fit_element, "b": fit_element}})
    assert caught.value.status_code == 422
