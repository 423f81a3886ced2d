"""Prefect events and asset lineage for Ionworks work.

Events: ``ionworks.measurement.uploaded``, ``ionworks.pipeline.completed`` / ``ionworks.pipeline.failed``,
``ionworks.parameters.drifted``. Resource ids look like ``ionworks.pipeline.<id>``.

Assets (remote materialisations, emitted like prefect-dbt does for dbt Cloud): cycler file
(``file://...``) → measurement (``ionworks://<host>/measurement/<id>``) → pipeline
(``ionworks://<host>/pipeline/<id>``) → parameter set (``ionworks://<host>/parameter-set/<cell-slug>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from prefect.assets import Asset, AssetProperties
from prefect.context import AssetContext
from prefect.events import emit_event

MATERIALIZED_BY = "ionworks"


def slug(text: str) -> str:
    """Lowercase letters, digits and dashes only (valid in Prefect artifact keys).

    Example:
        >>> slug("NMC811 Cell #7")
        'nmc811-cell-7'
    """
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unnamed"


def _host(api_url: str) -> str:
    return urlparse(api_url).netloc or "ionworks"


def measurement_asset(api_url: str, measurement_id: str, name: str | None = None) -> Asset:
    """The asset of an Ionworks measurement."""
    props = AssetProperties(name=name) if name else None
    return Asset(key=f"ionworks://{_host(api_url)}/measurement/{measurement_id}", properties=props)


def pipeline_asset(api_url: str, pipeline_id: str, url: str | None = None) -> Asset:
    """The asset of an Ionworks pipeline run."""
    props = AssetProperties(url=url) if url else None
    return Asset(key=f"ionworks://{_host(api_url)}/pipeline/{pipeline_id}", properties=props)


def parameter_set_asset(api_url: str, cell: str) -> Asset:
    """The asset of the fitted parameter set of one cell (one asset, a new materialisation per fit)."""
    return Asset(key=f"ionworks://{_host(api_url)}/parameter-set/{slug(cell)}",
                 properties=AssetProperties(name=f"Fitted parameters: {cell}"))


def file_asset(path: str) -> Asset:
    """The asset of a local cycler file."""
    return Asset(key=f"file://{quote(Path(path).as_posix())}", properties=AssetProperties(name=Path(path).name))


def _materialize(asset: Asset, upstream: Iterable[Asset], payload: dict[str, Any] | None = None) -> None:
    """Emit the same events a ``@materialize`` task would, for work Ionworks did remotely."""
    ups = list(upstream)
    for up in ups:
        emit_event(event="prefect.asset.referenced", resource=AssetContext.asset_as_resource(up), related=[])
    emit_event(
        event="prefect.asset.materialization.succeeded",
        resource=AssetContext.asset_as_resource(asset),
        related=[AssetContext.asset_as_related(up) for up in ups]
        + [AssetContext.related_materialized_by(MATERIALIZED_BY)],
        payload=payload,
    )


def _related(role: str, ids: Iterable[str]) -> list[dict[str, str]]:
    return [{"prefect.resource.id": f"ionworks.{role}.{i}", "prefect.resource.role": role} for i in ids]


def emit_measurement_uploaded(api_url: str, measurement: Any) -> None:
    """Emit ``ionworks.measurement.uploaded`` and the measurement's asset materialisation (from its file).

    Example:
        >>> emit_measurement_uploaded(credentials.api_url, uploaded)
    """
    emit_event(
        event="ionworks.measurement.uploaded",
        resource={"prefect.resource.id": f"ionworks.measurement.{measurement.id}",
                  "prefect.resource.name": measurement.name,
                  "ionworks.cell-instance": measurement.cell_instance_id},
        related=_related("cell-instance", [measurement.cell_instance_id]),
        payload={"row_count": measurement.row_count, "step_count": measurement.step_count,
                 "digest": measurement.digest, "created": measurement.created},
    )
    upstream = [file_asset(measurement.source_file)] if measurement.source_file else []
    _materialize(measurement_asset(api_url, measurement.id, measurement.name), upstream,
                 {"row_count": measurement.row_count, "digest": measurement.digest})


def emit_pipeline_finished(api_url: str, run: Any, measurement_ids: Iterable[str] = ()) -> None:
    """Emit ``ionworks.pipeline.completed`` or ``.failed``; a completed run also materialises its asset.

    Example:
        >>> emit_pipeline_finished(credentials.api_url, final_run, ["6b0e..."])
    """
    ids = list(measurement_ids)
    emit_event(
        event=f"ionworks.pipeline.{'failed' if run.is_failed else 'completed'}",
        resource={"prefect.resource.id": f"ionworks.pipeline.{run.id}",
                  "prefect.resource.name": run.name or run.id},
        related=_related("measurement", ids),
        payload={"status": run.status, "error": run.error, "config_hash": run.config_hash},
    )
    if not run.is_failed:
        _materialize(pipeline_asset(api_url, run.id, run.url),
                     [measurement_asset(api_url, i) for i in ids], {"status": run.status})


def emit_parameter_set_published(api_url: str, cell: str, pipeline_id: str, summary: dict[str, Any]) -> None:
    """Materialise the cell's parameter-set asset from the pipeline that fitted it.

    Example:
        >>> emit_parameter_set_published(credentials.api_url, "cell-7", run.id, {"cost": 0.01})
    """
    _materialize(parameter_set_asset(api_url, cell), [pipeline_asset(api_url, pipeline_id)], summary)


def emit_parameters_drifted(cell: str, pipeline_id: str, drifted: dict[str, float]) -> None:
    """Emit ``ionworks.parameters.drifted`` with the relative change of each drifted parameter.

    Example:
        >>> emit_parameters_drifted("cell-7", run.id, {"Negative particle diffusivity [m2.s-1]": 0.31})
    """
    emit_event(
        event="ionworks.parameters.drifted",
        resource={"prefect.resource.id": f"ionworks.parameter-set.{slug(cell)}", "prefect.resource.name": cell},
        related=_related("pipeline", [pipeline_id]),
        payload={"relative_change": drifted},
    )
