"""The nightly_refit flow against the sandbox: one fit per test, an unchanged night submits nothing, a drifted test
raises the event at that test and not before, history rebuilt from Ionworks alone, joint fits and pipeline files."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from functools import cache

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.worker import EventsWorker

from ionworks_prefect import (
    CellTarget,
    ParameterSetError,
    load_parameter_set,
    parameter_history,
    promote_parameter_set,
    upload_measurement,
)
from ionworks_prefect.artifacts import artifact_key
from ionworks_prefect.cell_tests import MeasurementRef
from ionworks_prefect.events import slug
from ionworks_prefect.flows.nightly_refit import JOINT_TEST, NoMeasurements, nightly_refit
from ionworks_prefect.refit_pipeline import (
    DN,
    EACH_MEASUREMENT,
    FitRange,
    parameter_fit_pipeline,
    pipeline_from_file,
    with_validation,
)

from .measurement_frames import unique

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")
DN_ONLY = {DN: FitRange(initial_value=2e-14, bounds=(1e-14, 1e-13))}
START = datetime(2026, 9, 1, 9, 0, tzinfo=timezone.utc)
TRUE_DN = 5.0e-14


def _refits(client, instance_id: str) -> list:
    """Refit pipelines of one cell instance (their description carries its fit marker)."""
    return list(client.pipeline.list(description=f"ilike.%iwp-fit:{instance_id} %", limit=1000))


def _verdict_events(name: str, instance_id: str, count: int, timeout: float = 20.0) -> list:
    """Events ``name`` on one cell, polled until ``count`` arrived (blocking; call from a worker thread)."""
    EventsWorker.drain_all()
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as prefect:
        while True:
            page = prefect.read_events(EventFilter(event=EventNameFilter(name=[name]),
                                                   resource=EventResourceFilter(id=[f"ionworks.cell.{instance_id}"])),
                                       limit=20)
            if len(page.events) >= count or time.monotonic() > deadline:
                return page.events
            time.sleep(0.5)


@cache
def discharge(dn: float = TRUE_DN, seed: int = 1, c_rate: float = 1.0):
    """An SPMe discharge with 1 mV noise; only Dn differs from Chen2020, so a Dn-only fit can match it."""
    from ionworks_sandbox.compute.synthetic import synthetic_discharge

    return synthetic_discharge({DN: dn}, c_rates=(c_rate,), model="SPMe", noise_v=0.001, seed=seed)


def _upload_rpt(cell: CellTarget, label: str, frame, days: int):
    return upload_measurement.fn(frame, cell, f"{label} 1C", tags=[f"rpt:{label}", f"efc:{days * 2}"],
                                 start_time=START + timedelta(days=days))


def test_parameter_fit_pipeline_has_one_objective_per_measurement_with_unique_names():
    refs = [MeasurementRef(id=f"m{i}-0000000", name=name, cell_instance_id="c", version="v")
            for i, name in enumerate(["rpt", "rpt", "hppc"])]
    config = with_validation(parameter_fit_pipeline(refs, DN_ONLY, "SPMe"))
    fit, validate = config["elements"]["fit"], config["elements"]["validate"]
    assert list(fit["objectives"]) == ["rpt (m0-00000)", "rpt (m1-00000)", "hppc"]
    assert [o["data"] for o in fit["objectives"].values()] == ["db:m0-0000000", "db:m1-0000000", "db:m2-0000000"]
    assert fit["parameters"][DN]["bounds"] == [1e-14, 1e-13]
    assert fit["cost"] == {"normalization": "identity", "type": "RMSE"}
    assert fit["optimizer"]["type"] == "DifferentialEvolution"
    assert validate["element_type"] == "validation" and validate["objectives"] == fit["objectives"]
    assert with_validation(config) == config


async def test_each_test_is_fitted_once_and_drift_is_flagged_at_the_test_that_moved(client, requests_since,
                                                                                    tmp_path):
    cell = CellTarget(specification=unique("refit-spec"), instance=unique("cell"))
    label = f"{cell.specification}/{cell.instance}"
    first = _upload_rpt(cell, "RPT 0", discharge(seed=1), days=0)
    instance_id = first.cell_instance_id
    _upload_rpt(cell, "RPT 1", discharge(seed=2), days=30)

    refit = await nightly_refit(cell=cell, parameters=DN_ONLY, output_dir=str(tmp_path))
    fitted = refit.fitted
    assert len(_refits(client, instance_id)) == 2, "one pipeline per test"
    assert (refit.new_fits, refit.tests, refit.verdict.verdict, refit.cell.label) == (2, 2, "ok", label)
    assert (fitted.test, fitted.cell) == ("RPT 1", label)
    assert fitted.values[DN] == pytest.approx(TRUE_DN, rel=0.05)
    assert set(fitted.rmse_mv) == {"RPT 1 1C"} and 0.5 < fitted.rmse_mv["RPT 1 1C"] < 3.0
    assert (tmp_path / f"{slug(label)}.json").exists()
    assert not await asyncio.to_thread(_verdict_events, "ionworks.parameters.drifted", instance_id, 1, 2.0)

    quiet_night = time.time()
    again = await nightly_refit(cell=cell, parameters=DN_ONLY)
    assert len(_refits(client, instance_id)) == 2, "an unchanged night submits nothing"
    assert (again.new_fits, again.fitted.pipeline_id, again.fitted.values) == (0, fitted.pipeline_id, fitted.values)
    # ... and reads no fit back from Ionworks: the fitted sets come from Prefect's result store.
    sent = [f"{r[1]} {r[2].partition('?')[0]}" for r in requests_since(quiet_night)]
    assert sent and all(r.startswith("GET ") for r in sent), sent
    assert not [r for r in sent if r.endswith(("/result", "/elements")) or "/series" in r], sent

    _upload_rpt(cell, "RPT 2", discharge(TRUE_DN * 1.5, seed=3), days=60)
    latest = (await nightly_refit(cell=cell, parameters=DN_ONLY, drift_threshold=0.05)).fitted
    assert len(_refits(client, instance_id)) == 3, "only the new test is fitted"
    assert latest.test == "RPT 2" and latest.values[DN] == pytest.approx(1.5 * TRUE_DN, rel=0.05)
    (event,) = await asyncio.to_thread(_verdict_events, "ionworks.parameters.drifted", instance_id, 1)
    payload = event.payload
    assert (payload["cell"], payload["test"], payload["baseline_test"]) == (label, "RPT 2", "RPT 0")
    assert payload["change_vs_baseline"][DN] == pytest.approx(0.5, abs=0.08)
    assert payload["values"][DN] == pytest.approx(latest.values[DN]) and payload["rmse_mv"]["RPT 2 1C"] < 3.0

    history = parameter_history.fn(cell)  # rebuilt from Ionworks alone: no Prefect state is read
    assert history["test"].to_list() == ["RPT 0", "RPT 1", "RPT 2"]
    assert history["equivalent_full_cycles"].to_list() == [0.0, 60.0, 120.0]
    assert history["tested_at"].to_list()[2] == START + timedelta(days=60)
    assert history[DN].to_list()[2] == pytest.approx(latest.values[DN])
    assert history["rmse_mv"].max() < 3.0
    rows = (await Artifact.aget(f"{artifact_key(label)}-history")).data
    assert "RPT 2" in rows and "drifted" in rows


async def test_a_joint_fit_uses_every_measurement_once(client):
    cell = CellTarget(specification=unique("joint-spec"), instance=unique("cell"))
    uploaded = [_upload_rpt(cell, f"RPT {i}", discharge(seed=10 + i), days=i) for i in range(2)]
    fitted = (await nightly_refit(cell=cell, parameters=DN_ONLY, joint=True)).fitted
    assert fitted.test == JOINT_TEST and sorted(fitted.measurement_ids) == sorted(u.id for u in uploaded)
    assert fitted.values[DN] == pytest.approx(TRUE_DN, rel=0.05)
    assert len(_refits(client, uploaded[0].cell_instance_id)) == 1


async def test_pipeline_file_expands_one_objective_per_measurement_of_a_test(client, tmp_path):
    cell = CellTarget(specification=unique("file-spec"), instance=unique("cell"))
    uploaded = [upload_measurement.fn(discharge(seed=4, c_rate=rate), cell, f"RPT 0 {rate}C", tags=["rpt:RPT 0"])
                for rate in (1.0, 0.5)]
    pipeline = tmp_path / "refit-dn.yaml"
    pipeline.write_text(f"""
