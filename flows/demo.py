"""The nightly-refit demo, end to end on this machine: no Ionworks account, no network.

    ionworks-prefect demo          # or: python -m flows.demo, bash scripts/demo.sh (from the repository root)

1. Starts a local Ionworks sandbox (``demo-output/sandbox``) and a Prefect server (the ephemeral one, unless
   PREFECT_API_URL points at a running server).
2. Simulates a cycler test with PyBaMM from hidden "true" particle diffusivities: 1C and 0.5C discharges of
   an SPMe Chen2020 cell with 1 mV noise, written as a BioLogic export and a CSV (``demo-output/cycler-files``).
3. Uploads them with the ``ingest-cycler-data`` flow and refits with the ``nightly-refit`` flow.
4. Runs the refit again with unchanged data: nothing is submitted.
5. Prints the fitted values beside the truth, where the artifacts and files are, and stops the sandbox.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

DN = "Negative particle diffusivity [m2.s-1]"
DP = "Positive particle diffusivity [m2.s-1]"
#: What the fit has to find; Chen2020 (the fit's starting point) has 3.3e-14 and 4.0e-15.
TRUTH = {DN: 5.0e-14, DP: 7.0e-15}
CELL = {"specification": "Demo NMC811 21700", "instance": "cell-7"}
API_KEY = "demo-key"


def write_biologic_mpt(frame: pl.DataFrame, path: Path) -> None:
    """Write a time series as a BioLogic EC-Lab ASCII export (.mpt): tab-separated, mA, discharge negative.

    Example:
        >>> write_biologic_mpt(frame, Path("rpt-1C.mpt"))
    """
    header = ["EC-Lab ASCII FILE", "Nb header lines : 4", ""]
    rows = ["mode\tox/red\ttime/s\tEwe/V\tI/mA\tNs"]
    rows += [f"1\t0\t{t:.3f}\t{v:.6f}\t{-i * 1000:.4f}\t{s}" for t, i, v, s in
             frame.select("Time [s]", "Current [A]", "Voltage [V]", "Step count").iter_rows()]
    path.write_text("\n".join(header + rows) + "\n", encoding="latin1")


def simulate_cycler_files(directory: Path) -> list[Path]:
    """1C and 0.5C discharges from the hidden truth, as a BioLogic .mpt and an Ionworks-style CSV."""
    from ionworks_sandbox.compute.synthetic import synthetic_discharge

    directory.mkdir(parents=True, exist_ok=True)
    one_c, half_c = directory / "rpt-1C.mpt", directory / "rpt-0.5C.csv"
    write_biologic_mpt(synthetic_discharge(TRUTH, c_rates=(1.0,), noise_v=0.001, seed=1), one_c)
    synthetic_discharge(TRUTH, c_rates=(0.5,), noise_v=0.001, seed=2, period_s=20.0).write_csv(half_c)
    return [one_c, half_c]


def _warm_up_prefect() -> None:
    """Start (or reach) the Prefect API so the first flow does not wait for it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.api_healthcheck()


async def _watch_fit(client, progress: Progress, row, done: asyncio.Event) -> None:
    """Show the sandbox pipeline's iteration, evaluations and best RMSE until the refit flow ends."""
    while not done.is_set():
        pipelines = await asyncio.to_thread(client.pipeline.list, limit=1, order_by="created_at", order="desc")
        if pipelines:
            elements = await asyncio.to_thread(client.get, f"/pipelines/{pipelines[0].id}/elements")
            figures = next((e.get("progress") for e in elements if e.get("progress")), None) or {}
            if figures.get("best_cost") is not None:
                progress.update(row, description=f"  fit: iteration {figures.get('iteration', 0)}, "
                                                 f"{figures.get('evaluations', 0)} model runs, "
                                                 f"best RMSE {figures['best_cost'] * 1000:.2f} mV")
        try:
            await asyncio.wait_for(done.wait(), timeout=0.5)
        except TimeoutError:
            pass


async def _refit(output: Path, client, progress: Progress, row):
    from ionworks_prefect.flows.nightly_refit import nightly_refit

    done = asyncio.Event()
    watcher = asyncio.create_task(_watch_fit(client, progress, row, done))
    try:
        return await nightly_refit(cell=CELL, output_dir=str(output / "parameters"), return_state=True)
    finally:
        done.set()
        await watcher


