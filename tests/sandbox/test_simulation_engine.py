"""The sandbox's simulation engine without HTTP: UCP parsing, PyBaMM runs, DOE expansion, vendor conversion."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import numpy as np
import pybamm
import pytest
from ionworks.simulation import DesignParametersDOE, expected_doe_simulation_count

from ionworks_sandbox.compute import vendor
from ionworks_sandbox.compute.doe import expand_doe
from ionworks_sandbox.compute.simulation import ModelConfigError, run_simulation
from ionworks_sandbox.compute.ucp import (
    EndCondition,
    MissingInputError,
    ProtocolError,
    find_input_references,
    parse_protocol,
    to_pybamm_experiment,
    validate_protocol,
)
from ionworks_sandbox.compute.vendor import ProtocolConversionError, convert_protocol
from tests.protocols import CCCV, ONE_C_DISCHARGE, PARAMETERIZED_DISCHARGE

# The protocols of seed 001, as the client documentation writes them.
SPM = {"type": "SPM"}
DN = "Negative particle diffusivity [m2.s-1]"


def test_flat_form_parses() -> None:
    protocol = parse_protocol(ONE_C_DISCHARGE)
    assert protocol.initial_soc == 1.0 and protocol.temperature_c == 25.0
    (step,) = protocol.steps
    assert (step.direction, step.mode, step.value) == ("Discharge", "C-rate", 1.0)
    assert step.ends == (EndCondition("Voltage", "<", 2.5),)


def test_nested_form_parses_with_string_ends_and_group_labels() -> None:
    protocol = parse_protocol(CCCV)
    assert protocol.initial_soc == 1.0 and protocol.temperature_c == 25.0
    assert [(s.number, s.label, s.direction, s.mode, s.value) for s in protocol.steps] == [
        (1, "CC Charge", "Charge", "C-rate", 1.0),
        (2, "CV Charge", "Charge", "Voltage", 4.2),
        (3, "Discharge", "Discharge", "C-rate", 1.0),
    ]
    assert [s.ends for s in protocol.steps] == [
        (EndCondition("Voltage", ">", 4.2),),
        (EndCondition("Current", "<", 0.05),),
        (EndCondition("Voltage", "<", 2.7),),
    ]


def test_end_condition_units_and_durations() -> None:
    text = """
steps:
  - Rest:
      duration: 30 min
  - Charge:
      mode: Current
      value: 2
      ends: ["Voltage [V] >= 4.1", "Current < 50 mA", "Time > 1.5 h", {variable: "C-rate", value: "C/20"},
             "Current < C/10"]
