"""Nightly refit: fit each new reference performance test of a cell, judge it, publish the cell's trajectory.

Recipe: read the cell's tests and which of them Ionworks already holds a fit for (``read_refit_state``, in
:mod:`ionworks_prefect.flows.refit_state`; refit pipelines carry a fit marker, see :mod:`ionworks_prefect.history`)
-> build and run one refit pipeline per new test, concurrently -> rebuild the cell's history -> judge each new fit
(fit quality, drift against the first and the previous test, trend; :mod:`ionworks_prefect.verdicts`) and emit
``ionworks.fit.degraded`` / ``ionworks.parameters.drifted`` -> publish the newest set and the history.

An unchanged night submits nothing: every test already has a fit with its current data and pipeline, so the
run only publishes a short "unchanged since" note and returns the newest set. ``joint=True`` fits all of the
cell's measurements together into one set instead.

Example:
    ```python
    import asyncio
    from ionworks_prefect.flows import nightly_refit

    asyncio.run(nightly_refit(cell={"specification": "NMC811 21700", "instance": "cell-7"}))
    ```
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Optional, Union

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from ionworks_prefect import (
    CellTarget,
    FittedParameterSet,
    IonworksPrefectError,
    ParameterSetError,
    publish_parameter_set,
    run_pipeline,
)
from ionworks_prefect.artifacts import publish_unchanged
from ionworks_prefect.cell_tests import CellIdentity, CellTest, cell_label
from ionworks_prefect.events import emit_fit_verdict, slug
from ionworks_prefect.fleet import fleet_row, publish_fleet_summary
from ionworks_prefect.flows.refit_state import (
    NoMeasurements,  # noqa: F401 - the flow raises it
    fitted_history,
    list_fitted_tests,
    read_fitted_set,
    read_refit_state,
)
from ionworks_prefect.history import fit_key, fit_marker, latest_per_test
from ionworks_prefect.refit_pipeline import (
    KINETIC_DRIFT_THRESHOLDS,
    FitRange,
    RefitData,
    ageing_refit_pipeline,
    objective_names,
    parameter_fit_pipeline,
    pipeline_from_file,
    refit_recipe,
    with_validation,
)
from ionworks_prefect.reports import warm_up_plotting
from ionworks_prefect.retries import ionworks_task
from ionworks_prefect.verdicts import FitVerdict, assess_fit

JOINT_TEST = "all tests (joint fit)"


class RefitFailed(IonworksPrefectError):
    """At least one test of the cell could not be fitted (the others were fitted and published)."""


class CellRefit(BaseModel):
    """What a night's refit of one cell found: the newest fitted set, its verdict, how many fits were new."""

    cell: CellIdentity
    fitted: FittedParameterSet = Field(description="The newest test's fitted set (also on an unchanged night).")
    verdict: FitVerdict = Field(description="That set judged against the cell's first and previous tests.")
    new_fits: int = Field(description="Pipelines fitted this run (0 on an unchanged night).")
    tests: int = Field(description="Fitted tests in the cell's history.")


@ionworks_task(name="Build refit pipeline", description="The pipeline one test is fitted with.")
async def build_refit_pipeline(test: CellTest, parameters: Optional[dict[str, FitRange]], pipeline_file: Optional[str],
                               model: str, ocp_knots: Optional[dict[str, float]] = None) -> dict:
    """The pipeline for one test: a pipeline file, the given parameters, or the default ageing refit
    (:func:`ageing_refit_pipeline`; with ``ocp_knots`` it holds that OCP instead of fitting one); with a final
    validation element for the RMSE per objective."""
    if pipeline_file:
        config = pipeline_from_file(pipeline_file, test.measurements)
    elif parameters:
        config = parameter_fit_pipeline(test.measurements, parameters, model)
    else:
        data = [RefitData(name=name, measurement_id=m.id)
                for name, m in zip(objective_names(test.measurements), test.measurements, strict=True)]
        config = await asyncio.to_thread(ageing_refit_pipeline, data, model=model, ocp_knots=ocp_knots)
    return with_validation(config)


def joint_test(tests: list[CellTest]) -> CellTest:
    """All of a cell's tests as one, for a joint fit (its time is the newest test's)."""
    times = [t.tested_at for t in tests if t.tested_at is not None]
    cycles = [t.equivalent_full_cycles for t in tests if t.equivalent_full_cycles is not None]
    return CellTest(cell_instance_id=tests[0].cell_instance_id, label=JOINT_TEST,
                    measurements=[m for t in tests for m in t.measurements], tested_at=max(times) if times else None,
                    equivalent_full_cycles=max(cycles) if cycles else None)


@task(name="Judge fits", cache_policy=NO_CACHE)
async def judge_fits(history: list[FittedParameterSet], new_pipeline_ids: list[str], cell_instance_id: str,
               rules: dict[str, Any]) -> list[FitVerdict]:
    """A verdict for each new fit against the history before it; emits the degraded and drifted events."""
    verdicts = []
    for index, fitted in enumerate(history):
        if fitted.pipeline_id in new_pipeline_ids:
            verdict = assess_fit(history[: index + 1], **rules)
            emit_fit_verdict(cell_instance_id, verdict)
            verdicts.append(verdict)
    return verdicts


