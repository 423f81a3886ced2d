"""Publishing a fitted parameter set to Prefect: table, markdown report with fit plot and drift, pipeline link.

Keys (lowercase letters, digits, dashes): ``fitted-parameters-<cell-slug>`` (table, one version per fit),
``fitted-parameters-<cell-slug>-report`` (markdown), ``fitted-parameters-<cell-slug>-pipeline`` (link). The
previous version is read from the latest table artifact of the key; a Prefect Variable
``fitted_parameters_<cell_slug>`` points at the latest published fit (pipeline id, time, artifact id).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any, Literal, Union

import polars as pl
from prefect.artifacts import Artifact, create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.settings import PREFECT_UI_URL
from prefect.variables import Variable

from ._calls import call, run_logger
from .credentials import CredentialsArg, resolve_credentials
from .events import emit_parameter_set_published, emit_parameters_drifted, slug
from .parameter_sets import FittedParameter, FittedParameterSet
from .results import PublishedArtifacts
from .retries import ionworks_task

Previous = Union[FittedParameterSet, None, Literal["latest"]]


def fit_series(client: Any, pipeline_id: str, element: str) -> dict[str, dict[str, list]]:
    """Model-vs-data series of a fit element per objective (``{}`` when Ionworks stored none).

    Example:
        >>> fit_series(client, run.id, "fit")["1C"].keys()
    """
    try:
        channels = call("list fit series", client.pipeline.get_element_series_channels, pipeline_id, element)
        return {objective: call("get fit series", client.pipeline.get_element_series, pipeline_id, element,
                                objective, source="optimal" if "optimal" in sources else next(iter(sources)))
                for objective, sources in channels.items() if sources}
    except Exception as exc:  # noqa: BLE001 - the plot is optional
        run_logger().warning("No fit series for pipeline %s element %s: %s", pipeline_id, element, exc)
        return {}


def render_fit_plot(series: dict[str, dict[str, list]]) -> bytes:
    """PNG bytes, one row per objective: measured (dots) and model (line) voltage, and the error in mV.

    Example:
        >>> png = render_fit_plot({"1C": {"Time [s]": [0, 1], "Data voltage [V]": [4.1, 4.0]}})
    """
    from matplotlib.figure import Figure

    rows = max(1, len(series))
    figure = Figure(figsize=(10, 3.2 * rows), dpi=90)
    axes = figure.subplots(rows, 2, squeeze=False, gridspec_kw={"width_ratios": [3, 2]})
    for (voltage_ax, error_ax), (objective, channels) in zip(axes, series.items()):
        x = channels.get("Time [s]") or list(range(len(next(iter(channels.values()), []))))
        data = _channel(channels, "data", "voltage")
        model = _channel(channels, "model", "voltage")
        error = _channel(channels, "error")
        if data is not None and model is not None:
            error = [m - d if None not in (m, d) else None for m, d in zip(model, data)]
        if data is not None:
            voltage_ax.plot(x, data, ".", markersize=3, color="0.35", label="Measured")
        if model is not None:
            voltage_ax.plot(x, model, linewidth=1.5, color="tab:orange", label="Model")
        if error is not None:
            error_ax.plot(x, [1000 * e if e is not None else None for e in error], linewidth=1, color="tab:red")
        voltage_ax.set(title=objective, xlabel="Time [s]", ylabel="Voltage [V]")
        voltage_ax.legend(loc="best", fontsize=8)
        error_ax.axhline(0, color="0.6", linewidth=0.8)
        error_ax.set(title=f"{objective}: model - measured", xlabel="Time [s]", ylabel="Error [mV]")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _channel(channels: dict[str, list], *words: str) -> list | None:
    """The first channel whose name contains every word (case-insensitive)."""
    return next((v for name, v in channels.items() if all(w in name.lower() for w in words)), None)


def _previous_from_artifact(key: str, variable: str) -> FittedParameterSet | None:
    artifact = Artifact.get(key, _sync=True)
    if artifact is None or not artifact.data:
        return None
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    pointer = Variable.get(variable, default=None, _sync=True) or {}
    parameters = [FittedParameter(name=r["parameter"], value=r["value"]) for r in rows
                  if isinstance(r, dict) and r.get("value") is not None]
    if not parameters:
        return None
    return FittedParameterSet(pipeline_id=pointer.get("pipeline_id") or "unknown", parameters=parameters)


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _markdown_table(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * frame.width + "\n"
    return header + "".join("| " + " | ".join(_fmt(v) for v in row) + " |\n" for row in frame.iter_rows())


def _report(fitted: FittedParameterSet, drift: pl.DataFrame, drifted: list[str], threshold: float,
            link: str | None, png: bytes | None, image_path: str | None) -> str:
    lines = [f"# Fitted parameters: {fitted.cell or 'cell'}", "",
             f"Pipeline `{fitted.pipeline_id}`" + (f" ([open in Ionworks]({link}))" if link else "")
             + f", fitted {fitted.created_at:%Y-%m-%d %H:%M} UTC.", "", "## Values and bounds", "",
             _markdown_table(fitted.to_polars().drop("element")), "## Cost per objective", ""]
    lines += [f"- {name}: {cost:.4g}" for name, cost in fitted.costs.items()] or ["- (not reported)"]
    lines += ["", f"## Drift against the previous fit (flag: |relative change| > {threshold:.0%})", ""]
    if drift.get_column("previous").is_null().all():
        lines.append("No previous fit to compare with.")
    else:
        lines.append(_markdown_table(drift))
        lines.append(f"Drifted: {', '.join(drifted)}" if drifted else "No parameter drifted beyond the threshold.")
    if png is not None:
        lines += ["", "## Fit against data", "", f"![fit vs data](data:image/png;base64,{base64.b64encode(png).decode()})"]
    if image_path:
        lines += ["", f"Plot file: `{image_path}`"]
    if fitted.measurement_ids:
        lines += ["", "Measurements: " + ", ".join(f"`{m}`" for m in fitted.measurement_ids)]
    return "\n".join(lines) + "\n"


def _ui_url(artifact_id: Any) -> str | None:
    base = PREFECT_UI_URL.value()
    return f"{base.rstrip('/')}/artifacts/artifact/{artifact_id}" if base else None


@ionworks_task(
    name="Publish fitted parameter set",
    description="Publish a fit as Prefect artifacts (table, report with plot and drift, link) and lineage events.",
)
def publish_parameter_set(
    parameter_set: FittedParameterSet,
    credentials: CredentialsArg = None,
    *,
    previous: Previous = "latest",
    drift_threshold: float = 0.05,
    image_dir: str | Path | None = None,
    plot: bool = True,
) -> PublishedArtifacts:
    """Publish ``parameter_set`` for its cell and report drift against ``previous`` (default: last published).

    Emits ``ionworks.parameters.drifted`` when any parameter moved more than ``drift_threshold`` (relative),
    and materialises the cell's parameter-set asset. ``image_dir`` also writes the fit plot as a PNG file.

    Example:
        >>> published = publish_parameter_set(fitted, drift_threshold=0.1)
    """
    block = resolve_credentials(credentials)
    client = block.get_client()
    cell_slug = slug(parameter_set.cell or parameter_set.pipeline_id)
    key, variable = f"fitted-parameters-{cell_slug}", f"fitted_parameters_{cell_slug.replace('-', '_')}"
    before = _previous_from_artifact(key, variable) if previous == "latest" else previous
    drift = parameter_set.diff(before)
    drifted = drift.filter(pl.col("relative_change").abs() > drift_threshold)["parameter"].to_list()
    link = call("pipeline link", client.urls.pipeline, parameter_set.pipeline_id)

    png = image_path = None
    if plot:
        series: dict[str, dict[str, list]] = {}
        for element in dict.fromkeys(p.element for p in parameter_set.parameters if p.element):
            series.update(fit_series(client, parameter_set.pipeline_id, element))
        png = render_fit_plot(series) if series else None
    if png is not None and image_dir is not None:
        path = Path(image_dir) / f"{key}-{parameter_set.pipeline_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        image_path = str(path.resolve())

    table = parameter_set.to_polars().join(drift.select("parameter", "previous", "relative_change"),
                                           on="parameter", how="left")
    ids = [
        create_table_artifact(table.to_dicts(), key=key, description=f"Fitted parameters, pipeline {parameter_set.pipeline_id}"),
        create_markdown_artifact(_report(parameter_set, drift, drifted, drift_threshold, link, png, image_path),
                                 key=f"{key}-report", description=f"Fit report for {parameter_set.cell}"),
        create_link_artifact(link, link_text=f"Ionworks pipeline {parameter_set.pipeline_id}", key=f"{key}-pipeline"),
    ]
    Variable.set(variable, {"pipeline_id": parameter_set.pipeline_id, "created_at": parameter_set.created_at.isoformat(),
                            "table_artifact_id": str(ids[0])}, overwrite=True, _sync=True)
    emit_parameter_set_published(block.api_url, parameter_set.cell or cell_slug, parameter_set.pipeline_id,
                                 {"costs": parameter_set.costs, "values": parameter_set.values})
    if drifted:
        emit_parameters_drifted(parameter_set.cell or cell_slug, parameter_set.pipeline_id,
                                {r["parameter"]: r["relative_change"] for r in drift.filter(pl.col("parameter").is_in(drifted)).to_dicts()})
    return PublishedArtifacts(table_key=key, report_key=f"{key}-report", link_key=f"{key}-pipeline",
                              image_path=image_path, artifact_ids=[str(i) for i in ids],
                              ui_urls=[u for u in map(_ui_url, ids) if u], drifted=drifted)