def _report(console: Console, fitted, state, rerun_state, pipelines_before: int, pipelines_after: int,
            artifacts: list[str], output: Path) -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    table = Table(title="Fitted parameters (hidden truth vs nightly refit)")
    for column in ("Parameter", "Chen2020 start", "Truth", "Fitted", "Error"):
        table.add_column(column, justify="left" if column == "Parameter" else "right")
    starts = {DN: 3.3e-14, DP: 4.0e-15}
    for name, truth in TRUTH.items():
        value = fitted.values[name]
        table.add_row(name, f"{starts[name]:.3e}", f"{truth:.3e}", f"{value:.3e}", f"{(value / truth - 1):+.2%}")
    console.print(table)
    for objective, cost in fitted.costs.items():
        console.print(f"  RMSE {objective}: {cost * 1000:.2f} mV")
    run_id = state.state_details.flow_run_id
    console.print(f"\nPipeline {fitted.pipeline_id} on the sandbox; Prefect flow run {run_id} (nightly-refit).")
    console.print(f"Re-run with unchanged data: {rerun_state.name}, pipelines in the sandbox "
                  f"{pipelines_before} -> {pipelines_after} (nothing submitted).")
    console.print("\nArtifacts (Prefect): " + ", ".join(sorted(artifacts)))
    console.print("Files:")
    for path in sorted((output / "parameters").iterdir()):
        console.print(f"  {path}")
    if PREFECT_API_URL.value() and PREFECT_UI_URL.value():
        console.print(f"\nIn the Prefect UI: {PREFECT_UI_URL.value().rstrip('/')}/runs/flow-run/{run_id}")
    else:
        console.print("\nTo browse the runs, artifacts and fit plot: `prefect server start`, then open "
                      f"http://127.0.0.1:4200/runs/flow-run/{run_id} (Artifacts tab; also Artifacts in the menu).")


async def _artifact_keys(flow_run_ids: list) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as prefect:
        found = await prefect.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=flow_run_ids)))
    return sorted({a.key for a in found if a.key})


def run(output: Path):
    """The whole demo; returns the fitted parameter set. The sandbox is stopped however it ends.

    Example:
        >>> run(Path("demo-output"))
    """
    from ionworks_prefect.local_sandbox import LocalSandbox

    console = Console()
    for previous in ("sandbox", "parameters"):
        shutil.rmtree(output / previous, ignore_errors=True)
    sandbox = LocalSandbox(output / "sandbox", [API_KEY])
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as progress:
            steps = progress.add_task("Starting the Ionworks sandbox and Prefect", total=5)
            with ThreadPoolExecutor(2) as boot:  # both start while PyBaMM simulates the cycler data
                started = [boot.submit(sandbox.start), boot.submit(_warm_up_prefect)]
                files = simulate_cycler_files(output / "cycler-files")
                for future in started:
                    future.result()
            os.environ.update(sandbox.client_env())
            from ionworks import Ionworks

            from ionworks_prefect.flows.ingest_cycler_data import ingest_cycler_data
            from ionworks_prefect.flows.nightly_refit import nightly_refit

            client = Ionworks(api_url=sandbox.url, api_key=API_KEY, project_id=sandbox.project_id)
            progress.update(steps, advance=2, description="Uploading the cycler files (ingest-cycler-data)")
            ingest = asyncio.run(ingest_cycler_data(cell=CELL, files=[str(f) for f in files], return_state=True))
            ingest.result()

            progress.update(steps, advance=1, description="Refitting Dn and Dp (nightly-refit)")
            fit_row = progress.add_task("  fit: submitting", total=None)
            state = asyncio.run(_refit(output, client, progress, fit_row))
            fitted = state.result()
            progress.remove_task(fit_row)

            progress.update(steps, advance=1, description="Refitting again with unchanged data")
            before = len(client.pipeline.list(limit=1000))
            rerun = asyncio.run(nightly_refit(cell=CELL, return_state=True))
            rerun.result()
            after = len(client.pipeline.list(limit=1000))
            progress.update(steps, advance=1, description="Done")
        ids = [s.state_details.flow_run_id for s in (ingest, state, rerun)]
        _report(console, fitted, state, rerun, before, after, asyncio.run(_artifact_keys(ids)), output)
        console.print(f"Cycler files: {', '.join(str(f) for f in files)}")
        return fitted
    finally:
        sandbox.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ionworks-prefect demo", description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("demo-output"),
                        help="where the sandbox data, cycler files and parameter files go (default: demo-output)")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")  # run logs still reach the Prefect UI
    run(args.output_dir)


if __name__ == "__main__":
    main()
