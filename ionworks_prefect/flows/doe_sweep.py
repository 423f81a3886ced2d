"""Design-of-experiments sweep: simulate a protocol over a grid of design parameters and compare the runs.

The grid (parameter name -> values) is expanded here into one condition per combination, so each run's
design is known; the batch runs on Ionworks (``run_simulation_batch``). One summary task per run then
collects design values and metrics, and the flow publishes a ``doe-sweep`` table artifact and a
``doe-sweep-plot`` markdown artifact with voltage curves and discharge capacity against the first
design parameter (also written as a PNG when ``output_dir`` is given).

Example:
    >>> asyncio.run(doe_sweep(ucp_yaml, {"Negative particle diffusivity [m2.s-1]": [1e-14, 3e-14, 1e-13]}))
"""

from __future__ import annotations

import base64
import io
import itertools
from pathlib import Path
from typing import Any, Optional, Union

from prefect import flow, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from ionworks_prefect import SimulationResult, run_simulation_batch

TABLE_KEY, PLOT_KEY = "doe-sweep", "doe-sweep-plot"
CAPACITY = "Discharge capacity [A.h]"


class SweepRun(BaseModel):
    """One simulation of the sweep: its design values, scalar metrics and the voltage curve to plot."""

    simulation_id: str
    design: dict[str, float]
    metrics: dict[str, float]
    curve_x: list[float]
    curve_v: list[float]
    x_label: str


class SweepSummary(BaseModel):
    """All runs of a sweep, and where the plot was written."""

    runs: list[SweepRun]
    plot_file: Optional[str] = None


