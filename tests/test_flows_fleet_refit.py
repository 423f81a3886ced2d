"""The fleet_refit flow: each cell its own named and tagged run, bounded by limits it creates, one cell's failure
shown in the fleet's final state, and the fleet view with one row per cell."""

from __future__ import annotations

import re

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId, FlowRunFilterTags

from ionworks_prefect import CellTarget, upload_measurement
from ionworks_prefect.flows.fleet_refit import FleetRefitFailed, fleet_refit
from ionworks_prefect.refit_pipeline import DN, FitRange
from ionworks_prefect.settings import IonworksSettings

from .measurement_frames import unique
from .test_flows_nightly_refit import TRUE_DN, discharge

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")
DN_ONLY = {DN: FitRange(initial_value=2e-14, bounds=(1e-14, 1e-13))}


async def test_each_cell_is_its_own_run_and_a_failure_shows_in_the_fleet_state(client):
    spec = unique("fleet")
    for name, seed in (("cell-a", 31), ("cell-b", 32)):
        upload_measurement.fn(discharge(seed=seed), CellTarget(specification=spec, instance=name), "RPT 0 1C",
                              tags=["rpt:RPT 0"])
    client.cell_instance.create(client.cell_spec.list(name_exact=spec)[0].id, {"name": "cell-c"})  # nothing to fit

    state = await fleet_refit(spec, parameters=DN_ONLY, return_state=True)
    assert state.is_failed()
    with pytest.raises(FleetRefitFailed, match=f"1 of 3 cell\\(s\\) of {spec} failed: {spec}/cell-c"):
        await state.aresult()

    async with get_client() as prefect:
        children = await prefect.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])))
        tagged = await prefect.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[f"cell:{spec}/cell-a"])))
        settings = IonworksSettings()
        fleet_limit = await prefect.read_global_concurrency_limit_by_name(settings.fleet_concurrency_limit)
        api_limit = await prefect.read_global_concurrency_limit_by_name(settings.rate_limit)
    refits = sorted(r.name for r in children if r.name.startswith("refit "))
    assert refits == [f"refit {spec}/cell-a", f"refit {spec}/cell-b", f"refit {spec}/cell-c"]
    assert [r.name for r in tagged] == [f"refit {spec}/cell-a"] and tagged[0].state.is_completed()
    assert fleet_limit.limit == settings.fleet_concurrency
    assert (api_limit.limit, api_limit.slot_decay_per_second) == (settings.rate_limit_burst,
                                                                 settings.rate_limit_per_second)

    view = (await Artifact.aget(f"fleet-{spec.lower()}")).data
    assert "3 cell(s), 1 flagged" in view
    rows = {re.match(r"\| \[?(cell-\w)", line)[1]: line for line in view.splitlines() if line.startswith("| ")
            and "cell-" in line}
    assert set(rows) == {"cell-a", "cell-b", "cell-c"}
    assert "refit failed" in rows["cell-c"] and "- **cell-c**: No processed time-series measurement" in view
    assert "| baseline |" in rows["cell-a"] and re.search(r"\| \d+\.\d \|", rows["cell-a"]) and "e-14" in rows["cell-a"]
    report = await Artifact.aget(f"fitted-parameters-{spec.lower()}-cell-b-report")
    assert "[cell-b](http://" in rows["cell-b"] and f"/artifacts/artifact/{report.id})" in rows["cell-b"]
    value = float(rows["cell-a"].split("|")[5].split()[0])
    assert value == pytest.approx(TRUE_DN, rel=0.05)


async def test_the_fleet_view_holds_hundreds_of_cells_and_single_cell_updates_merge():
    """A Prefect Variable holds at most 5,000 characters: the rows of 300 cells are kept one Variable each."""
    from ionworks_prefect.fleet import failed_row, fleet_key, publish_fleet_summary

    spec = unique("big-fleet")
    rows = {f"cell-{i:03d}": failed_row(f"cell-{i:03d}", f"reason {i} " + "x" * 40) for i in range(300)}
    await publish_fleet_summary.fn(spec, rows, replace=True)
    await publish_fleet_summary.fn(spec, {"cell-007": {**rows["cell-007"], "Verdict": "ok"}})  # one cell's refit
    await publish_fleet_summary.fn(unique("other-fleet"), {"cell-007": rows["cell-007"]})  # another spec's cell

    view = (await Artifact.aget(fleet_key(spec))).data
    assert "300 cell(s), 299 flagged" in view and view.count("| cell-") == 300
    assert re.search(r"\| cell-007 \|[^\n]*\| ok \|", view)

    await publish_fleet_summary.fn(spec, {name: rows[name] for name in ("cell-001", "cell-002")}, replace=True)
    view = (await Artifact.aget(fleet_key(spec))).data
    assert "2 cell(s), 2 flagged" in view and view.count("| cell-") == 2
