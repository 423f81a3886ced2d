"""A fleet of cells in the Prefect UI: the limits that bound a fleet refit, and the ``fleet-<specification>`` view.

The fleet view is a markdown artifact with one row per cell: the newest values (4 significant figures, change
since the cell's first test), worst RMSE in mV, parameters at a bound, the date of the newest fit, the verdict
and a link to the cell's report. Its rows are kept in a Prefect Variable per specification, so a single cell's
refit updates its own row and the view is republished; a fleet run rewrites every row it refitted.

Example:
    ```python
    from prefect import flow
    from ionworks_prefect.fleet import ensure_fleet_limits

    @flow
    async def prepare():
        await ensure_fleet_limits()  # creates the fan-out and rate limits named in the settings, once
    ```
"""

from __future__ import annotations

import re
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound
from prefect.variables import Variable

from .artifacts import artifact_key, ui_link
from .events import slug
from .parameter_sets import FittedParameterSet
from .reports import format_mv, format_percent, format_value, markdown_table
from .settings import IonworksSettings
from .verdicts import FitVerdict

_UNIT = re.compile(r"\s*\[[^\]]+\]\s*$")


async def ensure_fleet_limits(settings: IonworksSettings | None = None) -> tuple[str, str]:
    """Create the fleet's concurrency limit and the Ionworks rate limit when absent; returns their names.

    Sizes come from :class:`IonworksSettings` (``fleet_concurrency``; ``rate_limit_burst`` slots decaying at
    ``rate_limit_per_second``). Existing limits are left as they are, so an operator's changes stay.

    Example:
        >>> await ensure_fleet_limits()
        ('ionworks-fleet-refits', 'ionworks-api')
    """
    settings = settings or IonworksSettings()
    wanted = [GlobalConcurrencyLimitCreate(name=settings.fleet_concurrency_limit, limit=settings.fleet_concurrency),
              GlobalConcurrencyLimitCreate(name=settings.rate_limit, limit=settings.rate_limit_burst,
                                           slot_decay_per_second=settings.rate_limit_per_second)]
    async with get_client() as prefect:
        for limit in wanted:
            try:
                await prefect.read_global_concurrency_limit_by_name(limit.name)
            except ObjectNotFound:
                try:
                    await prefect.create_global_concurrency_limit(limit)
                except Exception:  # noqa: BLE001 - created meanwhile by a concurrent fleet run
                    await prefect.read_global_concurrency_limit_by_name(limit.name)
    return settings.fleet_concurrency_limit, settings.rate_limit


def fleet_key(specification: str) -> str:
    """The fleet artifact's key: ``fleet-<specification slug>``."""
    return f"fleet-{slug(specification)}"[:200]


def _variable(specification: str) -> str:
    return f"ionworks_fleet_{slug(specification).replace('-', '_')}"[:255]


def fleet_row(instance: str, fitted: FittedParameterSet, verdict: FitVerdict) -> dict[str, Any]:
    """One cell's row of the fleet view (plain strings, ready for the table)."""
    changes = {c.parameter: c.change_vs_baseline for c in verdict.changes}
    key = f"{artifact_key(fitted.cell or fitted.pipeline_id)}-report"
    report = ui_link(f"artifacts/key/{key}")
    row: dict[str, Any] = {
        "Cell": instance, "Test": fitted.test or "", "Last fit": f"{fitted.created_at:%Y-%m-%d}",
        "Verdict": verdict.verdict, "RMSE": format_mv(verdict.worst_rmse_mv),
    }
    for p in fitted.headline:
        moved = changes.get(p.name)
        row[_UNIT.sub("", p.name)] = format_value(p.value) + (f" ({format_percent(moved)})" if moved else "")
    row["At bound"] = ", ".join(_UNIT.sub("", p.name) for p in fitted.parameters if p.at_bound)
    row["Report"] = f"[{key}]({report})" if report else f"`{key}`"
    return row


@task(name="Publish fleet summary", cache_policy=NO_CACHE)
def publish_fleet_summary(specification: str, rows: dict[str, dict[str, Any]], *, replace: bool = False) -> str:
    """Merge cells' rows into the specification's fleet view and publish it as ``fleet-<specification>``.

    Args:
        specification: The cell specification's name.
        rows: Row per cell instance name (see :func:`fleet_row`).
        replace: Drop the rows of cells not in ``rows`` (a fleet run that saw every cell).

    Returns:
        The artifact key.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect.fleet import fleet_row, publish_fleet_summary

        @flow
        def show(fitted, verdict):
            publish_fleet_summary("NMC811 21700", {"cell-7": fleet_row("cell-7", fitted, verdict)})
        ```
    """
    variable = _variable(specification)
    kept = {} if replace else dict(Variable.get(variable, default=None, _sync=True) or {})
    kept.update(rows)
    Variable.set(variable, kept, overwrite=True, _sync=True)
    ordered = [kept[name] for name in sorted(kept)]
    flagged = sum(1 for r in ordered if r.get("Verdict") not in ("ok", "baseline"))
    text = (f"# Fleet: {specification}\n\n{len(ordered)} cell(s), {flagged} flagged (drifted or degraded). "
            "Values are the newest fit; % in brackets is the change since the cell's first test; RMSE is the "
            "worst objective's.\n\n" + markdown_table(ordered))
    key = fleet_key(specification)
    create_markdown_artifact(text, key=key, description=f"{specification}: {len(ordered)} cells, {flagged} flagged")
    return key


def failed_row(instance: str, reason: str) -> dict[str, Any]:
    """The fleet row of a cell whose refit failed this run."""
    return {"Cell": instance, "Verdict": "refit failed", "Test": "", "Last fit": "", "RMSE": "",
            "At bound": "", "Report": reason[:200]}