elements:
  fit:
    element_type: data_fit
    objectives:
      "{EACH_MEASUREMENT}":
        type: CurrentDriven
        options: {{model: {{type: SPMe}}}}
    parameters:
      "{DN}": {{initial_value: 2.0e-14, bounds: [1.0e-14, 1.0e-13]}}
    cost: {{type: RMSE}}
    optimizer: {{type: DifferentialEvolution}}
""")
    refs = [MeasurementRef(id=u.id, name=u.name, cell_instance_id=u.cell_instance_id, version="v") for u in uploaded]
    objectives = pipeline_from_file(pipeline, refs)["elements"]["fit"]["objectives"]
    assert [o["data"] for o in objectives.values()] == [f"db:{u.id}" for u in uploaded]

    fitted = (await nightly_refit(cell=cell, pipeline_file=str(pipeline))).fitted
    assert sorted(fitted.measurement_ids) == sorted(u.id for u in uploaded)
    assert fitted.values[DN] == pytest.approx(TRUE_DN, rel=0.05)
    assert set(fitted.rmse_mv) == {"RPT 0 1.0C", "RPT 0 0.5C"}


async def test_a_cell_without_measurements_fails_clearly(client):
    spec = unique("empty")
    client.cell_instance.create(client.cell_spec.create({"name": spec}).id, {"name": "cell-1"})
    state = await nightly_refit(cell={"specification": spec, "instance": "cell-1"}, return_state=True)
    assert state.is_failed()
    with pytest.raises(NoMeasurements, match=f"{spec}/cell-1"):
        await state.result()


async def test_a_deleted_fit_is_refitted_not_returned(client):
    cell = CellTarget(specification=unique("refit-spec"), instance=unique("cell"))
    _upload_rpt(cell, "RPT 0", discharge(seed=5), days=0)
    first = (await nightly_refit(cell=cell, parameters=DN_ONLY)).fitted
    client.pipeline.delete(first.pipeline_id)
    again = (await nightly_refit(cell=cell, parameters=DN_ONLY)).fitted
    assert again.pipeline_id != first.pipeline_id
    assert again.values[DN] == pytest.approx(TRUE_DN, rel=0.05)


async def test_aliases_latest_best_and_a_promoted_production_survive_in_ionworks(client):
    cell = CellTarget(specification=unique("alias-spec"), instance=unique("cell"))
    instance_id = _upload_rpt(cell, "RPT 0", discharge(seed=6), days=0).cell_instance_id
    _upload_rpt(cell, "RPT 1", discharge(seed=7), days=30)
    await nightly_refit(cell=cell, parameters=DN_ONLY)
    history = parameter_history.fn(cell)
    first, second = history["pipeline_id"].to_list()

    assert load_parameter_set.fn(cell, "latest").pipeline_id == second
    best = history.sort("rmse_mv")["pipeline_id"][0]
    assert load_parameter_set.fn(cell, "best").pipeline_id == best
    with pytest.raises(ParameterSetError, match="promoted as 'production'"):
        load_parameter_set.fn(cell, "production")

    promote_parameter_set.fn(cell, first, "production")
    promote_parameter_set.fn(cell, second, "production")  # moves it
    production = load_parameter_set.fn(cell, "production")
    assert (production.pipeline_id, production.test) == (second, "RPT 1")
    assert production.to_bpx()["Parameterisation"]["Negative electrode"]["Diffusivity [m2.s-1]"] == pytest.approx(
        production.values[DN])
    assert sum("[iwp-alias:production]" in (p.description or "") for p in _refits(client, instance_id)) == 1
    with pytest.raises(ParameterSetError, match="worked out from the history"):
        promote_parameter_set.fn(cell, first, "best")
    with pytest.raises(ParameterSetError, match="not a successful refit"):
        promote_parameter_set.fn(cell, "no-such-pipeline", "production")
