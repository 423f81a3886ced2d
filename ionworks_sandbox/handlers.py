"""Job handlers: what a worker process runs for each kind of submitted work.

Each handler takes ``(payload, ctx)`` and returns a JSON-able dict stored as the job's output.
"""

from __future__ import annotations

from typing import Any

from .worker import JobContext

PIPELINE = "ionworks_sandbox.handlers:run_pipeline_job"
SIMULATION = "ionworks_sandbox.handlers:run_simulation_job"


def run_pipeline_job(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Run a pipeline's elements in order; progress is ``{"elements": {name: {status, progress}}}``."""
    import polars as pl

    from .compute.pipeline import run_pipeline

    paths: dict[str, str] = payload.get("measurements", {})
    elements: dict[str, dict[str, Any]] = payload["elements"]
    states: dict[str, dict[str, Any]] = {name: {"status": "pending"} for name in elements}

    def load_measurement(measurement_id: str) -> pl.DataFrame:
        return pl.read_parquet(paths[measurement_id])

    def report(update: dict[str, Any]) -> None:
        state = states.setdefault(update["element"], {})
        state["status"] = update.get("status", state.get("status", "running"))
        if update.get("progress") is not None:
            state["progress"] = update["progress"]
        if update.get("error") is not None:
            state["error"] = update["error"]
        ctx.report({"elements": states}, force=update.get("status") in {"completed", "failed"})

    output = run_pipeline(elements, load_measurement, report)
    output["element_states"] = states
    return output


def run_simulation_job(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Simulate one protocol run and write ``time_series.parquet`` and ``steps.parquet`` to its folder."""
    from .compute.simulation import run_simulation

    ctx.report({"stage": "simulating"})
    output = run_simulation(
        payload["model"],
        payload["protocol"],
        payload.get("experiment_parameters") or {},
        payload.get("design_parameters") or {},
        payload.get("extra_variables"),
    )
    folder = ctx.objects_dir / payload["storage_folder"]
    folder.mkdir(parents=True, exist_ok=True)
    output.time_series.write_parquet(folder / "time_series.parquet")
    output.steps.write_parquet(folder / "steps.parquet")
    return {"metrics": output.metrics, "termination": output.termination, "storage_folder": payload["storage_folder"]}