"""
    rest, charge = parse_protocol(text).steps
    assert rest.direction == "Rest" and rest.ends == (EndCondition("Time", ">", 1800.0),)
    assert charge.ends == (
        EndCondition("Voltage", ">", 4.1),
        EndCondition("Current", "<", 0.05),
        EndCondition("Time", ">", 5400.0),
        EndCondition("C-rate", "<", 0.05),
        EndCondition("C-rate", "<", 0.1),
    )


def test_placeholders_are_found_and_filled() -> None:
    assert find_input_references(PARAMETERIZED_DISCHARGE) == ["Initial SOC", "C-rate"]
    assert find_input_references(PARAMETERIZED_DISCHARGE + '\n# input["C-rate"] again, input[\'Other\']') == [
        "Initial SOC", "C-rate", "Other"]
    protocol = parse_protocol(PARAMETERIZED_DISCHARGE, {"Initial SOC": 0.8, "C-rate": 0.5})
    assert protocol.initial_soc == 0.8 and protocol.steps[0].value == 0.5


def test_reserved_experiment_parameters_override_the_global_section() -> None:
    protocol = parse_protocol(CCCV, {"initial_soc": 0.3, "initial_temperature": 40})
    assert protocol.initial_soc == 0.3 and protocol.temperature_c == 40.0


def test_missing_input_names_it() -> None:
    with pytest.raises(MissingInputError, match="'C-rate'") as info:
        parse_protocol(PARAMETERIZED_DISCHARGE, {"Initial SOC": 1.0})
    assert info.value.name == "C-rate" and info.value.step == 1 and info.value.field == "value"


def test_validate_accepts_placeholders_and_names_the_bad_step() -> None:
    assert validate_protocol(PARAMETERIZED_DISCHARGE) == {"valid": True}
    assert validate_protocol(CCCV) == {"valid": True}
    broken = CCCV.replace('"Current < 0.05"', '"Curent < 0.05"')
    verdict = validate_protocol(broken)
    assert verdict["valid"] is False
    assert "step 2 ('CV Charge')" in verdict["error"] and "'ends'" in verdict["error"]
    bad_line = next(i for i, line in enumerate(broken.splitlines(), start=1) if "Curent" in line)
    assert f"line {bad_line}" in verdict["error"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("steps:\n  - direction: Discharge\n    value: 1\n    ends: ['Voltage < 3']\n", "step 1, line 2: missing field 'mode'"),
        ("steps:\n  - Rest:\n      duration: 60\n  - Charge:\n      mode: Amps\n      value: 1\n      duration: 60\n",
         "step 2, field 'mode', line 5: unknown mode 'Amps'"),
        ("steps:\n  - direction: Charge\n    mode: C-rate\n    value: -1\n    ends: ['Voltage > 4']\n",
         "step 1, field 'value', line 4: value must not be negative"),
        ("global:\n  initial_soc: 80\nsteps:\n  - Rest:\n      duration: 60\n", "field 'initial_soc', line 2"),
        ("steps: [\n", "line 2: not valid YAML"),
        ("steps:\n  - Charge:\n      mode: Voltage\n      value: 4.2\n", "step 1, line 2: no end condition"),
    ],
)
def test_protocol_errors_say_where(text: str, expected: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(text)
    assert expected in str(info.value)


def test_current_end_becomes_an_absolute_termination() -> None:
    experiment, initial_soc, kelvin = to_pybamm_experiment(parse_protocol(CCCV), 5.0)
    cv = experiment.steps[1]
    assert initial_soc == 1.0 and kelvin == pytest.approx(298.15)
    assert [(type(t).__name__, t.value, t.operator) for t in cv.termination] == [("CurrentTermination", 0.05, None)]
    assert experiment.steps[0].value == pytest.approx(-5.0)


def test_c_rate_without_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="step 1 uses a C-rate"):
        to_pybamm_experiment(parse_protocol(ONE_C_DISCHARGE), None)


def test_one_c_discharge_matches_a_direct_pybamm_run() -> None:
    out = run_simulation(SPM, ONE_C_DISCHARGE, {}, {}, None)
    experiment = pybamm.Experiment([pybamm.step.c_rate(1, termination="2.5 V", period=60)], temperature=298.15)
    direct = pybamm.Simulation(
        pybamm.lithium_ion.SPM(), experiment=experiment, parameter_values=pybamm.ParameterValues("Chen2020")
    ).solve(initial_soc=1.0)
    ts = out.time_series
    expected = np.interp(ts["Time [s]"].to_numpy(), direct["Time [s]"].entries, direct["Voltage [V]"].entries)
    assert np.max(np.abs(ts["Voltage [V]"].to_numpy() - expected)) < 1e-3
    assert ts["Time [s]"][-1] == pytest.approx(direct["Time [s]"].entries[-1], rel=1e-3)
    assert out.metrics["Discharge capacity [A.h]"] == pytest.approx(direct["Discharge capacity [A.h]"].entries[-1], rel=1e-3)
    assert ts["Current [A]"].min() == pytest.approx(5.0)  # discharge is positive
    assert out.termination == "completed"


@pytest.fixture(scope="module")
def cccv():
    return run_simulation(SPM, CCCV, {"initial_soc": 0.2}, {}, ["X-averaged negative particle surface concentration [mol.m-3]"])


def test_cv_step_with_current_end_runs(cccv) -> None:
    steps = cccv.steps
    assert steps["Step type"].to_list() == ["Constant current charge", "Constant voltage charge", "Constant current discharge"]
    assert steps["Label"].to_list() == ["CC Charge", "CV Charge", "Discharge"]
    cv = cccv.time_series.filter(cccv.time_series["Step count"] == 1)
    assert steps["Duration [s]"][1] > 600
    assert cv["Voltage [V]"].to_numpy() == pytest.approx(4.2, abs=1e-4)
    assert abs(cv["Current [A]"][-1]) == pytest.approx(0.05, rel=0.02)
    assert steps["Charge capacity [A.h]"][1] > 0.1


def test_time_series_resets_capacity_per_step_and_metrics_are_clean(cccv) -> None:
    ts = cccv.time_series
    assert ts["Step count"].unique().sort().to_list() == [0, 1, 2]
    assert "X-averaged negative particle surface concentration [mol.m-3]" in ts.columns
    firsts = ts.group_by("Step count", maintain_order=True).first()
    assert firsts["Discharge capacity [A.h]"].to_list() == [0.0, 0.0, 0.0]
    assert firsts["Charge capacity [A.h]"].to_list() == [0.0, 0.0, 0.0]
    metrics = cccv.metrics
    charged = cccv.steps["Charge capacity [A.h]"].sum()
    assert metrics["Charge capacity [A.h]"] == pytest.approx(charged)
    assert metrics["Discharge capacity [A.h]"] > 0.9 * charged
    assert metrics["Maximum voltage [V]"] == pytest.approx(4.2, abs=1e-3)
    assert metrics["Minimum voltage [V]"] == pytest.approx(2.7, abs=1e-3)
    assert metrics["Discharge energy [W.h]"] > 3.0 * metrics["Discharge capacity [A.h]"]
    assert all(v is None or np.isfinite(v) for v in metrics.values() if not isinstance(v, str))


def test_a_step_already_past_its_end_is_skipped_and_reported() -> None:
    text = """
