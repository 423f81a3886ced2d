"""The sandbox's pipeline compute engine, without HTTP: fits, validation, calculations and refusals.

Configs are built with ``ionworks_schema`` and passed through the client's outbound step, so the engine sees
exactly what ``client.pipeline.create`` would POST.
"""

from __future__ import annotations

import ionworks_schema as iws
import numpy as np
import polars as pl
import pybamm
import pytest
from ionworks.validators import run_validators_outbound, validate_measurement_data

from ionworks_sandbox.compute.pipeline import PipelineInputError, UnsupportedFeature, check_pipeline, run_pipeline
from ionworks_sandbox.compute.synthetic import synthetic_discharge

DN = "Negative particle diffusivity [m2.s-1]"
DP = "Positive particle diffusivity [m2.s-1]"
TRUE_DN, TRUE_DP = 2.0e-14, 6.0e-15
NOISE_V = 0.001


@pytest.fixture(scope="module")
def discharge_1c() -> pl.DataFrame:
    return synthetic_discharge({DN: TRUE_DN, DP: TRUE_DP}, c_rates=(1.0,), noise_v=NOISE_V, seed=0, period_s=10.0)


@pytest.fixture(scope="module")
def discharge_half_c() -> pl.DataFrame:
    return synthetic_discharge({DN: TRUE_DN, DP: TRUE_DP}, c_rates=(0.5,), noise_v=NOISE_V, seed=1, period_s=20.0)


def wire(pipeline: iws.Pipeline) -> dict:
    """The elements exactly as the client POSTs them."""
    return run_validators_outbound(pipeline.to_config())["elements"]


def spme(data) -> iws.objectives.CurrentDriven:
    return iws.objectives.CurrentDriven(data_input=data, options={"model": {"type": "SPMe"}})


def no_loader(measurement_id: str) -> pl.DataFrame:
    raise KeyError(measurement_id)


def test_synthetic_discharge_is_a_valid_ionworks_time_series():
    frame = synthetic_discharge({}, c_rates=(1.0, 0.5), period_s=20.0, noise_v=0.0)
    assert frame.columns == ["Time [s]", "Current [A]", "Voltage [V]", "Step count"]
    validate_measurement_data(frame, strict=True)
    assert frame["Step count"].unique().to_list() == [0, 1, 2]
    assert frame["Time [s]"][0] == 0.0 and frame["Time [s]"].diff().drop_nulls().min() >= 0
    rest = frame.filter(pl.col("Step count") == 1)
    assert rest["Current [A]"].abs().max() == 0.0
    assert frame.filter(pl.col("Step count") == 2)["Current [A]"].mean() == pytest.approx(2.5)
    noisy = synthetic_discharge({}, c_rates=(1.0,), period_s=20.0, noise_v=NOISE_V, seed=3)
    clean = synthetic_discharge({}, c_rates=(1.0,), period_s=20.0, noise_v=0.0)
    assert np.std(noisy["Voltage [V]"].to_numpy() - clean["Voltage [V]"].to_numpy()) == pytest.approx(NOISE_V, rel=0.25)


def test_one_parameter_fit_recovers_negative_diffusivity(discharge_1c):
    pipeline = iws.Pipeline(
        {
            "known": iws.direct_entries.DirectEntry(parameters={"Ambient temperature [K]": 298.15, DP: TRUE_DP}),
            "fit": iws.DataFit(
                objectives={"1C": spme(discharge_1c)},
                parameters={DN: iws.Parameter(DN, initial_value=5e-14, bounds=(1e-14, 1e-13))},
                cost=iws.costs.RMSE(),
                optimizer=iws.optimizers.DifferentialEvolution(),
            ),
        }
    )
    reports: list[dict] = []
    out = run_pipeline(wire(pipeline), no_loader, reports.append)

    fit = out["element_results"]["fit"]
    assert fit["parameter_values"][DN] == pytest.approx(TRUE_DN, rel=0.05)
    assert fit["success"] is True and fit["evaluations"] > 0
    assert out["result"]["parameter_values"][DN] == fit["parameter_values"][DN]
    assert out["result"]["parameter_values"]["Ambient temperature [K]"] == 298.15
    decoded = iws.from_config(fit)
    assert isinstance(decoded, iws.OptimizationResult) and decoded.x == fit["x"]

    meta = out["element_metadata"]["fit"]
    best = [row["best_cost"] for row in meta["intermediate_results"]]
    assert best and all(a >= b for a, b in zip(best, best[1:]))
    trace = meta["validation_results"]["1C"]
    assert 0 < len(trace["Time [s]"]) <= 500 and len(trace["Model voltage [V]"]) == len(trace["Time [s]"])
    assert np.sqrt(np.mean(np.square(trace["Error [V]"]))) < 3 * NOISE_V
    assert "Positive electrode thickness [m]" in meta["defaults"]["filled"]
    assert DP not in meta["defaults"]["filled"] and DN not in out["defaults"]["filled"]

    statuses = [(r["element"], r["status"]) for r in reports]
    assert statuses[0] == ("known", "running") and statuses[-1] == ("fit", "completed")
    assert any(r["status"] == "running" and r["progress"]["evaluations"] > 0 for r in reports)


