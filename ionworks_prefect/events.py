"""Prefect events and asset lineage for Ionworks work.

Events: ``ionworks.measurement.uploaded``, ``ionworks.pipeline.completed`` / ``ionworks.pipeline.failed``, and
per new fit ``ionworks.parameters.drifted`` / ``ionworks.fit.degraded`` on the cell (``ionworks.cell.<instance
id>``, payload: cell, test, values, changes, RMSE; see :meth:`FitVerdict.event_payload`). Resource ids are
Ionworks object ids (``ionworks.pipeline.<id>``), never the API's host.

Assets (remote materialisations, emitted like prefect-dbt does for dbt Cloud), keyed by the Ionworks
organization (when set) and project, so a change of API host or port keeps the lineage: cycler file
(``file://...``) → measurement (``ionworks://project/<project>/measurement/<id>``) → pipeline
(``.../pipeline/<id>``) → parameter set (``.../parameter-set/<cell-slug>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

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


def asset_scope(client: Any) -> str:
    """``[organization/<org>/]project/<project>`` of an Ionworks client: the stable part of every asset key.

    Example:
        >>> asset_scope(Ionworks(project_id="p1"))
        'project/p1'
    """
    org = getattr(client, "organization_id", None)
    return (f"organization/{org}/" if org else "") + f"project/{getattr(client, 'project_id', None) or 'default'}"


def measurement_asset(scope: str, measurement_id: str, name: str | None = None) -> Asset:
    """The asset of an Ionworks measurement."""
    props = AssetProperties(name=name) if name else None
    return Asset(key=f"ionworks://{scope}/measurement/{measurement_id}", properties=props)


def pipeline_asset(scope: str, pipeline_id: str, url: str | None = None) -> Asset:
    """The asset of an Ionworks pipeline run."""
    props = AssetProperties(url=url) if url else None
    return Asset(key=f"ionworks://{scope}/pipeline/{pipeline_id}", properties=props)


def parameter_set_asset(scope: str, cell: str) -> Asset:
    """The asset of the fitted parameter set of one cell (one asset, a new materialisation per fit)."""
    return Asset(key=f"ionworks://{scope}/parameter-set/{slug(cell)}",
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


def emit_measurement_uploaded(client: Any, measurement: Any) -> None:
    """Emit ``ionworks.measurement.uploaded`` and the measurement's asset materialisation (from its file).

    Example:
        >>> emit_measurement_uploaded(client, uploaded)
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
    _materialize(measurement_asset(asset_scope(client), measurement.id, measurement.name), upstream,
                 {"row_count": measurement.row_count, "digest": measurement.digest})


def emit_pipeline_finished(client: Any, run: Any, measurement_ids: Iterable[str] = ()) -> None:
    """Emit ``ionworks.pipeline.completed`` or ``.failed``; a completed run also materialises its asset.

    Example:
        >>> emit_pipeline_finished(client, final_run, ["6b0e..."])
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
        scope = asset_scope(client)
        _materialize(pipeline_asset(scope, run.id, run.url),
                     [measurement_asset(scope, i) for i in ids], {"status": run.status})


def emit_parameter_set_published(client: Any, fitted: Any) -> None:
    """Materialise the cell's parameter-set asset from the pipeline that fitted it (values and RMSE as payload).

    Example:
        >>> emit_parameter_set_published(client, fitted)
    """
    scope = asset_scope(client)
    _materialize(parameter_set_asset(scope, fitted.cell or fitted.pipeline_id),
                 [pipeline_asset(scope, fitted.pipeline_id)],
                 {"test": fitted.test, "values": fitted.values, "rmse_mv": fitted.rmse_mv})


def emit_fit_verdict(cell_instance_id: str, verdict: Any) -> None:
    """Emit ``ionworks.parameters.drifted`` and/or ``ionworks.fit.degraded`` for a new fit's verdict.

    The resource is the cell (``ionworks.cell.<instance id>``, named by its label); the payload is
    :meth:`FitVerdict.event_payload`, enough for an automation to act without another query.

    Example:
        >>> emit_fit_verdict(instance_id, assess_fit(history))
    """
    resource = {"prefect.resource.id": f"ionworks.cell.{cell_instance_id}",
                "prefect.resource.name": verdict.cell or cell_instance_id, "ionworks.test": verdict.test or ""}
    for event, flagged in (("ionworks.parameters.drifted", bool(verdict.drifted)),
                           ("ionworks.fit.degraded", verdict.degraded)):
        if flagged:
            emit_event(event=event, resource=resource, related=_related("pipeline", [verdict.pipeline_id]),
                       payload=verdict.event_payload())
