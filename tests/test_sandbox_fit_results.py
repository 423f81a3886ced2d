"""A fit's and a validation's lazy results (trace, overlay, series) read through the official client."""

from __future__ import annotations

import ionworks_schema as iws
import matplotlib
import matplotlib.pyplot
import numpy as np
import pytest
from ionworks.errors import IonworksError

from ionworks_sandbox.compute.synthetic import synthetic_discharge
from tests.measurement_frames import upload

DN = "Negative particle diffusivity [m2.s-1]"
DP = "Positive particle diffusivity [m2.s-1]"
TRUE = {DN: 5.0e-14, DP: 8.0e-15}
INITIAL = 2.0e-14
TIME, DATA, MODEL = "Time [s]", "Data voltage [V]", "Model voltage [V]"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def measured():
    return synthetic_discharge(TRUE, c_rates=(1.0,), model="SPMe", noise_v=0.001, seed=3, period_s=20.0)


@pytest.fixture(scope="module")
def pipeline_id(client, measured) -> str:
    """known -> fit (ScipyMinimize, one parameter) -> validate, all on one uploaded 1C discharge."""
    data = f"db:{upload(client, measured)}"

    def objective():
        return {"1C": iws.objectives.CurrentDriven(data_input=data, options={"model": {"type": "SPMe"}})}

    pipeline = iws.Pipeline(
        {
            "known": iws.direct_entries.DirectEntry(parameters={"Ambient temperature [K]": 298.15, DP: TRUE[DP]}),
            "fit": iws.DataFit(
                objectives=objective(),
                parameters={DN: iws.Parameter(DN, initial_value=INITIAL, bounds=(1e-14, 1e-13))},
                optimizer=iws.optimizers.ScipyMinimize(),
            ),
            "validate": iws.Validation(objectives=objective(), summary_stats=[iws.costs.RMSE()]),
        },
        name="fit results",
    )
    submitted = client.pipeline.create(pipeline)
    final = client.pipeline.wait_for_completion(submitted.id, timeout=300, poll_interval=0.5, verbose=False)
    assert final.status == "completed", final.error
    return submitted.id


def measured_voltage_at(measured, times: list[float]) -> np.ndarray:
    return np.interp(times, measured["Time [s]"].to_numpy(), measured["Voltage [V]"].to_numpy())


def rms(values) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(values, dtype=float)))))


def test_trace_follows_the_optimizer_to_the_fitted_value(client, pipeline_id):
    fit = client.pipeline.result(pipeline_id).element("fit")
    trace = fit.trace
    assert trace and all({"best_cost", "cost", "inputs_unscaled"} <= set(entry) for entry in trace)
    best = [entry["best_cost"] for entry in trace]
    assert best == sorted(best, reverse=True)
    assert trace[-1]["inputs_unscaled"][DN] == pytest.approx(fit.parameter_values[DN], rel=1e-6)
    assert abs(fit.parameter_values[DN] / TRUE[DN] - 1) < 0.05


def test_overlay_plots_the_measured_data_and_the_fitted_model(client, pipeline_id, measured):
    overlay = client.pipeline.result(pipeline_id).element("fit").overlay
    assert set(overlay) == {"1C"} and overlay["1C"]["type"] == "CurrentDriven"
    voltage, error = overlay["1C"]["plots"]
    data, model = voltage["traces"]
    assert (data["name"], model["name"]) == ("Data", "Fit")
    assert len(data["x"]) == len(data["y"]) == len(model["y"]) > 50
    np.testing.assert_allclose(data["y"], measured_voltage_at(measured, data["x"]), atol=1e-9)
    residual = np.subtract(model["y"], data["y"])
    assert rms(residual) < 0.003
    np.testing.assert_allclose(error["traces"][0]["y"], residual, atol=1e-9)


def test_plot_data_windows_thins_and_ends(client, pipeline_id):
    job_id = next(e["job_id"] for e in client.get(f"/pipelines/{pipeline_id}/elements") if e["name"] == "fit")
    window = client.job.get_plot_data(job_id, "1C", 0, max_points=100, x_min=600.0, x_max=1800.0)
    for trace in window["traces"]:
        assert 2 <= len(trace["x"]) <= 100 and len(trace["x"]) == len(trace["y"])
        assert 600.0 <= min(trace["x"]) and max(trace["x"]) <= 1800.0
    for objective, index in (("1C", 2), ("missing", 0)):
        with pytest.raises(IonworksError) as caught:
            client.job.get_plot_data(job_id, objective, index)
        assert caught.value.status_code == 404


def test_fit_series_has_optimal_and_baseline_solves(client, pipeline_id, measured):
    channels = client.pipeline.get_element_series_channels(pipeline_id, "fit")
    assert set(channels) == {"1C"} and set(channels["1C"]) == {"optimal", "baseline"}
    assert {TIME, DATA, MODEL} <= set(channels["1C"]["optimal"])
    series = client.pipeline.result(pipeline_id).element("fit").series["1C"]
    for source in ("optimal", "baseline"):
        columns = series[source]
        assert set(columns) == set(channels["1C"][source])
        assert len({len(values) for values in columns.values()}) == 1
        np.testing.assert_allclose(columns[DATA], measured_voltage_at(measured, columns[TIME]), atol=1e-9)
    optimal, baseline = (rms(np.subtract(series[s][MODEL], series[s][DATA])) for s in ("optimal", "baseline"))
    assert optimal < 0.003 < baseline


def test_series_window_columns_and_errors(client, pipeline_id):
    part = client.pipeline.get_element_series(
        pipeline_id, "fit", "1C", source="baseline", columns=[MODEL], x_min=100.0, x_max=2000.0, max_points=20
    )
    assert list(part) == [TIME, MODEL]
    assert 2 <= len(part[TIME]) == len(part[MODEL]) <= 20
    assert part[TIME][0] >= 100.0 and part[TIME][-1] <= 2000.0
    bad = [({"columns": ["Temperature [K]"]}, 400), ({"source": "median"}, 400), ({"x_column": "Step"}, 400)]
    for kwargs, status in bad:
        with pytest.raises(IonworksError) as caught:
            client.pipeline.get_element_series(pipeline_id, "fit", "1C", **kwargs)
        assert caught.value.status_code == status, kwargs
    with pytest.raises(IonworksError) as caught:
        client.pipeline.get_element_series(pipeline_id, "fit", "2C")
    assert caught.value.status_code == 404


def test_validation_element_serves_overlay_and_series(client, pipeline_id, measured):
    validation = client.pipeline.result(pipeline_id).element("validate")
    assert validation.trace is None
    assert client.pipeline.get_element_series_channels(pipeline_id, "validate")["1C"].keys() == {"optimal"}
    columns = validation.series["1C"]["optimal"]
    np.testing.assert_allclose(columns[DATA], measured_voltage_at(measured, columns[TIME]), atol=1e-9)
    model_trace = validation.overlay["1C"]["plots"][0]["traces"][1]
    assert model_trace["name"] == "Model"
    assert rms(np.subtract(model_trace["y"], columns[DATA])) < 0.003


def test_fit_results_render_through_the_client(client, pipeline_id):
    matplotlib.use("Agg")
    fit = client.pipeline.result(pipeline_id).element("fit")
    figures = fit.plot_fit_results()
    assert set(figures) == {"1C"}
    _, axes = fit.plot_trace()
    assert len(axes) == 2
    matplotlib.pyplot.close("all")
