"""/jobs: the asynchronous execution units behind pipelines, simple pipelines and simulations.

A pipeline runs as one job; each of its elements is addressed as ``<job id>.<element index>`` so the client's
``get_element_metadata`` can read that element's metadata from ``GET /jobs/{id}/metadata``, and a fit or
validation element's model-vs-data series and plots from ``/jobs/{id}/series*`` and
``/pipelines/datafits/{id}/plot_data`` (the client's ``.series`` and ``.overlay``).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request

from ..errors import ApiError, bad_request, not_found
from ..jobs import JobRunner, job_view
from .deps import Caller

router = APIRouter()


async def get_runner(request: Request) -> JobRunner:
    """The app's job runner (``async`` so FastAPI resolves it on the event loop, not in its thread pool)."""
    return request.app.state.jobs


Runner = Annotated[JobRunner, Depends(get_runner)]


def element_job_id(job_id: str, index: int) -> str:
    """The id under which element ``index`` of a pipeline job is served."""
    return f"{job_id}.{index}"


def _split(job_id: str) -> tuple[str, int | None]:
    base, dot, index = job_id.partition(".")
    return (base, int(index)) if dot and index.isdigit() else (job_id, None)


@router.get("/jobs/")
def list_jobs(caller: Caller, request: Request) -> list[dict[str, Any]]:
    jobs = request.app.state.store.list("job", org_id=caller.org_id)
    return [job_view(job) for job in reversed(jobs)]


@router.post("/jobs/")
def submit_job(caller: Caller) -> None:
    raise ApiError(410, "GONE", "Direct job submission is no longer supported; submit a pipeline or simulation")


@router.get("/jobs/{job_id}")
def get_job(job_id: str, caller: Caller, runner: Runner) -> dict[str, Any]:
    base, _ = _split(job_id)
    return {**job_view(runner.get(base, caller.org_id)), "job_id": job_id}


@router.get("/jobs/{job_id}/metadata")
def get_job_metadata(job_id: str, caller: Caller, runner: Runner) -> dict[str, Any]:
    base, index = _split(job_id)
    job = runner.get(base, caller.org_id)
    output = job.get("output") or {}
    if index is None:
        metadata = output.get("metadata")
    else:
        names = list((job.get("payload") or {}).get("elements", {}))
        name = names[index] if index < len(names) else None
        metadata = (output.get("element_metadata") or {}).get(name) if name else None
    if metadata is None:
        raise not_found("Job metadata", job_id)
    return metadata


#: Where an element's metadata keeps each source's series: ``{objective: {channel: [values]}}``.
_SERIES_SOURCES = {"optimal": "validation_results", "baseline": "baseline_validation_results"}
_DEFAULT_X = "Time [s]"


@router.get("/jobs/{job_id}/series/channels")
def get_series_channels(job_id: str, caller: Caller, runner: Runner) -> dict[str, dict[str, list[str]]]:
    metadata = get_job_metadata(job_id, caller, runner)
    channels: dict[str, dict[str, list[str]]] = {}
    for source, key in _SERIES_SOURCES.items():
        for objective, series in (metadata.get(key) or {}).items():
            names = [name for name, values in series.items() if isinstance(values, list)]
            if names:
                channels.setdefault(objective, {})[source] = names
    return channels


@router.get("/jobs/{job_id}/series")
def get_series(
    job_id: str,
    caller: Caller,
    runner: Runner,
    objective: str,
    source: str = "optimal",
    columns: str | None = None,
    x_column: str | None = None,
    max_points: int | None = Query(None, ge=2),
    x_min: float | None = None,
    x_max: float | None = None,
) -> dict[str, list[Any]]:
    if source not in _SERIES_SOURCES:
        raise bad_request(f"source must be one of {sorted(_SERIES_SOURCES)}, not {source!r}")
    series = (get_job_metadata(job_id, caller, runner).get(_SERIES_SOURCES[source]) or {}).get(objective)
    channels = [name for name, values in (series or {}).items() if isinstance(values, list)]
    if not channels:
        raise ApiError(404, "NOT_FOUND", f"Job '{job_id}' has no {source} series for objective '{objective}'")
    x_name = x_column or (_DEFAULT_X if _DEFAULT_X in channels else channels[0])
    wanted = [c for c in columns.split(",") if c] if columns else channels
    for name in [x_name, *wanted]:
        if name not in channels:
            raise bad_request(f"Channel '{name}' is not in objective '{objective}'; channels: {channels}")
    keep = _window(series[x_name], x_min, x_max, max_points)
    return {name: [series[name][i] for i in keep] for name in dict.fromkeys([x_name, *wanted])}


@router.get("/pipelines/datafits/{job_id}/plot_data")
def get_plot_data(
    job_id: str,
    caller: Caller,
    runner: Runner,
    objective_name: str,
    plot_index: int = Query(0, ge=0),
    max_points: int = Query(2000, ge=2),
    x_min: float | None = None,
    x_max: float | None = None,
) -> dict[str, Any]:
    plots = (get_job_metadata(job_id, caller, runner).get("plots") or {}).get(objective_name) or []
    if plot_index >= len(plots):
        raise ApiError(404, "NOT_FOUND", f"Job '{job_id}' has no plot {plot_index} for objective '{objective_name}'")
    plot = plots[plot_index]
    traces = []
    for trace in plot.get("traces") or []:
        keep = _window(trace["x"], x_min, x_max, max_points)
        traces.append({**trace, "x": [trace["x"][i] for i in keep], "y": [trace["y"][i] for i in keep]})
    return {**plot, "traces": traces}


def _window(x: list[float | None], x_min: float | None, x_max: float | None, max_points: int | None) -> list[int]:
    """Indices of the points with ``x_min <= x <= x_max``, thinned evenly (ends kept) to at most ``max_points``."""
    inside = list(range(len(x)))
    if x_min is not None or x_max is not None:
        low, high = -np.inf if x_min is None else x_min, np.inf if x_max is None else x_max
        inside = [i for i in inside if x[i] is not None and low <= x[i] <= high]
    if max_points is None or len(inside) <= max_points:
        return inside
    picks = np.unique(np.linspace(0, len(inside) - 1, max_points).round().astype(int))
    return [inside[i] for i in picks]


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, caller: Caller, runner: Runner) -> dict[str, Any]:
    base, _ = _split(job_id)
    return job_view(runner.cancel(base, caller.org_id))
