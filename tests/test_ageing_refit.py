"""An ageing cell over four reference performance tests, refitted night by night with the default refit.

The data are simulated with PyBaMM (tests/aged_cells.py) with known steps in the degradation modes: RPT 1 loses
2 % of its lithium inventory (below the 5 % drift threshold), RPT 2 is unchanged, RPT 3 loses 8 % of its lithium
and of the negative electrode's active material and 6 % of the positive's. Each RPT is a C/5 and a 1C discharge
after a rest, with a contact resistance and 1 mV noise.

Stated tolerances, against the truth of each RPT: lithium inventory (initial negative concentration) and both
active-material fractions within 1 %, and each one's change since RPT 0 within 0.5 percentage point of the true
change; contact resistance within 5 % and the diffusivities within 10 % (none of them changes: the default
refit flags them beyond 10 %, ``KINETIC_DRIFT_THRESHOLDS``); every test's RMSE under twice the 1 mV noise.
Found: the window within 0.1 %, the kinetics within 2.5 %, 1.0-1.1 mV.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from ionworks_prefect import CellTarget, parameter_history, upload_measurement
from ionworks_prefect.flows.nightly_refit import nightly_refit
from ionworks_prefect.refit_pipeline import CN0, DN, DP, EPS_N, EPS_P, R_CONTACT

from .aged_cells import simulate
from .measurement_frames import unique
from .test_flows_nightly_refit import _refits, _verdict_events

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server", "sandbox")]
FRESH = {CN0: 29866.0, EPS_N: 0.75, EPS_P: 0.665, R_CONTACT: 0.01, DN: 3.3e-14, DP: 4.0e-15}
LLI_2 = {**FRESH, CN0: 29866.0 * 0.98}
AGED = {**FRESH, CN0: 29866.0 * 0.92, EPS_N: 0.75 * 0.92, EPS_P: 0.665 * 0.94}
RPTS = (("RPT 0", FRESH), ("RPT 1", LLI_2), ("RPT 2", LLI_2), ("RPT 3", AGED))
DEGRADATION_MODES = (CN0, EPS_N, EPS_P)
START = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)


def _upload(cell: CellTarget, index: int, label: str, truth: dict[str, float]) -> str:
    ids = []
    for rate in (0.2, 1.0):
        frame = simulate(truth, rate, options={"contact resistance": "true"}, seed=10 * index + int(rate * 10))
        ids.append(upload_measurement.fn(frame, cell, f"{label} {rate:g}C", tags=[f"rpt:{label}", f"efc:{100 * index}"],
                                         start_time=START + timedelta(days=45 * index)).cell_instance_id)
    return ids[0]


async def test_four_rpts_recover_each_step_and_flag_drift_at_the_test_that_moved(client):
    cell = CellTarget(specification=unique("ageing"), instance=unique("cell"))
    drifted_at = []
    for index, (label, truth) in enumerate(RPTS):
        instance_id = _upload(cell, index, label, truth)
        refit = await nightly_refit(cell=cell, drift_threshold=0.05, rmse_threshold_mv=20.0)
        assert refit.fitted.test == label and refit.new_fits == 1
        if refit.verdict.drifted:
            drifted_at.append(label)
    assert drifted_at == ["RPT 3"], "drift flagged at the test where the change passed 5 %, not before"
    assert len(_refits(client, instance_id)) == len(RPTS)

    history = parameter_history.fn(cell)
    assert history["test"].to_list() == [label for label, _ in RPTS]
    assert history["equivalent_full_cycles"].to_list() == [0.0, 100.0, 200.0, 300.0]
    assert (history["rmse_mv"] < 2.0).all()
    rows = history.to_dicts()
    for row, (label, truth) in zip(rows, RPTS, strict=True):
        for name in DEGRADATION_MODES:
            assert row[name] == pytest.approx(truth[name], rel=0.01), (label, name)
            true_change = truth[name] / FRESH[name] - 1
            assert row[name] / rows[0][name] - 1 == pytest.approx(true_change, abs=0.005), (label, name)
        assert row[R_CONTACT] == pytest.approx(truth[R_CONTACT], rel=0.05), label
        for name in (DN, DP):
            assert row[name] == pytest.approx(truth[name], rel=0.10), (label, name)

    (event,) = await asyncio.to_thread(_verdict_events, "ionworks.parameters.drifted", instance_id, 1)
    assert event.payload["test"] == "RPT 3" and set(event.payload["drifted"]) == {CN0, EPS_N, EPS_P}
    assert event.payload["change_vs_baseline"][CN0] == pytest.approx(-0.08, abs=0.01)