def test_two_parameter_two_objective_fit_converges(discharge_1c, discharge_half_c):
    first_hour = {"data": discharge_half_c.to_dict(as_series=False), "time_range": {"start": 0.0, "end": 3600.0}}
    pipeline = iws.Pipeline(
        {
            "fit": iws.DataFit(
                objectives={"1C": spme(discharge_1c), "C/2": spme(first_hour)},
                parameters={
                    DN: iws.Parameter(DN, initial_value=5e-14, bounds=(5e-15, 1e-13)),
                    DP: iws.Parameter(DP, initial_value=2e-15, bounds=(1e-15, 5e-14)),
                },
                cost=iws.costs.RMSE(),
                optimizer=iws.optimizers.DifferentialEvolution(),
            )
        }
    )
    out = run_pipeline(wire(pipeline), no_loader, lambda update: None)
    fit = out["element_results"]["fit"]
    assert fit["parameter_values"][DN] == pytest.approx(TRUE_DN, rel=0.10)
    assert fit["parameter_values"][DP] == pytest.approx(TRUE_DP, rel=0.10)
    assert set(fit["costs_by_objective"]) == {"1C", "C/2"}
    assert fit["fun"] == pytest.approx(sum(fit["costs_by_objective"].values()))
    assert out["element_metadata"]["fit"]["objectives"]["C/2"]["points"] == 181


def test_local_method_fit_from_a_measurement(discharge_1c):
    elements = {
        "fit": {
            "element_type": "data_fit",
            "objectives": {"1C": {"type": "CurrentDriven", "data": "db:m-1", "options": {"model": "SPMe"}}},
            "parameters": {DN: {"initial_value": 6e-14, "bounds": [1e-14, 1e-13]}},
            "cost": {"type": "SSE"},
            "optimizer": {"type": "ScipyMinimize", "method": "Nelder-Mead"},
        }
    }
    out = run_pipeline(elements, {"m-1": discharge_1c}.__getitem__, lambda update: None)
    assert out["element_results"]["fit"]["parameter_values"][DN] == pytest.approx(TRUE_DN, rel=0.05)
    assert out["element_metadata"]["fit"]["objectives"]["1C"]["data"] == "db:m-1"


def test_validation_summary_stats_are_at_noise_level_for_true_parameters(discharge_1c):
    def validate(dn: float) -> dict:
        pipeline = iws.Pipeline(
            {
                "truth": iws.direct_entries.DirectEntry(parameters={DN: dn, DP: TRUE_DP}),
                "val": iws.Validation(objectives={"1C": spme(discharge_1c)}),
            }
        )
        return run_pipeline(wire(pipeline), no_loader, lambda update: None)

    out = validate(TRUE_DN)
    stats = out["element_results"]["val"]["summary_stats"]["1C"]
    assert stats["RMSE"] == pytest.approx(NOISE_V, rel=0.3)
    assert stats["MAE"] == pytest.approx(NOISE_V * np.sqrt(2 / np.pi), rel=0.3)
    assert NOISE_V < stats["Max"] < 6 * NOISE_V
    assert isinstance(iws.from_config(out["element_results"]["val"]), iws.ValidationResult)
    meta = out["element_metadata"]["val"]
    assert meta["validation_plot_config"]["objectives"]["1C"]["type"] == "CurrentDriven"
    assert len(meta["plots"]["1C"][0]["traces"]) == 2
    assert validate(3 * TRUE_DN)["element_results"]["val"]["summary_stats"]["1C"]["RMSE"] > 5 * NOISE_V


@pytest.mark.parametrize("electrode", ["positive", "negative"])
def test_electrode_capacity_matches_pybamm(electrode):
    values = pybamm.ParameterValues("Chen2020")
    param = getattr(pybamm.LithiumIonParameters(), electrode[0])
    expected = values.evaluate(param.Q_init)
    pipeline = iws.Pipeline(
        {
            "cap": iws.calculations.ElectrodeCapacity(electrode=electrode),
            "window": iws.calculations.ElectrodeCapacity(electrode=electrode, use_stoich_window=True),
        }
    )
    out = run_pipeline(wire(pipeline), no_loader, lambda update: None)
    name = f"{electrode.capitalize()} electrode capacity [A.h]"
    assert out["element_results"]["cap"]["parameter_values"][name] == pytest.approx(expected, rel=1e-9)
    x_0, x_100, y_100, y_0 = pybamm.lithium_ion.get_min_max_stoichiometries(values)
    window = abs(x_100 - x_0) if electrode == "negative" else abs(y_0 - y_100)
    assert out["result"]["parameter_values"][name] == pytest.approx(expected * window, rel=1e-6)
    thickness = f"{electrode.capitalize()} electrode thickness [m]"
    assert thickness in out["defaults"]["filled"]

    thicker = {"element_type": "entry", "values": {thickness: 2 * values[thickness]}}
    out = run_pipeline({"geometry": thicker, "cap": wire(pipeline)["cap"]}, no_loader, lambda update: None)
    assert out["result"]["parameter_values"][name] == pytest.approx(2 * expected, rel=1e-9)
    assert thickness not in out["element_metadata"]["cap"]["defaults"]["filled"]