@task(name="Write parameter files", cache_policy=NO_CACHE)
async def write_parameter_files(fitted: FittedParameterSet, output_dir: str, model: str) -> list[str]:
    """Write the set as JSON and as BPX (unless a fitted parameter is unknown to PyBaMM: then a warning says which).

    Example:
        >>> await write_parameter_files(fitted, "out", "SPMe")
        ['out/nmc811-cell-7.json', 'out/nmc811-cell-7.bpx.json']
    """
    return await asyncio.to_thread(_write_parameter_files, fitted, output_dir, model)


def _write_parameter_files(fitted: FittedParameterSet, output_dir: str, model: str) -> list[str]:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / slug(fitted.cell or fitted.pipeline_id)
    json_path = stem.with_name(stem.name + ".json")
    json_path.write_text(fitted.to_json())
    written = [str(json_path)]
    try:
        bpx_path = stem.with_name(stem.name + ".bpx.json")
        bpx_path.write_text(json.dumps(fitted.to_bpx(model=model), indent=2))
        written.append(str(bpx_path))
    except ParameterSetError as exc:
        get_run_logger().warning("No BPX file: %s", exc)
    return written


def _run_name() -> str:
    cell = flow_run.parameters.get("cell")
    return f"refit {cell_label(CellTarget(**cell) if isinstance(cell, dict) else cell)}"


async def _fit(test: CellTest, recipe: dict, build: dict[str, Any], label: str, credentials: Optional[str],
               max_wait_seconds: float) -> FittedParameterSet:
    config = await build_refit_pipeline(test, **build)
    marker = fit_marker(test, fit_key(test, recipe))
    submitted = {**config, "name": f"Refit {label} · {test.label}"[:200],
                 "description": f"Refit of {label}, test {test.label} {marker}"}
    result = await run_pipeline(submitted, credentials, cell=test.cell_instance_id, max_wait_seconds=max_wait_seconds)
    fitted = FittedParameterSet.from_pipeline_result(result, cell=label, config=config, test=test.label,
                                                     tested_at=test.tested_at,
                                                     equivalent_full_cycles=test.equivalent_full_cycles)
    return await read_fitted_set(result.pipeline_id, label, test.label, test.tested_at, test.equivalent_full_cycles,
                                 credentials, fitted=fitted)


async def _fit_new_tests(tests: list[CellTest], recipe: dict, done: dict[str, str], build: dict[str, Any], label: str,
                         credentials: Optional[str], max_wait_seconds: float
                         ) -> tuple[dict[str, FittedParameterSet], list[str], int]:
    """Fit the tests without a fit of their current key; returns the new sets, the failures and how many were due.

    With the default refit, the first test fits the electrode OCP and every later test holds it (its key names
    the first test's pipeline), so their balances are measured against the same curve: the first test is fitted
    first when it is new.
    """
    fitted: dict[str, FittedParameterSet] = {}
    failures: list[str] = []
    plotting = None

    async def attempt(batch: list[CellTest], batch_recipe: dict, ocp_knots: Optional[dict[str, float]]) -> None:
        nonlocal plotting
        if batch and plotting is None:  # the report's plots need matplotlib: import it while Ionworks fits
            plotting = asyncio.get_running_loop().run_in_executor(None, warm_up_plotting)
        outcomes = await asyncio.gather(*(_fit(t, batch_recipe, {**build, "ocp_knots": ocp_knots}, label, credentials,
                                               max_wait_seconds) for t in batch), return_exceptions=True)
        for test, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, FittedParameterSet):
                fitted[outcome.pipeline_id] = outcome
            else:
                failures.append(f"{test.label}: {outcome}")

    if "default" not in recipe or len(tests) == 1:
        todo = [t for t in tests if fit_key(t, recipe) not in done]
        await attempt(todo, recipe, None)
        return fitted, failures, len(todo)
    first, later = tests[0], tests[1:]
    baseline_id = done.get(fit_key(first, recipe))
    due = 0
    if baseline_id is None:
        due += 1
        await attempt([first], recipe, None)
        baseline_id = next(iter(fitted), None)
    if baseline_id is None:
        failures += [f"{t.label}: not fitted, it holds the OCP of {first.label}, which could not be fitted"
                     for t in later]
        return fitted, failures, due + len(later)
    later_recipe = {**recipe, "ocp_from": baseline_id}
    later_todo = [t for t in later if fit_key(t, later_recipe) not in done]
    if later_todo:
        baseline = fitted.get(baseline_id) or await read_fitted_set(baseline_id, label, credentials=credentials)
        await attempt(later_todo, later_recipe, {p.name: p.value for p in baseline.parameters if p.curve})
    return fitted, failures, due + len(later_todo)


@flow(name="nightly-refit", flow_run_name=_run_name,
      description="Fit each new reference performance test of a cell; judge it; publish the cell's trajectory.")
