"""The doe_sweep flow against the sandbox: one run per grid point, design and metrics per run, table and plot."""

from __future__ import annotations

import json

import pytest
from prefect.artifacts import Artifact

from ionworks_prefect.flows.doe_sweep import CAPACITY, PLOT_KEY, TABLE_KEY, doe_sweep, grid_conditions

from .pipeline_configs import DN, DP
from .protocols import C_RATE_INPUT, discharge

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")

ONE_C = discharge(C_RATE_INPUT, 2.5)


def test_grid_conditions_cover_every_combination_in_order():
    assert grid_conditions({"a": [1, 2], "b": [10, 20]}) == [
        {"design_parameters": {"a": 1.0, "b": 10.0}}, {"design_parameters": {"a": 1.0, "b": 20.0}},
        {"design_parameters": {"a": 2.0, "b": 10.0}}, {"design_parameters": {"a": 2.0, "b": 20.0}}]


async def test_sweep_summarises_each_run_and_plots_capacity_against_the_design(tmp_path):
    grid = {DN: [1e-14, 3e-14, 1e-13], DP: [4e-15, 1e-14]}
    summary = await doe_sweep(ONE_C, grid, experiment_parameters={"C-rate": 1.0}, output_dir=str(tmp_path))

    assert [r.design for r in summary.runs] == [c["design_parameters"] for c in grid_conditions(grid)]
    assert len({r.simulation_id for r in summary.runs}) == 6
    for dp in grid[DP]:
        capacities = [r.metrics[CAPACITY] for r in summary.runs if r.design[DP] == dp]
        assert capacities == sorted(capacities) and capacities[0] < capacities[-1], "faster anode, more capacity"
    assert all(min(r.curve_v) < 2.6 and len(r.curve_x) == len(r.curve_v) > 10 for r in summary.runs)

    assert summary.plot_file and open(summary.plot_file, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    table = (await Artifact.aget(TABLE_KEY)).data
    rows = json.loads(table) if isinstance(table, str) else table
    assert [(r[DN], r[DP]) for r in rows] == [(r.design[DN], r.design[DP]) for r in summary.runs]
    assert [r[CAPACITY] for r in rows] == [r.metrics[CAPACITY] for r in summary.runs]
    assert "data:image/png;base64," in (await Artifact.aget(PLOT_KEY)).data