def grid_conditions(grid: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One ``conditions`` entry per combination of the grid's values, first parameter varying slowest.

    Example:
        >>> grid_conditions({"a": [1, 2], "b": [3]})
        [{'design_parameters': {'a': 1.0, 'b': 3.0}}, {'design_parameters': {'a': 2.0, 'b': 3.0}}]
    """
    names = list(grid)
    return [{"design_parameters": dict(zip(names, map(float, combo), strict=False))}
            for combo in itertools.product(*(grid[n] for n in names))]


@task(name="Summarise simulation run", cache_policy=NO_CACHE)
def summarise_run(result: SimulationResult, condition: dict[str, Any]) -> SweepRun:
    """Numeric metrics plus a thinned voltage curve (against capacity when available, else time)."""
    series = result.time_series
    x_label = "Capacity [A.h]" if "Capacity [A.h]" in series.columns else "Time [s]"
    step = max(1, series.height // 300)
    metrics = {k: float(v) for k, v in result.metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return SweepRun(simulation_id=result.simulation_id, design=condition["design_parameters"], metrics=metrics,
                    curve_x=series[x_label][::step].to_list(), curve_v=series["Voltage [V]"][::step].to_list(),
                    x_label=x_label)


def _label(design: dict[str, float]) -> str:
    return ", ".join(f"{name.split(' [')[0]} = {value:.3g}" for name, value in design.items())


def render_sweep_plot(runs: list[SweepRun]) -> bytes:
    """PNG: voltage curves of every run, and discharge capacity against the first design parameter."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4), dpi=90)
    curves, trend = figure.subplots(1, 2)
    for run in runs:
        curves.plot(run.curve_x, run.curve_v, linewidth=1.2, label=_label(run.design))
    curves.set(xlabel=runs[0].x_label, ylabel="Voltage [V]", title="Voltage")
    curves.legend(fontsize=7)
    first = next(iter(runs[0].design), None)
    if first is not None:
        groups: dict[str, list[tuple[float, float]]] = {}
        for run in runs:
            others = _label({k: v for k, v in run.design.items() if k != first})
            groups.setdefault(others, []).append((run.design[first], run.metrics.get(CAPACITY, float("nan"))))
        for others, points in groups.items():
            trend.plot(*zip(*sorted(points), strict=False), "o-", label=others or None)
        trend.set(xlabel=first, ylabel=CAPACITY, title="Capacity against design")
        values = [r.design[first] for r in runs]
        if min(values) > 0 and max(values) / min(values) >= 10:
            trend.set_xscale("log")
        if len(groups) > 1:
            trend.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


@flow(name="doe-sweep", description="Simulate a protocol over a grid of design parameters and compare the runs.")
async def doe_sweep(
    protocol: str,
    grid: dict[str, list[float]],
    model: Union[str, dict[str, Any]] = "spme-chen2020",
    experiment_parameters: Optional[dict[str, float]] = None,
    output_dir: Optional[str] = None,
    credentials: Optional[str] = None,
    max_wait_seconds: float = 1800.0,
) -> SweepSummary:
    """Run ``protocol`` (UCP YAML text) on ``model`` for every combination in ``grid``.

    The grid is expanded into one condition per combination (first parameter varying slowest) and run as one
    batch (:func:`run_simulation_batch`). The flow publishes the ``doe-sweep`` table artifact (design values and
    metrics per run) and the ``doe-sweep-plot`` markdown artifact (voltage curves, and discharge capacity against
    the first design parameter).

    Args:
        protocol: UCP YAML text.
        grid: Design parameter name -> the values to try.
        model: A parameterized-model id or config.
        experiment_parameters: Values for the protocol's ``input[...]`` placeholders, the same for every run.
        output_dir: Directory to also write the plot into, as ``doe-sweep.png``; None writes no file.
        credentials: The name of a saved ``IonworksCredentials`` block; None reads the ``IONWORKS_*`` variables.
        max_wait_seconds: How long to wait for the whole batch before giving up (it keeps running).

    Returns:
        The :class:`SweepSummary`: one :class:`SweepRun` per combination (design, metrics, voltage curve), in
        grid order, and ``plot_file``, the PNG's absolute path when ``output_dir`` was given.

    Raises:
        InvalidSimulationConfig: The client refused the batch (a malformed model, protocol or parameters).
        SimulationFailed: Any simulation of the sweep failed or was canceled; the message lists every failed one.
        WaitTimedOut: The batch did not finish within ``max_wait_seconds``; it keeps running in Ionworks.
        IonworksRequestError: Ionworks refused a request (4xx, e.g. an unknown model) or answered in a way that
            cannot be used.
        IonworksTransientError: The submission or a result download still failed after its retries.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        from pathlib import Path
        from prefect import flow
        from ionworks_prefect.flows import doe_sweep

        @flow
        async def diffusivity_study():
            summary = await doe_sweep(Path("protocols/1c-discharge.yaml").read_text(),
                                      {"Negative particle diffusivity [m2.s-1]": [1e-14, 3e-14, 1e-13],
                                       "Ambient temperature [K]": [273.15, 298.15]},
                                      output_dir="sweeps/diffusivity")
            return [(run.design, run.metrics.get("Discharge capacity [A.h]")) for run in summary.runs]
        ```
    """
    conditions = grid_conditions(grid)
    config: dict[str, Any] = {"parameterized_model": model, "conditions": conditions,
                              "protocol_experiment": {"protocol": protocol, "name": "DOE sweep"}}
    if experiment_parameters:
        config["experiment_parameters"] = experiment_parameters
    results = await run_simulation_batch(config, credentials, max_wait_seconds=max_wait_seconds)
    runs = [future.result() for future in summarise_run.map(results, conditions)]

    design_names = list(grid)
    rows = [{"simulation_id": r.simulation_id, **r.design, **r.metrics} for r in runs]
    await acreate_table_artifact(rows, key=TABLE_KEY, description=f"{len(runs)} runs over {', '.join(design_names)}")
    png = render_sweep_plot(runs)
    plot_file = None
    if output_dir:
        path = Path(output_dir) / "doe-sweep.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        plot_file = str(path.resolve())
    image = base64.b64encode(png).decode()
    await acreate_markdown_artifact(f"# DOE sweep\n\n![sweep](data:image/png;base64,{image})\n", key=PLOT_KEY,
                                    description="Voltage curves and capacity against the design")
    return SweepSummary(runs=runs, plot_file=plot_file)
