"""Publishing fitted parameters to Prefect: the newest values, a report with plots, and the cell's history.

Keys (lowercase letters, digits, dashes), per cell: ``fitted-parameters-<cell>`` (table of the newest values
with units and % changes; one version per fit, each version's description lists the values),
``fitted-parameters-<cell>-report`` (markdown: values, RMSE per objective, verdict, fit plot, trend plot, link
to the pipeline) and ``fitted-parameters-<cell>-history`` (table, one row per fitted test). A night with nothing
new publishes a short "unchanged since" note on its own run instead. Links into the Prefect UI open the newest
version of an artifact, in the UI the server shows by default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any, Optional

import httpx
from prefect import task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey
from prefect.settings import PREFECT_UI_URL

from ._calls import call, run_logger
from .credentials import CredentialsArg, resolve_credentials
from .events import emit_parameter_set_published, slug
from .parameter_sets import FittedParameterSet
from .reports import (
    format_mv,
    history_rows,
    history_verdicts,
    label_of,
    markdown_table,
    png_markdown,
    render_fit_plot,
    render_trend_plot,
    rmse_text,
    summary_line,
    trend_text,
    values_rows,
)
from .resource_ids import path_segment
from .results import PublishedArtifacts
from .retries import ionworks_task
from .verdicts import FitVerdict


def artifact_key(cell: str) -> str:
    """The key of a cell's newest-values table; its report and history add ``-report`` and ``-history``.

    Example:
        >>> artifact_key("NMC811 21700/cell-7")
        'fitted-parameters-nmc811-21700-cell-7'
    """
    return f"fitted-parameters-{slug(cell)}"[:200]


def ui_link(path: str) -> str | None:
    """A link into the Prefect UI (``PREFECT_UI_URL`` + path), or None when no UI URL is configured.

    Prefect 3.8 servers serve a second UI under ``/v2`` and send browsers there; the first UI's paths still open,
    but in the other UI. The link goes under ``/v2`` when the server's ``ui-settings`` name it the default.

    Example:
        >>> ui_link("artifacts/artifact/0b7c…")
        'http://127.0.0.1:4200/v2/artifacts/artifact/0b7c…'
    """
    base = PREFECT_UI_URL.value()
    return f"{_default_ui(base.rstrip('/'))}/{path.lstrip('/')}" if base else None


@cache
def _default_ui(base: str) -> str:
    try:
        settings = httpx.get(f"{base}/ui-settings", timeout=5).json()
    except (httpx.HTTPError, ValueError):  # no UI served there, or not a Prefect server's (Prefect Cloud)
        return base
    if not isinstance(settings, dict) or settings.get("default_ui") != "v2":
        return base
    v1, v2 = str(settings.get("v1_base_url") or "/").rstrip("/"), str(settings.get("v2_base_url") or "")
    return base + v2[len(v1):].rstrip("/") if v2.startswith(v1 + "/") else base


async def latest_artifact_links(keys: Sequence[str]) -> dict[str, str]:
    """Key -> UI link to the newest version of each artifact that exists; ``{}`` when no UI URL is configured.

    A key's own page in the UI lists its versions; the link opens the newest one's content instead. Read with the
    run's own Prefect client when there is one.

    Example:
        >>> await latest_artifact_links(["fitted-parameters-nmc811-21700-cell-7-report"])
        {'fitted-parameters-nmc811-21700-cell-7-report': 'http://127.0.0.1:4200/v2/artifacts/artifact/0b7c…'}
    """
    if not keys or not PREFECT_UI_URL.value():
        return {}
    keys, found = list(dict.fromkeys(keys)), []
    async with get_client() as prefect:
        for start in range(0, len(keys), 200):  # the API's page size
            chunk = keys[start:start + 200]
            found += await prefect.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=chunk)),
                limit=len(chunk))
    # ui_link asks the server which UI it serves, once per process: off the event loop
    return await asyncio.to_thread(
        lambda: {a.key: link for a in found if (link := ui_link(f"artifacts/artifact/{a.latest_id}"))})


def fit_series(client: Any, pipeline_id: str, elements: Sequence[str]) -> dict[str, dict[str, list]]:
    """Model-vs-data series per objective of the given fit elements, an objective's from the last element fitting
    it (``{}`` when Ionworks stored none).

    The pipeline's elements are listed once (each read finds its element's job there), then the channel
    listings and the series are read concurrently: a two-objective fit costs about three reads' time.

    Example:
        >>> fit_series(client, run.id, ["fit"])["1C"].keys()
    """
    def channels(element: str) -> list[tuple[str, str, str]]:
        listed = call("list fit series", client.pipeline.get_element_series_channels, pipeline_id, element,
                      elements=listing)
        return [(element, objective, "optimal" if "optimal" in sources else next(iter(sources)))
                for objective, sources in listed.items() if sources]

    def series(element: str, objective: str, source: str) -> tuple[str, dict[str, list]]:
        return objective, call("get fit series", client.pipeline.get_element_series, pipeline_id, element,
                               objective, source=source, elements=listing)

    try:
        listing = call("list pipeline elements", client.get, f"/pipelines/{path_segment(pipeline_id)}/elements")
        with ThreadPoolExecutor(max_workers=8) as pool:
            wanted = {w[1]: w for found in pool.map(channels, elements) for w in found}  # an objective's last element
            return dict(pool.map(lambda w: series(*w), wanted.values()))
    except Exception as exc:  # noqa: BLE001 - the plot is optional
        run_logger().warning("No fit series for pipeline %s elements %s: %s", pipeline_id, ", ".join(elements), exc)
        return {}


def _report(fitted: FittedParameterSet, verdict: FitVerdict, history: Sequence[FittedParameterSet],
            rows: list[dict[str, Any]], link: str | None, fit_png: bytes | None, image_path: str | None) -> str:
    title = f"# Fitted parameters: {fitted.cell or 'cell'}" + (f", {fitted.test}" if fitted.test else "")
    when = f"Tested {fitted.tested_at:%Y-%m-%d %H:%M} UTC, fitted" if fitted.tested_at else "Fitted"
    drifted = (" Drifted: " + ", ".join(label_of(name) for name in verdict.drifted) + ".") if verdict.drifted else ""
    lines = [title, "", f"**Verdict: {verdict.verdict}.**{drifted} {when} {fitted.created_at:%Y-%m-%d %H:%M} UTC "
             f"by pipeline `{fitted.pipeline_id}`" + (f" ([open in Ionworks]({link}))" if link else "") + ".",
             "", "## Values", "", markdown_table(values_rows(fitted, verdict)),
             f"Changes against the previous test ({verdict.previous_test or 'none'}) and the first one "
             f"({verdict.baseline_test}); a parameter drifts beyond {100 * verdict.drift_threshold:g} %."]
    if trend := trend_text(verdict):
        lines += ["", f"Trend: {trend}."]
    lines += ["", "## Fit quality", "", f"RMSE per objective: {rmse_text(fitted.rmse_mv)} "
              f"(flagged above {format_mv(verdict.rmse_threshold_mv)})."]
    if fit_png is not None:
        lines += ["", png_markdown(fit_png, "Measured and model voltage, and the error")]
    if len(history) > 1:
        trend = png_markdown(render_trend_plot(history), "Change of each parameter and the RMSE, test by test")
        lines += ["", "## Trajectory", "", trend, "", "% is the change since the first test.", "", markdown_table(rows)]
    if image_path:
        lines += ["", f"Plot file: `{image_path}`"]
    if fitted.measurement_ids:
        lines += ["", "Measurements: " + ", ".join(f"`{m}`" for m in fitted.measurement_ids)]
    return "\n".join(lines) + "\n"


def _fit_png(client: Any, fitted: FittedParameterSet) -> bytes | None:
    series = fit_series(client, fitted.pipeline_id, list(dict.fromkeys(p.element for p in fitted.parameters
                                                                         if p.element)))
    return render_fit_plot(series) if series else None


@ionworks_task(
    name="Publish fitted parameter set",
    description="Publish a fit as Prefect artifacts (values, report with plots, history) and its lineage.",
)
async def publish_parameter_set(
    parameter_set: FittedParameterSet,
    credentials: CredentialsArg = None,
    *,
    history: Sequence[FittedParameterSet] = (),
    drift_threshold: float = 0.05,
    rmse_threshold_mv: float = 20.0,
    drift_thresholds: Optional[dict[str, float]] = None,
    image_dir: str | Path | None = None,
    plot: bool = True,
) -> PublishedArtifacts:
    """Publish a fitted set, judged against the cell's earlier fits, as Prefect artifacts.

    The fit plot is read and rendered on a worker thread while the values and history tables are created.

    Args:
        parameter_set: The newest fit of one cell.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the environment.
        history: The cell's earlier fits, oldest first (the first is the baseline); empty for a first fit.
        drift_threshold: Relative change against the baseline or the previous fit that flags a parameter.
        rmse_threshold_mv: Worst objective RMSE (mV) above which the fit is flagged as degraded.
        drift_thresholds: Per-parameter thresholds replacing ``drift_threshold``.
        image_dir: Also write the fit plot there as a PNG file.
        plot: Render the fit plot (reads the fit's series from Ionworks).

    Returns:
        The artifact keys and ids, the plot file, the verdict and the drifted parameters.

    Raises:
        IonworksRequestError: Ionworks refused the pipeline-link request.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import FittedParameterSet, publish_parameter_set, run_pipeline

        @flow
        async def fit_and_publish(config: dict):
            result = await run_pipeline(config)
            await publish_parameter_set(FittedParameterSet.from_pipeline_result(result, cell="NMC811/cell-7"))
        ```
    """
    client = resolve_credentials(credentials).get_client()
    sets = [*history, parameter_set]
    rules = {"drift_threshold": drift_threshold, "rmse_threshold_mv": rmse_threshold_mv,
             "drift_thresholds": drift_thresholds}
    verdicts = history_verdicts(sets, **rules)
    verdict = verdicts[-1]
    key = artifact_key(parameter_set.cell or parameter_set.pipeline_id)
    link = call("pipeline link", client.urls.pipeline, parameter_set.pipeline_id)
    rows = history_rows(sets, verdicts)
    summary = summary_line(parameter_set, verdict)
    rendering = asyncio.ensure_future(asyncio.to_thread(_fit_png, client, parameter_set)) if plot else None
    tables = asyncio.gather(
        acreate_table_artifact(values_rows(parameter_set, verdict), key=key, description=summary),
        acreate_table_artifact(rows, key=f"{key}-history",
                               description=f"{parameter_set.cell}: {len(sets)} fitted test(s); % is the change "
                                           f"since the first test. Newest {summary}"),
    )
    png = await rendering if rendering is not None else None
    image_path = None
    if png is not None and image_dir is not None:
        path = Path(image_dir) / f"{key}-{parameter_set.pipeline_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(path.write_bytes, png)
        image_path = str(path.resolve())
    report = await asyncio.to_thread(_report, parameter_set, verdict, sets, rows, link, png, image_path)
    report_id = await acreate_markdown_artifact(report, key=f"{key}-report", description=summary)
    table_id, history_id = await tables
    ids = [str(table_id), str(report_id), str(history_id)]
    emit_parameter_set_published(client, parameter_set)
    urls = await asyncio.to_thread(lambda: [u for i in ids if (u := ui_link(f"artifacts/artifact/{i}"))])
    return PublishedArtifacts(table_key=key, report_key=f"{key}-report", history_key=f"{key}-history",
                              image_path=image_path, artifact_ids=ids, ui_urls=urls, verdict=verdict.verdict,
                              drifted=verdict.drifted)


@task(name="Note unchanged parameters", cache_policy=NO_CACHE)
async def publish_unchanged(latest: FittedParameterSet) -> str:
    """Publish a short note on the current run: nothing new since the newest fit, and where its report is.

    Args:
        latest: The cell's newest fitted set.

    Returns:
        The note's markdown.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect.artifacts import publish_unchanged

        @flow
        async def quiet_night(latest):
            await publish_unchanged(latest)
        ```
    """
    key = f"{artifact_key(latest.cell or latest.pipeline_id)}-report"
    report = (await latest_artifact_links([key])).get(key)
    since = f"{latest.created_at:%Y-%m-%d %H:%M} UTC"
    text = (f"**{latest.cell}: unchanged since {since}.** No new test to fit; newest fit "
            f"{summary_line(latest, None)} (pipeline `{latest.pipeline_id}`). See the report "
            + (f"[{key}]({report})." if report else f"`{key}`."))
    await acreate_markdown_artifact(text, description=f"{latest.cell}: unchanged since {since}")
    return text