global: {initial_soc: 0.5}
steps:
  - Discharge: {mode: C-rate, value: 1, ends: ["Voltage < 3.9"]}
  - Rest: {duration: 60}
"""
    out = run_simulation(SPM, text, {}, {}, None)
    assert out.termination == "step 1 skipped (its end condition held at its start)"
    assert out.steps["Protocol step"].to_list() == [2] and out.steps["Step type"].to_list() == ["Rest"]


def test_design_parameters_change_the_result_like_a_fresh_build() -> None:
    slow = run_simulation(SPM, ONE_C_DISCHARGE, {}, {DN: 1e-14}, None)
    values = pybamm.ParameterValues("Chen2020")
    values.update({DN: 1e-14})
    experiment = pybamm.Experiment([pybamm.step.c_rate(1, termination="2.5 V", period=60)], temperature=298.15)
    direct = pybamm.Simulation(pybamm.lithium_ion.SPM(), experiment=experiment, parameter_values=values).solve(initial_soc=1.0)
    assert slow.metrics["Discharge capacity [A.h]"] == pytest.approx(direct["Discharge capacity [A.h]"].entries[-1], rel=1e-3)
    thin = run_simulation(SPM, ONE_C_DISCHARGE, {}, {"Positive electrode thickness [m]": 50e-6}, None)
    assert thin.metrics["Discharge capacity [A.h]"] < 0.8 * slow.metrics["Discharge capacity [A.h]"]


def test_unusable_model_inputs_are_named() -> None:
    with pytest.raises(ModelConfigError, match="'Not a parameter'"):
        run_simulation(SPM, ONE_C_DISCHARGE, {}, {"Not a parameter": 1.0}, None)
    with pytest.raises(ModelConfigError, match="'Not a variable'"):
        run_simulation(SPM, ONE_C_DISCHARGE, {}, {}, ["Not a variable"])
    with pytest.raises(ModelConfigError, match="'XYZ'"):
        run_simulation({"type": "XYZ"}, ONE_C_DISCHARGE, {}, {}, None)


def test_grid_doe_is_the_cartesian_product() -> None:
    doe = {
        "sampling": "grid",
        "rows": [
            {"type": "discrete", "name": "a", "values": [1, 2, 3]},
            {"type": "range", "name": "b", "min": 10, "max": 20, "count": 3},
        ],
    }
    runs = expand_doe(doe, None, seed=0)
    assert len(runs) == 9 == expected_doe_simulation_count(DesignParametersDOE.model_validate(doe))
    assert runs == [{"a": a, "b": b} for a in (1.0, 2.0, 3.0) for b in (10.0, 15.0, 20.0)]


@pytest.mark.parametrize("sampling", ["random", "latin_hypercube"])
def test_sampled_doe_is_reproducible_and_in_bounds(sampling: str) -> None:
    doe = {
        "sampling": sampling,
        "count": 20,
        "rows": [
            {"type": "range", "name": "x", "min": 1e-14, "max": 5e-14},
            {"type": "discrete", "name": "z", "values": [7, 8]},
            {"type": "normal", "name": "y", "mean": 1.0, "std": 0.1},
        ],
    }
    runs = expand_doe(doe, None, seed="batch-1")
    assert len(runs) == 20 == expected_doe_simulation_count(DesignParametersDOE.model_validate(doe))
    assert runs == expand_doe(doe, None, seed="batch-1")
    assert runs != expand_doe(doe, None, seed="batch-2")
    assert all(1e-14 <= r["x"] <= 5e-14 and r["z"] in (7.0, 8.0) for r in runs)
    assert 0.9 < np.mean([r["y"] for r in runs]) < 1.1
    if sampling == "latin_hypercube":  # one draw in each twentieth of the range
        strata = sorted(int((r["x"] - 1e-14) / 4e-14 * 20) for r in runs)
        assert strata == list(range(20))


def test_doe_without_count_is_one_run_and_conditions_keep_their_order() -> None:
    doe = {"sampling": "random", "rows": [{"type": "range", "name": "x", "min": 0, "max": 1}]}
    assert len(expand_doe(doe, None, seed=1)) == 1
    conditions = [{"experiment_parameters": {"T": 25}, "design_parameters": {"x": 1}},
                  {"experiment_parameters": {}, "design_parameters": {}}]
    assert expand_doe(None, conditions, seed=None) == [{"x": 1.0}, {}]
    assert expand_doe(None, None, seed=None) == [{}]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"type": "range", "name": "b", "min": 2, "max": 1, "count": 3}, "row 1 ('b'): field 'min'"),
        ({"type": "range", "name": "b", "min": 0, "max": 1}, "row 1 ('b'): field 'count'"),
        ({"type": "discrete", "name": "a", "values": ["x"]}, "row 1 ('a'): field 'values'"),
        ({"type": "uniform", "name": "a"}, "row 1 ('a'): field 'type'"),
        ({"type": "normal", "name": "n", "mean": 1, "count": 2}, "row 1 ('n'): field 'std'"),
    ],
)
def test_bad_doe_rows_name_row_and_field(row: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        expand_doe({"sampling": "grid", "rows": [row]}, None, seed=0)


def _text(result: dict) -> str:
    return base64.b64decode(result["primary"]["content_base64"]).decode("utf-8")


def test_maccor_round_trip_verifies() -> None:
    result = convert_protocol(CCCV, "maccor", filename_stem="cccv", verify=True)
    assert result["target"] == "maccor" and result["primary"]["filename"] == "cccv.000"
    root = ET.fromstring(_text(result).encode())
    kinds = [step.findtext("StepType").strip() for step in root.iter("TestStep")]
    assert kinds == ["Charge", "Charge", "Dischrge", "End"]
    assert [step.findtext("StepMode").strip() for step in root.iter("TestStep")][:3] == ["C-Rate", "Voltage", "C-Rate"]
    assert vendor.maccor.read(_text(result))[1].ends == (EndCondition("Current", "<", 0.05),)


def test_biologic_round_trip_verifies_with_currents() -> None:
    result = convert_protocol(CCCV, "biologic_bttest", nominal_capacity_ah=5.0, verify=True)
    text = _text(result)
    assert result["primary"]["filename"] == "protocol.mps" and "Modulo Bat" in text
    steps = vendor.biologic.read(text)
    assert [(s.direction, s.mode, s.value) for s in steps] == [
        ("Charge", "Current", 5.0), ("Charge", "Voltage", 4.2), ("Discharge", "Current", 5.0)]
    with pytest.raises(ProtocolConversionError, match="nominal_capacity_ah"):
        convert_protocol(CCCV, "biologic_bttest")


def test_verify_names_the_first_changed_step(monkeypatch: pytest.MonkeyPatch) -> None:
    fmt = vendor._FORMATS["maccor"]

    def lossy_read(text: str):
        steps = fmt.read(text)
        steps[1] = type(steps[1])(2, "Charge", "Voltage", 4.1, steps[1].ends)
        return steps

    monkeypatch.setitem(vendor._FORMATS, "maccor", type(fmt)(fmt.extension, fmt.media_type, fmt.write, lossy_read, True))
    with pytest.raises(ProtocolConversionError, match="step 2") as info:
        convert_protocol(CCCV, "maccor", verify=True)
    assert info.value.step == 2
