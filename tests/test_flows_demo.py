"""The demo end to end (its own sandbox, the test Prefect server): truth recovered, files written, sandbox stopped."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from flows.demo import TRUTH, run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]
CELL_SLUG = "demo-nmc811-21700-cell-7"


def test_demo_recovers_the_hidden_diffusivities_and_stops_its_sandbox(sandbox, tmp_path, monkeypatch, capsys):
    for name in sandbox.client_env():
        monkeypatch.setenv(name, os.environ[name])  # restored afterwards: the demo points them at its own sandbox
    fitted = run(tmp_path)

    for name, truth in TRUTH.items():
        assert fitted.values[name] == pytest.approx(truth, rel=0.02)
    assert all(cost < 0.002 for cost in fitted.costs.values()), "RMSE in volts, near the 1 mV noise"
    written = {p.name for p in (tmp_path / "parameters").iterdir()}
    assert {f"{CELL_SLUG}.json", f"{CELL_SLUG}.bpx.json"} <= written and any(n.endswith(".png") for n in written)
    assert json.loads((tmp_path / "parameters" / f"{CELL_SLUG}.bpx.json").read_text())["Header"]["BPX"] == 1.0
    assert {p.name for p in (tmp_path / "cycler-files").iterdir()} == {"rpt-1C.mpt", "rpt-0.5C.csv"}

    shown = capsys.readouterr().out
    assert "1 -> 1" in shown  # re-run with unchanged data: no new pipeline
    assert f"fitted-parameters-{CELL_SLUG}" in shown and "/runs/flow-run/" in shown
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{os.environ['IONWORKS_API_URL']}/healthz", timeout=2)
