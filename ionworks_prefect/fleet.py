"""A fleet of cells in the Prefect UI: the limits that bound a fleet refit, and the ``fleet-<specification>`` view.

The fleet view is a markdown artifact with one row per cell and few columns: the cell (a link to the newest
version of its report), its newest test and date, the verdict, the worst RMSE in mV and each parameter's newest
value (4 significant figures, unit in the header, % change since the cell's first test, marked at a bound); why
a cell's refit failed is listed under the table. Each row is kept in a Prefect Variable of its own (a Variable
holds at most 5,000 characters: one per specification would stop at about 20 cells), so a single cell's refit
updates its own row and the view is republished; a fleet run rewrites every row and drops cells that are gone.

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

import asyncio
import hashlib
from typing import Any

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound
from prefect.variables import Variable

from .artifacts import artifact_key, latest_artifact_links
from .events import slug
from .parameter_sets import FittedParameterSet
from .reports import format_percent, format_value, label_of, markdown_table, unit_of, worst_rmse_mv
from .settings import IonworksSettings
from .verdicts import FitVerdict

#: Row fields that are not columns: the report's artifact key (the cell links to it) and why a refit failed.
REPORT, REASON = "Report", "Reason"


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


def _variable_prefix(specification: str) -> str:
    digest = hashlib.sha256(specification.encode()).hexdigest()[:8]
    return f"ionworks_fleet_{slug(specification).replace('-', '_')[:120]}_{digest}__"


def _variable(specification: str, cell: str) -> str:
    """The Variable holding one cell's row (slugs plus a digest of the exact name, so near-equal names differ)."""
    digest = hashlib.sha256(cell.encode()).hexdigest()[:8]
    return f"{_variable_prefix(specification)}{slug(cell).replace('-', '_')[:100]}_{digest}"


async def _stored_rows(prefect: Any, specification: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Cell name -> (Variable name, row) of every row stored for ``specification``."""
    prefix = _variable_prefix(specification)
    query = {"name": {"like_": prefix}}  # the server matches it anywhere, "_" as any character: checked below
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    offset = 0
    while True:
        page = (await prefect.request("POST", "/variables/filter",
                                      json={"variables": query, "offset": offset, "limit": 200})).json()
        for variable in page:
            value = variable.get("value") or {}
            if variable["name"].startswith(prefix) and isinstance(value, dict) and isinstance(value.get("row"), dict):
                found[value.get("cell", variable["name"])] = (variable["name"], value["row"])
        if len(page) < 200:
            return found
        offset += 200


async def _store_rows(specification: str, rows: dict[str, dict[str, Any]], stale: list[str]) -> None:
    limit = asyncio.Semaphore(16)

    async def store(cell: str, row: dict[str, Any]) -> None:
        async with limit:
            await Variable.aset(_variable(specification, cell), {"cell": cell, "row": row}, overwrite=True)

    async def drop(name: str) -> None:
        async with limit:
            await Variable.aunset(name)

    await asyncio.gather(*(store(c, r) for c, r in rows.items()), *(drop(n) for n in stale))


def fleet_row(instance: str, fitted: FittedParameterSet, verdict: FitVerdict) -> dict[str, Any]:
    """One cell's row of the fleet view (plain strings, ready for the table) and its report's key."""
    changes = {c.parameter: c.change_vs_baseline for c in verdict.changes}
    when = f"{fitted.tested_at:%Y-%m-%d}" if fitted.tested_at else f"fitted {fitted.created_at:%Y-%m-%d}"
    worst = worst_rmse_mv(fitted)
    row: dict[str, Any] = {"Cell": instance, "Test": f"{fitted.test or 'fit'} ({when})", "Verdict": verdict.verdict,
                           "RMSE [mV]": "" if worst is None else f"{worst:.1f}"}
    for p in fitted.headline:
        moved = changes.get(p.name)
        row[f"{label_of(p.name)} [{unit_of(p.name)}]"] = (
            format_value(p.value) + (f" ({format_percent(moved)})" if moved is not None else "")
            + (" at bound" if p.at_bound else ""))
    row[REPORT] = f"{artifact_key(fitted.cell or fitted.pipeline_id)}-report"
    return row


def failed_row(instance: str, reason: str) -> dict[str, Any]:
    """The fleet row of a cell whose refit failed this run; the reason is listed under the table."""
    return {"Cell": instance, "Test": "", "Verdict": "refit failed", "RMSE [mV]": "", REASON: reason[:300]}


def _flagged(rows: list[dict[str, Any]]) -> int:
    return sum(1 for r in rows if r.get("Verdict") not in ("ok", "baseline"))


def fleet_markdown(specification: str, rows: list[dict[str, Any]], links: dict[str, str]) -> str:
    """The fleet view: a heading, counts, one table row per cell (its name linked to ``links[row's report]``)
    and the reasons of failed refits."""
    table = [{**{k: v for k, v in r.items() if k not in (REPORT, REASON)},
              "Cell": f"[{r['Cell']}]({links[r[REPORT]]})" if r.get(REPORT) in links else r["Cell"]} for r in rows]
    text = (f"# Fleet: {specification}\n\n{len(rows)} cell(s), {_flagged(rows)} flagged (drifted, degraded or "
            "failed). Each cell's newest fit; % is the change since the cell's first test; RMSE is the worst "
            "objective's. "
            + ("A cell's name opens its report." if links else "Reports: `fitted-parameters-<cell>-report`.")
            + "\n\n" + markdown_table(table))
    failures = [f"- **{r['Cell']}**: {r[REASON]}" for r in rows if r.get(REASON)]
    return text + ("\nRefit failed:\n\n" + "\n".join(failures) + "\n" if failures else "")


@task(name="Publish fleet summary", cache_policy=NO_CACHE)
async def publish_fleet_summary(specification: str, rows: dict[str, dict[str, Any]], *, replace: bool = False) -> str:
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
        async def show(fitted, verdict):
            await publish_fleet_summary("NMC811 21700", {"cell-7": fleet_row("cell-7", fitted, verdict)})
        ```
    """
    async with get_client() as prefect:
        stored = await _stored_rows(prefect, specification)
    stale = [name for cell, (name, _) in stored.items() if replace and cell not in rows]
    kept = {} if replace else {cell: row for cell, (_, row) in stored.items()}
    kept.update(rows)
    changed = {cell: row for cell, row in rows.items() if cell not in stored or stored[cell][1] != row}
    ordered = [kept[name] for name in sorted(kept)]
    _, links = await asyncio.gather(_store_rows(specification, changed, stale),
                                    latest_artifact_links([r[REPORT] for r in ordered if r.get(REPORT)]))
    key = fleet_key(specification)
    await acreate_markdown_artifact(fleet_markdown(specification, ordered, links), key=key,
                             description=f"{specification}: {len(ordered)} cells, {_flagged(ordered)} flagged")
    return key
