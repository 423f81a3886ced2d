"""Fitted parameter sets (tables, JSON, BPX, drift) and publishing them as Prefect artifacts, events and assets."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Optional

import httpx
import ionworks_schema as iws
import numpy as np
import pybamm
import pytest
from prefect import flow
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.worker import EventsWorker

from ionworks_prefect import (
    FittedParameterSet,
    ParameterSetError,
    PipelineResult,
    PollSchedule,
    publish_parameter_set,
    run_pipeline,
    upload_measurement,
)
from ionworks_prefect.events import slug
from ionworks_prefect.results import ElementSummary

from .measurement_frames import new_instance, unique
from .pipeline_configs import DN, DP, TRUE, fit_pipeline, synthetic

FAST = PollSchedule(first=0.1, factor=1.5, ceiling=1.0)


def _result(dn: float, pipeline_id: str = "p-1") -> PipelineResult:
    fit = {"type": "OptimizationResult", "parameter_values": {DN: dn}, "x": [dn], "fun": 0.002, "cost": 0.002}
    validation = {"type": "ValidationResult", "parameter_values": {},
                  "summary_stats": {"1C": {"RMSE": 0.0015}, "0.5C": {"RMSE": 0.0005}}}
    raw = {"known": {"type": "PassthroughResult", "parameter_values": {"Ambient temperature [K]": 298.15}},
           "fit": fit, "validate": validation}
    return PipelineResult(
        pipeline_id=pipeline_id,
        parameter_values={"Ambient temperature [K]": 298.15, DP: TRUE[DP], DN: dn, "model": {"type": "SPMe"}},
        element_results=raw,
        elements={name: ElementSummary.from_result(name, iws.from_config(r)) for name, r in raw.items()},
        config=fit_pipeline("db:m-1").to_config(),
        completed_at="2026-11-23T10:00:00+00:00",
    )


def test_from_pipeline_result_keeps_bounds_costs_and_provenance():
    fitted = FittedParameterSet.from_pipeline_result(_result(4.9e-14), cell="cell-7")
    (parameter,) = fitted.parameters
    assert (parameter.name, parameter.value, parameter.lower_bound, parameter.upper_bound) == (DN, 4.9e-14, 1e-14, 1e-13)
    assert parameter.initial_value == 2e-14 and parameter.element == "fit" and not parameter.at_bound
    assert fitted.costs == {"fit": 0.002} and fitted.measurement_ids == ["m-1"]
    assert fitted.rmse_mv == pytest.approx({"1C": 1.5, "0.5C": 0.5})
    assert fitted.fixed_values == {"Ambient temperature [K]": 298.15, DP: TRUE[DP]}
    assert fitted.created_at.isoformat() == "2026-11-23T10:00:00+00:00"
    table = fitted.to_polars()
    assert table.columns == ["parameter", "value", "lower_bound", "upper_bound", "initial_value", "element", "at_bound"]
    assert FittedParameterSet.from_json(fitted.to_json()) == fitted
    at_bound = FittedParameterSet.from_pipeline_result(_result(1e-13))
    assert at_bound.parameters[0].at_bound


def test_a_result_without_fits_is_refused():
    entry_only = PipelineResult(pipeline_id="p", parameter_values={"x": 1.0}, element_results={"known": {}},
                                elements={"known": ElementSummary(name="known", result_type="PassthroughResult")})
    with pytest.raises(ParameterSetError, match="no fitted parameters"):
        FittedParameterSet.from_pipeline_result(entry_only)


def test_diff_reports_absolute_and_relative_drift():
    old = FittedParameterSet.from_pipeline_result(_result(5e-14, "p-1"))
    new = FittedParameterSet.from_pipeline_result(_result(6e-14, "p-2"))
    drift = new.diff(old)
    row = drift.row(0, named=True)
    assert row["parameter"] == DN and row["absolute_change"] == pytest.approx(1e-14)
    assert row["relative_change"] == pytest.approx(0.2)
    assert new.diff(None)["previous"].is_null().all()


def test_bpx_export_validates_and_reproduces_the_fitted_model():
    fitted = FittedParameterSet.from_pipeline_result(_result(4.9e-14))
    document = fitted.to_bpx()
    assert document["Header"]["Model"] == "SPMe"
    assert document["Parameterisation"]["Negative electrode"]["Diffusivity [m2.s-1]"] == 4.9e-14
    json.dumps(document)  # plain JSON
    exported = pybamm.ParameterValues.create_from_bpx_obj(document)
    native = pybamm.ParameterValues("Chen2020")
    native.update({DN: 4.9e-14, DP: TRUE[DP]})
    native = native.set_initial_state(1.0) or native

    def discharge(values) -> tuple[np.ndarray, np.ndarray]:
        solution = pybamm.Simulation(pybamm.lithium_ion.SPMe(), parameter_values=values).solve([0, 3000])
        return solution["Time [s]"].entries, solution["Voltage [V]"].entries

    (t1, v1), (t2, v2) = discharge(native), discharge(exported)
    grid = np.linspace(0, min(t1[-1], t2[-1]), 200)
    rmse_mv = 1000 * np.sqrt(np.mean((np.interp(grid, t1, v1) - np.interp(grid, t2, v2)) ** 2))
    assert rmse_mv < 5.0


def _with_fit(result: PipelineResult, fitted: dict[str, float], held: Optional[dict[str, float]] = None
              ) -> PipelineResult:
    """``result`` with ``fitted`` added to its fit element and ``held`` as values the pipeline fixed."""
    fit = result.elements["fit"].model_copy(update={"parameter_values": {**result.elements["fit"].parameter_values,
                                                                          **fitted}})
    return result.model_copy(update={"parameter_values": {**result.parameter_values, **(held or {}), **fitted},
                                     "elements": {**result.elements, "fit": fit}, "config": None})


def test_bpx_export_refuses_a_parameter_pybamm_does_not_know():
    result = _with_fit(_result(5e-14), {"Lithium plating rate fudge [-]": 1.0})
    with pytest.raises(ParameterSetError, match="Lithium plating rate fudge"):
        FittedParameterSet.from_pipeline_result(result).to_bpx()


def test_bpx_export_keeps_a_held_ocp_curve_and_a_contact_resistance():
    """A later test's set: the positive OCP held at knots an earlier fit found, a contact resistance fitted."""
    ocp = pybamm.ParameterValues("Chen2020")["Positive electrode OCP [V]"]
    at = np.array([0.2, 0.3, 0.45, 0.6, 0.8, 1.0])
    knots = {f"Positive electrode OCP at Stoichiometry {a:g} [V]": float(ocp(pybamm.Scalar(a)).evaluate()) + 0.02
             for a in at}
    resistance = {"Contact resistance [Ohm]": 0.012, "SEI resistivity [Ohm.m]": 3e5}
    fitted = FittedParameterSet.from_pipeline_result(_with_fit(_result(4.9e-14), resistance, knots))
    document = fitted.to_bpx()
    assert document["Parameterisation"]["User-defined"] == resistance
    assert "no field for Contact resistance [Ohm], SEI resistivity [Ohm.m]" in document["Header"]["Description"]
    table = document["Parameterisation"]["Positive electrode"]["OCP [V]"]
    assert np.interp(at, table["x"], table["y"]) == pytest.approx(list(knots.values()))

    exported = pybamm.ParameterValues.create_from_bpx_obj(json.loads(json.dumps(document)))
    assert {k: exported[k] for k in resistance} == resistance
    native = pybamm.ParameterValues("Chen2020")
    y = list(knots.values())
    native.update({DN: 4.9e-14, DP: TRUE[DP], **resistance, "Positive electrode OCP [V]": lambda sto: pybamm.Interpolant(
        at, np.array(y), sto, interpolator="linear", extrapolate=True)})
    native.set_initial_state(1.0, inplace=True)

    def discharge(values) -> tuple[np.ndarray, np.ndarray]:
        model = pybamm.lithium_ion.SPMe({"contact resistance": "true"})
        solution = pybamm.Simulation(model, parameter_values=values).solve([0, 3000])
        return solution["Time [s]"].entries, solution["Voltage [V]"].entries

    (t1, v1), (t2, v2) = discharge(native), discharge(exported)
    grid = np.linspace(0, min(t1[-1], t2[-1]), 200)
    assert 1000 * np.sqrt(np.mean((np.interp(grid, t1, v1) - np.interp(grid, t2, v2)) ** 2)) < 5.0
    unchanged = FittedParameterSet.from_pipeline_result(_result(4.9e-14)).to_bpx()
    assert "User-defined" not in unchanged["Parameterisation"]
    assert unchanged["Parameterisation"]["Positive electrode"]["OCP [V]"] != table


