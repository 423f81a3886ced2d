"""The nightly_refit flow against the sandbox: fit, publish, files; unchanged data submits nothing; new data refits
and flags drift; a pipeline file with a per-measurement objective over a whole specification."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings

from ionworks_prefect.flows.nightly_refit import (
    DN,
    EACH_MEASUREMENT,
    FitRange,
    MeasurementRef,
    NoMeasurements,
    default_pipeline,
    nightly_refit,
    pipeline_from_file,
)
from ionworks_prefect import CellTarget, upload_measurement
from ionworks_prefect.events import slug

from .measurement_frames import unique
from .pipeline_configs import TRUE, synthetic

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")
DN_ONLY = {DN: FitRange(initial_value=2e-14, bounds=(1e-14, 1e-13))}


def _pipeline_count(client, cell_label: str) -> int:
    """Pipelines the refits of one cell submitted (their description names the cell)."""
    return len(client.pipeline.list(description=f"ilike.%Nightly refit of {cell_label};%", limit=1000))


def _drift_events(cell_label: str, timeout: float = 15.0) -> list:
    """Drift events of one cell's parameter set (blocking; call from a worker thread)."""
    EventsWorker.drain_all()
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as prefect:
        while True:
            page = prefect.read_events(EventFilter(
                event=EventNameFilter(name=["ionworks.parameters.drifted"]),
                resource=EventResourceFilter(id=[f"ionworks.parameter-set.{slug(cell_label)}"])), limit=10)
            if page.events or time.monotonic() > deadline:
                return page.events
            time.sleep(0.5)


def test_default_pipeline_has_one_objective_per_measurement_with_unique_names():
    refs = [MeasurementRef(id=f"m{i}-0000000", name=name, cell_instance_id="c", version="v")
            for i, name in enumerate(["rpt", "rpt", "hppc"])]
    fit = default_pipeline(refs, DN_ONLY, "SPMe")["elements"]["fit"]
    assert list(fit["objectives"]) == ["rpt (m0-00000)", "rpt (m1-00000)", "hppc"]
    assert [o["data"] for o in fit["objectives"].values()] == ["db:m0-0000000", "db:m1-0000000", "db:m2-0000000"]
    assert fit["parameters"][DN]["bounds"] == [1e-14, 1e-13]
    assert fit["cost"] == {"normalization": "identity", "type": "RMSE"}
    assert fit["optimizer"]["type"] == "DifferentialEvolution"


async def test_refit_publishes_then_skips_unchanged_data_then_refits_and_flags_drift(client, tmp_path):
    cell = {"specification": unique("refit-spec"), "instance": unique("cell")}
    label = f"{cell['specification']}/{cell['instance']}"
    upload_measurement.fn(synthetic(), CellTarget(**cell), "rpt-1C")

    first = await nightly_refit(cell=cell, parameters=DN_ONLY, output_dir=str(tmp_path))
    assert first.values[DN] == pytest.approx(TRUE[DN], rel=0.05)
    assert first.cell == label
    written = sorted(p.name for p in tmp_path.iterdir())
    assert f"{slug(label)}.json" in written and f"{slug(label)}.bpx.json" in written
    assert any(name.endswith(".png") for name in written)
    assert json.loads((tmp_path / f"{slug(label)}.json").read_text())["pipeline_id"] == first.pipeline_id
    table = await Artifact.aget(f"fitted-parameters-{slug(label)}")
    assert table is not None and DN in str(table.data)

    before = _pipeline_count(client, label)
    assert before == 1
    again = await nightly_refit(cell=cell, parameters=DN_ONLY)
    assert _pipeline_count(client, label) == before, "unchanged data must submit nothing"
    assert (again.pipeline_id, again.values) == (first.pipeline_id, first.values)
    assert not await asyncio.to_thread(_drift_events, label, 1.0)

    faster_anode = synthetic_with(DN, TRUE[DN] * 3)
    upload_measurement.fn(faster_anode, CellTarget(**cell), "rpt-1C-later")
    refitted = await nightly_refit(cell=cell, parameters=DN_ONLY, drift_threshold=0.05)
    assert _pipeline_count(client, label) == before + 1
    assert refitted.pipeline_id != first.pipeline_id and len(refitted.measurement_ids) == 2
    assert abs(refitted.values[DN] / first.values[DN] - 1) > 0.05
    (event,) = await asyncio.to_thread(_drift_events, label)
    assert DN in event.payload["relative_change"]


def synthetic_with(name: str, value: float):
    from ionworks_sandbox.compute.synthetic import synthetic_discharge

    return synthetic_discharge({**TRUE, name: value}, c_rates=(1.0,), model="SPMe", noise_v=0.001, seed=2)


async def test_pipeline_file_expands_one_objective_per_measurement_across_a_specification(client, tmp_path):
    spec = unique("fleet")
    uploaded = [upload_measurement.fn(synthetic(seed=seed), CellTarget(specification=spec, instance=unique("cell")),
                                      "rpt-1C") for seed in (3, 4)]
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

    fitted = await nightly_refit(specification=spec, pipeline_file=str(pipeline))
    assert sorted(fitted.measurement_ids) == sorted(u.id for u in uploaded)
    assert fitted.values[DN] == pytest.approx(TRUE[DN], rel=0.05)
    assert fitted.cell == spec


async def test_a_cell_without_measurements_fails_clearly(client):
    spec = unique("empty")
    client.cell_instance.create(client.cell_spec.create({"name": spec}).id, {"name": "cell-1"})
    state = await nightly_refit(cell={"specification": spec, "instance": "cell-1"}, return_state=True)
    assert state.is_failed()
    with pytest.raises(NoMeasurements, match=f"{spec}/cell-1"):
        await state.result()
    with pytest.raises(ValueError, match="exactly one"):
        await nightly_refit(cell="some-instance", specification=spec)


async def test_a_deleted_last_fit_is_refitted_not_returned(client):
    cell = {"specification": unique("refit-spec"), "instance": unique("cell")}
    upload_measurement.fn(synthetic(seed=5), CellTarget(**cell), "rpt-1C")
    first = await nightly_refit(cell=cell, parameters=DN_ONLY)
    client.pipeline.delete(first.pipeline_id)
    with temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True}):  # the fetched result is cached otherwise
        again = await nightly_refit(cell=cell, parameters=DN_ONLY)
    assert again.pipeline_id != first.pipeline_id
    assert again.values[DN] == pytest.approx(TRUE[DN], rel=0.05)