async def nightly_refit(
    cell: Union[str, CellTarget],
    parameters: Optional[dict[str, FitRange]] = None,
    pipeline_file: Optional[str] = None,
    model: str = "SPMe",
    joint: bool = False,
    drift_threshold: float = 0.05,
    drift_thresholds: Optional[dict[str, float]] = None,
    rmse_threshold_mv: float = 20.0,
    output_dir: Optional[str] = None,
    credentials: Optional[str] = None,
    max_wait_seconds: float = 3600.0,
    fleet_summary: bool = True,
) -> CellRefit:
    """Refit the tests of one cell that have no fit yet, and publish the cell's fitted trajectory.

    Args:
        cell: A cell instance id, or ``{"specification": ..., "instance": ...}`` names.
        parameters: Parameters to fit (start and bounds) instead of the default refit.
        pipeline_file: A YAML/JSON pipeline instead; an objective keyed ``"*"`` becomes one per measurement.
        model: The model of the default refit's objectives (``SPM``, ``SPMe``, ``DFN``).
        joint: Fit all of the cell's measurements together into one set, instead of one set per test.
        drift_threshold: Relative change (against the first or the previous test) that flags a parameter.
        drift_thresholds: Per-parameter thresholds replacing it; the default refit starts from
            ``KINETIC_DRIFT_THRESHOLDS`` (10 % for the contact resistance and the diffusivities).
        rmse_threshold_mv: Worst objective RMSE (mV) above which a fit is flagged as degraded.
        output_dir: Also write the newest set as JSON and BPX, and the fit plot, there.
        credentials: A saved ``IonworksCredentials`` block's name; the ``IONWORKS_*`` environment without one.
        max_wait_seconds: How long to wait for each refit pipeline.
        fleet_summary: Update the cell's row of the ``fleet-<specification>`` view (a fleet refit publishes the
            whole view once instead).

    Returns:
        A :class:`CellRefit`: the cell, the newest test's fitted set and verdict, and how many fits were new.

    Raises:
        NoMeasurements: The cell has no processed time-series measurement.
        RefitFailed: Some tests could not be fitted; the others were fitted and published first.
        IonworksRequestError: Ionworks refused a request.

    Examples:
        ```python
        import asyncio
        from prefect import flow
        from ionworks_prefect.flows import nightly_refit

        @flow
        async def refit_my_cells():
            for instance in ("cell-7", "cell-8"):
                refit = await nightly_refit(cell={"specification": "NMC811 21700", "instance": instance})
                print(refit.fitted.test, refit.fitted.values, refit.fitted.rmse_mv, refit.verdict.verdict)

        asyncio.run(refit_my_cells())
        ```
    """
    logger = get_run_logger()
    state = await read_refit_state(cell, credentials)
    identity, label = state.cell, state.cell.label
    tests = [joint_test(state.tests)] if joint else state.tests
    build = {"parameters": parameters, "pipeline_file": pipeline_file, "model": model}
    default_limits = KINETIC_DRIFT_THRESHOLDS if not (parameters or pipeline_file) else {}
    rules = {"drift_threshold": drift_threshold, "rmse_threshold_mv": rmse_threshold_mv,
             "drift_thresholds": {**default_limits, **(drift_thresholds or {})}}
    fitted, failures, due = await _fit_new_tests(tests, refit_recipe(parameters, pipeline_file, model),
                                                 state.done, build, label, credentials, max_wait_seconds)
    if not due:
        logger.info("All %d test(s) of %s are fitted already; nothing submitted.", len(tests), label)
        history = await fitted_history(latest_per_test(state.records), label, {}, credentials)
        await publish_unchanged(history[-1])
        return CellRefit(cell=identity, fitted=history[-1], verdict=assess_fit(history, **rules), new_fits=0,
                         tests=len(history))
    logger.info("%s: %d new fit(s), %d failed, of %d test(s)", label, len(fitted), len(failures), len(tests))
    history = await fitted_history(await list_fitted_tests(identity.instance_id, credentials), label, fitted,
                                    credentials)
    if not history:
        raise RefitFailed(f"No test of {label} could be fitted: " + "; ".join(failures))
    judged = await judge_fits(history, list(fitted), identity.instance_id, rules)
    newest = history[-1]
    verdict = next((v for v in judged if v.pipeline_id == newest.pipeline_id), None) or assess_fit(history, **rules)
    if fitted:
        await asyncio.gather(publish_parameter_set(newest, credentials, history=history[:-1], image_dir=output_dir,
                                                   **rules),
                             *([write_parameter_files(newest, output_dir, model)] if output_dir else []))
    if fleet_summary:  # after the report, so that the cell's row links to the new one
        await publish_fleet_summary(identity.specification_name,
                                    {identity.instance_name: fleet_row(identity.instance_name, newest, verdict)})
    if failures:
        raise RefitFailed(f"{len(failures)} of {due} test(s) of {label} could not be fitted: "
                          + "; ".join(failures))
    return CellRefit(cell=identity, fitted=newest, verdict=verdict, new_fits=len(fitted), tests=len(history))