def _events(name: str, resource_prefix: str, until=bool, timeout: float = 20.0) -> list:
    """Events named ``name`` on resources starting with ``resource_prefix``, polled until ``until(events)``."""
    EventsWorker.drain_all()
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as prefect:
        while True:
            page = prefect.read_events(EventFilter(event=EventNameFilter(name=[name]),
                                                   resource=EventResourceFilter(id_prefix=[resource_prefix])),
                                       limit=50)
            if until(page.events) or time.monotonic() > deadline:
                return page.events
            time.sleep(0.5)


@pytest.mark.usefixtures("prefect_server", "sandbox")
async def test_publish_tables_report_plot_drift_and_lineage(client, tmp_path, requests_since):
    _, instance_id = new_instance(client)
    cell = unique("Cell 7")
    measurement = upload_measurement.fn(synthetic(), instance_id, "rpt-1C")
    publishing = []

    @flow
    async def fit_and_publish(optimizer: str, history: list):
        result = await run_pipeline(fit_pipeline(measurement.db_ref, optimizer=optimizer, name=unique("fit")),
                                    poll_schedule=FAST)
        fitted = FittedParameterSet.from_pipeline_result(result, cell=cell, test=f"RPT {len(history)}")
        publishing.append(time.time())
        return fitted, await publish_parameter_set(fitted, history=history, image_dir=tmp_path, drift_threshold=0.05)

    first_set, first = await fit_and_publish("dummy", [])  # initial guess only: 2e-14
    second_set, second = await fit_and_publish("de", [first_set])  # the real fit: ~5e-14, a large drift
    read = [r[2].partition("?")[0] for r in requests_since(publishing[-1]) if second_set.pipeline_id in r[2]]
    assert read.count(f"/pipelines/{second_set.pipeline_id}/elements") == 1, read  # one listing for all series
    key = f"fitted-parameters-{cell.lower().replace(' ', '-')}"
    assert (first.table_key, second.report_key, second.history_key) == (key, f"{key}-report", f"{key}-history")
    assert (first.verdict, first.drifted, second.verdict, second.drifted) == ("baseline", [], "drifted", [DN])

    table = Artifact.get(key, _sync=True)
    (row,) = json.loads(table.data)
    assert row["Parameter"] == "Negative particle diffusivity" and row["Unit"] == "m2.s-1"
    assert float(row["Value"]) == pytest.approx(second_set.values[DN], rel=1e-3)
    assert row["vs previous"].startswith("+1") and row["vs previous"].endswith(" %")
    assert table.description.startswith("RPT 1: Negative particle diffusivity") and "vs baseline" in table.description
    history = json.loads(Artifact.get(f"{key}-history", _sync=True).data)
    assert [h["Test"] for h in history] == ["RPT 0", "RPT 1"] and history[1]["Verdict"] == "drifted"
    report = Artifact.get(f"{key}-report", _sync=True).data
    assert report.count("data:image/png;base64,") == 2 and "**Verdict: drifted.** Drifted: Negative particle" in report
    assert second.image_path and open(second.image_path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    link = re.search(r"\[open in Ionworks\]\(([^)\s]+)\)", report)[1]
    assert link.endswith(f"/pipelines/{second_set.pipeline_id}")
    page = httpx.get(link)  # the link opens the pipeline's page on the sandbox
    assert page.status_code == 200 and f"{second_set.values[DN]:.6g}" in page.text

    assert await asyncio.to_thread(_events, "ionworks.pipeline.completed", f"ionworks.pipeline.{second_set.pipeline_id}")
    assert await asyncio.to_thread(_events, "ionworks.measurement.uploaded", f"ionworks.measurement.{measurement.id}")
    scope = f"ionworks://project/{client.project_id}"

    def lineage_complete(events) -> bool:
        keys = {e.resource.id for e in events}
        return {f"{scope}/measurement/{measurement.id}", f"{scope}/pipeline/{second_set.pipeline_id}",
                f"{scope}/parameter-set/{slug(cell)}"} <= keys

    materialized = await asyncio.to_thread(_events, "prefect.asset.materialization.succeeded", scope,
                                           lineage_complete)
    assert lineage_complete(materialized)
