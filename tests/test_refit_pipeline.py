"""The default ageing refit's config, built offline: its stages, names, bounds and what the engine accepts."""

from __future__ import annotations

import pytest
from ionworks.validators import run_validators_outbound

from ionworks_prefect.refit_pipeline import FITTED_PARAMETERS, RefitData, ageing_refit_pipeline
from ionworks_sandbox.compute.interpolants import parse_piecewise_entry
from ionworks_sandbox.compute.models import fittable_names, parse_model
from ionworks_sandbox.compute.pipeline import check_pipeline

TESTS = [
    RefitData(name="1C", measurement_id="m-1c"),
    RefitData(name="C/10", measurement_id="m-c10"),
    RefitData(name="C/2", measurement_id="m-c2"),
]


def test_the_window_and_kinetics_are_fitted_on_every_test_against_the_base_ocp_then_the_ocp_knots():
    elements = ageing_refit_pipeline(TESTS)["elements"]
    assert list(elements) == ["balance_and_kinetics", "ocp", "ocp_shape"]
    assert sorted(elements["balance_and_kinetics"]["objectives"]) == ["1C", "C/10", "C/2"]
    assert elements["balance_and_kinetics"]["objectives"]["C/10"]["data"] == "db:m-c10"
    assert sorted(elements["ocp_shape"]["objectives"]) == ["1C", "C/10", "C/2"]
    fitted = [name for element in ("balance_and_kinetics", "ocp_shape") for name in elements[element]["parameters"]]
    assert sorted(fitted) == sorted(FITTED_PARAMETERS)  # each fitted once: the knots never move the window
    for element in ("balance_and_kinetics", "ocp_shape"):
        for name, spec in elements[element]["parameters"].items():
            low, high = spec["bounds"]
            assert low <= spec["initial_value"] <= high, name


def test_later_tests_hold_the_first_tests_ocp():
    knots = {name: 4.0 for name in FITTED_PARAMETERS if " at Stoichiometry " in name}
    elements = ageing_refit_pipeline(TESTS, ocp_knots=knots)["elements"]
    assert list(elements) == ["balance_and_kinetics", "ocp_knots", "ocp"]
    assert elements["ocp_knots"]["values"] == knots


def test_base_ocps_can_be_kept():
    elements = ageing_refit_pipeline(TESTS, adapt_ocp=False)["elements"]
    assert list(elements) == ["balance_and_kinetics"]


def test_the_config_is_what_the_client_sends_and_the_engine_accepts():
    config = ageing_refit_pipeline(TESTS, model="DFN")
    elements = run_validators_outbound(config)["elements"]
    check_pipeline(elements)
    model = parse_model(elements["balance_and_kinetics"]["objectives"]["1C"]["options"]["model"], "model")
    known = parse_piecewise_entry(elements["ocp"], "elements.ocp", {})
    assert set(FITTED_PARAMETERS) <= fittable_names(model, known)


@pytest.mark.parametrize("tests", [[], [TESTS[0], TESTS[0]]])
def test_no_tests_or_repeated_names_are_refused(tests):
    with pytest.raises(ValueError):
        ageing_refit_pipeline(tests)
