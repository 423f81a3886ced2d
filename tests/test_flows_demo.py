"""The demo end to end (its own sandbox, the test Prefect server): a cell ageing over three tests, each refitted
once to its hidden truth, the drift flagged at the test that moved, files written, sandbox stopped."""

from __future__ import annotations

import json
import os

import httpx
import pybamm
import pytest

from flows.demo import AGEING, MODES, R_CONTACT, run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]
CELL_SLUG = "demo-nmc811-21700-cell-7"


def test_demo_follows_the_cell_across_three_tests_and_stops_its_sandbox(sandbox, tmp_path, monkeypatch, capsys):
    for name in sandbox.client_env():
        monkeypatch.setenv(name, os.environ[name])  # restored afterwards: the demo points them at its own sandbox
    refit = run(tmp_path)

    label, _, truth = AGEING[-1]
    assert refit.fitted.test == label and refit.tests == len(AGEING)
    changes = {c.parameter: c.change_vs_baseline for c in refit.verdict.changes}
    for name, _ in MODES:
        tolerance = 0.2 if name == R_CONTACT else 0.05
        assert refit.fitted.values[name] == pytest.approx(truth[name], rel=tolerance), name
        if name != R_CONTACT:  # the degradation modes' change since the first test, within 1 percentage point
            assert changes[name] == pytest.approx(truth[name] / AGEING[0][2][name] - 1, abs=0.01), name
    assert max(refit.fitted.rmse_mv.values()) < 10.0
    assert refit.verdict.verdict == "drifted" and refit.verdict.baseline_test == AGEING[0][0]
    written = {p.name for p in (tmp_path / "parameters").iterdir()}
    assert f"{CELL_SLUG}.json" in written and any(n.endswith(".png") for n in written)
    saved = json.loads((tmp_path / "parameters" / f"{CELL_SLUG}.json").read_text())["parameters"]
    assert {p["name"] for p in saved} >= {n for n, _ in MODES}
    bpx = pybamm.ParameterValues.create_from_bpx_obj(
        json.loads((tmp_path / "parameters" / f"{CELL_SLUG}.bpx.json").read_text()))
    assert bpx[R_CONTACT] == pytest.approx(refit.fitted.values[R_CONTACT])  # kept in BPX's User-defined section
    assert len(list((tmp_path / "cycler-files").glob("rpt-*/*"))) == 2 * len(AGEING)

    shown = capsys.readouterr().out
    assert shown.count("baseline") >= 1 and "| ok" not in shown
    assert "3 -> 3" in shown  # re-run with unchanged data: no new pipeline
    assert f"fitted-parameters-{CELL_SLUG}-history" in shown and "/runs/flow-run/" in shown
    for label, *_ in AGEING:
        assert label in shown
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{os.environ['IONWORKS_API_URL']}/healthz", timeout=2)
