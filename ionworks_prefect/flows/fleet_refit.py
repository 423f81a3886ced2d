"""Fleet refit: every cell of a specification refitted as its own run, bounded, and one fleet view.

Recipe: create the fleet's limits if absent (``ensure_fleet_limits``) -> list the specification's cells -> run
``nightly_refit`` for each as a subflow named ``refit <specification>/<instance>`` and tagged
``cell:<specification>/<instance>``, at most ``fleet_concurrency`` at a time (a Prefect global concurrency
limit, so several fleet runs share it), each cell first taking ``requests_per_cell`` slots of the Ionworks rate
limit (about the requests a cell's refit makes), so many cells never exceed the API's rate -> publish
``fleet-<specification>`` with one row per cell. One cell's failure does not stop the others;
the fleet run ends Failed naming the cells that failed, after the view is published.

Example:
    ```python
    import asyncio
    from ionworks_prefect.flows import fleet_refit

    asyncio.run(fleet_refit("NMC811 21700"))
    ```
"""

from __future__ import annotations

import asyncio
from typing import Literal, Optional

from prefect import flow, get_run_logger, tags
from prefect.concurrency.asyncio import concurrency, rate_limit
from pydantic import BaseModel

from ionworks_prefect.cell_tests import CellIdentity, list_cells
from ionworks_prefect.exceptions import IonworksPrefectError
from ionworks_prefect.fleet import ensure_fleet_limits, failed_row, fleet_row, publish_fleet_summary
from ionworks_prefect.settings import IonworksSettings

from ..refit_pipeline import FitRange
from .nightly_refit import CellRefit, nightly_refit


class FleetRefitFailed(IonworksPrefectError):
    """Some cells of the fleet could not be refitted (the others were, and the fleet view lists both)."""


class CellOutcome(BaseModel):
    """How one cell's refit ended in a fleet run: its newest test and fitted values, or why it failed."""

    cell: str
    status: Literal["refitted", "unchanged", "failed"]
    verdict: Optional[str] = None
    new_fits: int = 0
    test: Optional[str] = None
    values: dict[str, float] = {}
    reason: Optional[str] = None


class FleetRefit(BaseModel):
    """The outcome of a fleet run: one entry per cell, and the fleet view's artifact key."""

    specification: str
    cells: list[CellOutcome]
    artifact_key: str

    @property
    def failed(self) -> list[CellOutcome]:
        """Cells whose refit failed."""
        return [c for c in self.cells if c.status == "failed"]


@flow(name="fleet-refit", flow_run_name="fleet refit {specification}",
      description="Refit every cell of a specification, each as its own run, bounded; publish the fleet view.")
async def fleet_refit(
    specification: str,
    parameters: Optional[dict[str, FitRange]] = None,
    pipeline_file: Optional[str] = None,
    model: str = "SPMe",
    drift_threshold: float = 0.05,
    drift_thresholds: Optional[dict[str, float]] = None,
    rmse_threshold_mv: float = 20.0,
    credentials: Optional[str] = None,
    max_wait_seconds: float = 3600.0,
) -> FleetRefit:
    """Refit each cell of ``specification`` (see :func:`nightly_refit`) and publish ``fleet-<specification>``.

    Args:
        specification: The cell specification's name or id.
        parameters: Parameters to fit instead of the default refit (passed to each cell's refit).
        pipeline_file: A YAML/JSON pipeline instead (passed to each cell's refit).
        model: The model of the default refit.
        drift_threshold: Relative change that flags a parameter.
        drift_thresholds: Per-parameter thresholds replacing it (see :func:`nightly_refit`).
        rmse_threshold_mv: Worst objective RMSE (mV) that flags a fit as degraded.
        credentials: A saved ``IonworksCredentials`` block's name; the ``IONWORKS_*`` environment without one.
        max_wait_seconds: How long each cell's refit waits for each pipeline.

    Returns:
        A :class:`FleetRefit` with each cell's outcome.

    Raises:
        FleetRefitFailed: Some cells failed; raised after the others finished and the fleet view was published.
        IonworksNotFound: No specification has that name or id.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect.flows import fleet_refit

        @flow
        async def nightly_fleets():
            for specification in ("NMC811 21700", "LFP 26650"):
                outcome = await fleet_refit(specification, return_state=True)
                print(specification, outcome.name)
        ```
    """
    logger = get_run_logger()
    settings = IonworksSettings()
    fleet_limit, api_limit = await ensure_fleet_limits(settings)
    cells = list_cells(specification, credentials)
    logger.info("Refitting %d cell(s) of %s, %d at a time", len(cells), specification, settings.fleet_concurrency)
    local = asyncio.Semaphore(settings.fleet_concurrency)  # waiters queue here, not in Prefect's limit service

    async def refit(cell: CellIdentity) -> tuple[CellIdentity, object]:
        try:
            async with local, concurrency(fleet_limit, occupy=1, strict=True):
                await rate_limit(api_limit, occupy=settings.requests_per_cell, strict=True)
                with tags(f"cell:{cell.label}"):
                    state = await nightly_refit(
                        cell={"specification": cell.specification_name, "instance": cell.instance_name},
                        parameters=parameters, pipeline_file=pipeline_file, model=model,
                        drift_threshold=drift_threshold, drift_thresholds=drift_thresholds,
                        rmse_threshold_mv=rmse_threshold_mv, credentials=credentials,
                        max_wait_seconds=max_wait_seconds, fleet_summary=False,
                        return_state=True)
            return cell, await state.aresult(raise_on_failure=False)
        except Exception as exc:  # noqa: BLE001 - e.g. the Prefect API refusing the subflow: that cell failed
            logger.error("Refit of %s could not run: %s", cell.label, exc)
            return cell, exc

    rows, outcomes = {}, []
    for cell, result in await asyncio.gather(*(refit(c) for c in cells)):
        if isinstance(result, CellRefit):
            rows[cell.instance_name] = fleet_row(cell.instance_name, result.fitted, result.verdict)
            outcomes.append(CellOutcome(cell=cell.label, status="refitted" if result.new_fits else "unchanged",
                                        verdict=result.verdict.verdict, new_fits=result.new_fits,
                                        test=result.fitted.test, values=result.fitted.values))
        else:
            reason = str(result) or type(result).__name__
            rows[cell.instance_name] = failed_row(cell.instance_name, reason)
            outcomes.append(CellOutcome(cell=cell.label, status="failed", reason=reason))
    key = await publish_fleet_summary(cells[0].specification_name if cells else specification, rows, replace=True)
    report = FleetRefit(specification=specification, cells=outcomes, artifact_key=key)
    if report.failed:
        raise FleetRefitFailed(f"{len(report.failed)} of {len(cells)} cell(s) of {specification} failed: "
                               + "; ".join(f"{c.cell}: {c.reason}" for c in report.failed))
    return report