def fit_config(**changes) -> dict:
    config = {
        "element_type": "data_fit",
        "objectives": {"1C": {"type": "CurrentDriven", "data": "db:m-1", "options": {"model": {"type": "SPMe"}}}},
        "parameters": {DN: {"initial_value": 2e-14, "bounds": [1e-14, 1e-13]}},
        "cost": {"type": "RMSE"},
        "optimizer": {"type": "DifferentialEvolution"},
    }
    config.update(changes)
    return config


@pytest.mark.parametrize(
    ("element", "field", "value", "listed"),
    [
        ({"element_type": "sobol_sensitivity"}, "elements.x.element_type", "sobol_sensitivity", "data_fit"),
        (fit_config(optimizer={"type": "CMAES"}), "elements.x.optimizer.type", "CMAES", "DifferentialEvolution"),
        (fit_config(cost={"type": "ChiSquare"}), "elements.x.cost.type", "ChiSquare", "SSE"),
        (
            fit_config(objectives={"e": {"type": "EIS", "data": "db:m", "options": {"model": "SPM"}}}),
            "elements.x.objectives.e.type",
            "EIS",
            "CurrentDriven",
        ),
        (
            fit_config(objectives={"o": {"type": "CurrentDriven", "data": "db:m", "options": {"model": "MPM"}}}),
            "elements.x.objectives.o.options.model.type",
            "MPM",
            "DFN",
        ),
        (
            {"element_type": "calculation", "type": "CellMass"},
            "elements.x.type",
            "CellMass",
            "ElectrodeCapacity",
        ),
        (
            fit_config(optimizer={"type": "ScipyMinimize", "method": "trust-constr"}),
            "elements.x.optimizer.method",
            "trust-constr",
            "Nelder-Mead",
        ),
    ],
)
def test_unsupported_features_are_refused_by_name(element, field, value, listed):
    with pytest.raises(UnsupportedFeature) as caught:
        check_pipeline({"x": element})
    assert (caught.value.field, caught.value.value) == (field, value)
    assert listed in caught.value.supported
    with pytest.raises(UnsupportedFeature):
        run_pipeline({"x": element}, no_loader, lambda update: None)


def test_bad_input_names_the_element_and_field(discharge_1c):
    no_voltage = discharge_1c.drop("Voltage [V]").to_dict(as_series=False)
    cases = [
        ({"fit": fit_config(objectives={"1C": {"type": "CurrentDriven", "data": no_voltage,
                                               "options": {"model": "SPMe"}}})},  # fmt: skip
         "elements.fit.objectives.1C.data", "Voltage [V]"),
        ({"fit": fit_config(parameters={DN: {"bounds": [1e-13, 1e-14]}})}, "elements.fit.parameters", "lower bound"),
        ({"fit": fit_config(parameters={DN: {"initial_value": 1e-12, "bounds": [1e-14, 1e-13]}})},
         "elements.fit.parameters", "outside"),  # fmt: skip
        ({"fit": fit_config(parameters={DN: {"initial_value": 2e-14, "bounds": [1e-14, None]}})},
         "elements.fit.parameters", "finite bounds"),  # fmt: skip
    ]
    for elements, field, words in cases:
        with pytest.raises(PipelineInputError) as caught:
            check_pipeline(elements)
        assert caught.value.field.startswith(field) and words in str(caught.value)

    with pytest.raises(PipelineInputError, match="measurement 'm-1' was not found"):
        run_pipeline({"fit": fit_config()}, no_loader, lambda update: None)
    unused = fit_config(parameters={"Cell cooling surface area [m2]": {"initial_value": 0.1, "bounds": [0.01, 1.0]}})
    failures: list[dict] = []
    with pytest.raises(PipelineInputError, match="not a parameter of the SPMe model"):
        run_pipeline({"fit": unused}, {"m-1": discharge_1c}.__getitem__, failures.append)
    assert failures[-1]["status"] == "failed" and "SPMe" in failures[-1]["error"]


def test_config_without_objective_type_or_model_uses_recorded_defaults(discharge_1c):
    elements = {
        "initial": {"element_type": "entry", "values": {DN: 2e-14, "data": "db:m-1", "model": {"type": "SPMe"}}},
        "fit": {
            "element_type": "data_fit",
            "objectives": {"voltage": {"data": "initial.data"}},
            "parameters": {DN: {"bounds": [1e-14, 1e-13], "initial_value": 2e-14}},
            "cost": {"type": "RMSE"},
            "optimizer": {"type": "DifferentialEvolution", "max_iterations": 3},
        },
    }
    out = run_pipeline(elements, {"m-1": discharge_1c}.__getitem__, lambda update: None)
    assumed = out["element_metadata"]["fit"]["assumed"]
    assert assumed["elements.fit.objectives.voltage.type"] == "CurrentDriven"
    assert assumed["elements.fit.objectives.voltage.options.model"] == {"type": "SPMe"}
    assert out["element_results"]["fit"]["iterations"] <= 3
