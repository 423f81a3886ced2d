"""The nightly-refit demo, end to end on this machine: no Ionworks account, no network.

    ionworks-prefect demo          # or: python -m flows.demo, bash scripts/demo.sh (from the repository root)

1. Starts a local Ionworks sandbox (``demo-output/sandbox``) and a Prefect server (the ephemeral one, unless
   PREFECT_API_URL points at a running server).
2. Simulates a cell ageing across three reference performance tests (RPTs) with PyBaMM from hidden "true"
   parameters (loss of lithium inventory and of active material in both electrodes, a contact resistance): each
   RPT is a rest, then a 1C and a 0.5C discharge with 1 mV noise, written as a BioLogic export and a CSV
   (``demo-output/cycler-files/rpt-<n>``).
3. Night by night: uploads an RPT with the ``ingest-cycler-data`` flow (tagged ``rpt:<label>`` and
   ``efc:<cycles>``) and refits it with the ``nightly-refit`` flow, which fits only the new test.
4. Runs the refit again with unchanged data: nothing is submitted.
5. Prints the trajectory (one row per test), the change from the first test to the newest beside the truth,
   the verdicts, where the artifacts and files are, and stops the sandbox.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

CN0 = "Initial concentration in negative electrode [mol.m-3]"
EPS_N = "Negative electrode active material volume fraction"
EPS_P = "Positive electrode active material volume fraction"
R_CONTACT = "Contact resistance [Ohm]"
#: The degradation modes the demo shows, with short names: lithium inventory and active material per electrode.
MODES = ((CN0, "LLI: initial negative concentration [mol.m-3]"), (EPS_N, "LAM-: negative active fraction [-]"),
         (EPS_P, "LAM+: positive active fraction [-]"), (R_CONTACT, "Contact resistance [Ohm]"))
FRESH = {CN0: 29866.0, EPS_N: 0.75, EPS_P: 0.665, R_CONTACT: 0.01}
#: The hidden truth of each RPT: (label, equivalent full cycles, parameters). RPT 1 has lost 2 % of its lithium
#: (below the 5 % drift threshold); RPT 2 7 % of its lithium, 6 % of its negative and 5 % of its positive active
#: material.
AGEING = (
    ("RPT 0", 0, FRESH),
    ("RPT 1", 150, {**FRESH, CN0: FRESH[CN0] * 0.98}),
    ("RPT 2", 300, {**FRESH, CN0: FRESH[CN0] * 0.93, EPS_N: FRESH[EPS_N] * 0.94, EPS_P: FRESH[EPS_P] * 0.95}),
)
DAYS_PER_RPT = 30
FIRST_TEST = datetime(2026, 9, 1, 9, 0, tzinfo=timezone.utc)
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


def simulate_rpt(truth: dict[str, float], directory: Path, seed: int) -> list[Path]:
    """One RPT from the hidden truth: a 1C discharge as a BioLogic .mpt and a 0.5C one as an Ionworks-style CSV,
    named after the directory (``<dir>-1C.mpt``, ``<dir>-0.5C.csv``)."""
    from ionworks_sandbox.compute.synthetic import synthetic_discharge

    directory.mkdir(parents=True, exist_ok=True)
    one_c, half_c = directory / f"{directory.name}-1C.mpt", directory / f"{directory.name}-0.5C.csv"
    options = {"model_options": {"contact resistance": "true"}, "rest_first_s": 600.0, "noise_v": 0.001}
    write_biologic_mpt(synthetic_discharge(truth, c_rates=(1.0,), seed=seed, **options), one_c)
    synthetic_discharge(truth, c_rates=(0.5,), seed=seed + 1, period_s=20.0, **options).write_csv(half_c)
    return [one_c, half_c]


def _warm_up_prefect() -> None:
    """Start (or reach) the Prefect API so the first flow does not wait for it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.api_healthcheck()


def _trajectory(console: Console, history: pl.DataFrame, verdicts: list[str]) -> None:
    table = Table(title=f"Trajectory of {CELL['specification']}/{CELL['instance']} (one row per test)",
                  box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=escape("LLI: initial negative concentration [mol.m-3]; LAM-, LAM+: active fractions; "
                                 "R: contact resistance [mOhm]; RMSE: worst objective [mV]"))
    for column in ("Test", "Date", "EFC", "LLI", "LAM-", "LAM+", "R", "RMSE", "Verdict"):
        table.add_column(escape(column), justify="left" if column in ("Test", "Verdict") else "right",
                         no_wrap=True)
    for row, verdict in zip(history.iter_rows(named=True), verdicts, strict=True):
        table.add_row(row["test"], f"{row['tested_at']:%Y-%m-%d}", f"{row['equivalent_full_cycles']:g}",
                      f"{row[CN0]:.0f}", f"{row[EPS_N]:.4f}", f"{row[EPS_P]:.4f}", f"{row[R_CONTACT] * 1e3:.2f}",
                      f"{row['rmse_mv']:.1f}", verdict)
    console.print(table)


def _baseline_vs_latest(console: Console, history: pl.DataFrame) -> None:
    table = Table(title="First test to newest: fitted change against the hidden truth")
    for column in ("Parameter", "RPT 0 fitted", "Newest fitted", "Fitted change", "True change"):
        table.add_column(column, justify="left" if column == "Parameter" else "right")
    first, last = history.row(0, named=True), history.row(-1, named=True)
    truth_first, truth_last = AGEING[0][2], AGEING[-1][2]
    for name, label in MODES:
        table.add_row(escape(label), f"{first[name]:.4g}", f"{last[name]:.4g}", f"{last[name] / first[name] - 1:+.1%}",
                      f"{truth_last[name] / truth_first[name] - 1:+.1%}")
    console.print(table)


def _report(console: Console, refit, states, rerun, pipelines: tuple[int, int], artifacts: list[str],
            output: Path) -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    run_id = states[-1].state_details.flow_run_id
    console.print(f"Verdict of {refit.fitted.test}: [bold]{refit.verdict.verdict}[/bold]"
                  + (f" ({escape(', '.join(refit.verdict.drifted))} moved more than "
                     f"{refit.verdict.drift_threshold:.0%} since {refit.verdict.baseline_test})"
                     if refit.verdict.drifted else ""))
    console.print(f"Re-run with unchanged data: {rerun.name}, pipelines in the sandbox "
                  f"{pipelines[0]} -> {pipelines[1]} (nothing submitted).")
    console.print("\nArtifacts (Prefect): " + ", ".join(sorted(artifacts)))
    console.print("Files:")
    for path in sorted((output / "parameters").iterdir()):
        console.print(f"  {path}")
    if PREFECT_API_URL.value() and PREFECT_UI_URL.value():
        console.print(f"\nIn the Prefect UI: {PREFECT_UI_URL.value().rstrip('/')}/runs/flow-run/{run_id}")
    else:
        console.print("\nTo browse the runs, artifacts and plots: `prefect server start`, then open "
                      f"http://127.0.0.1:4200/runs/flow-run/{run_id} (Artifacts tab; also Artifacts in the menu).")


async def _artifact_keys(flow_run_ids: list) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as prefect:
        found = await prefect.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=flow_run_ids)))
    return sorted({a.key for a in found if a.key})


def run(output: Path):
    """The whole demo; returns the newest refit (``CellRefit``). The sandbox is stopped however it ends.

    Example:
        >>> run(Path("demo-output"))
    """
    from ionworks_prefect.local_sandbox import LocalSandbox

    console = Console()
    for previous in ("sandbox", "parameters", "cycler-files"):
        shutil.rmtree(output / previous, ignore_errors=True)
    sandbox = LocalSandbox(output / "sandbox", [API_KEY])
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as progress:
            steps = progress.add_task("Starting the Ionworks sandbox and Prefect", total=2 + 2 * len(AGEING))
            with ThreadPoolExecutor(2) as boot:  # both start while PyBaMM simulates the cycler data
                started = [boot.submit(sandbox.start), boot.submit(_warm_up_prefect)]
                files = [simulate_rpt(truth, output / "cycler-files" / f"rpt-{i}", seed=10 * i + 1)
                         for i, (_, _, truth) in enumerate(AGEING)]
                for future in started:
                    future.result()
            os.environ.update(sandbox.client_env())
            from ionworks import Ionworks

            from ionworks_prefect import CellTarget, parameter_history
            from ionworks_prefect.flows import ingest_cycler_data, nightly_refit

            client = Ionworks(api_url=sandbox.url, api_key=API_KEY, project_id=sandbox.project_id)
            states = []
            for i, ((label, cycles, _), rpt_files) in enumerate(zip(AGEING, files, strict=True)):
                progress.update(steps, advance=1, description=f"Night {i + 1}: uploading {label} (ingest-cycler-data)")
                ingest = asyncio.run(ingest_cycler_data(
                    cell=CELL, files=[str(f) for f in rpt_files], tags=[f"rpt:{label}", f"efc:{cycles}"],
                    start_time=FIRST_TEST + timedelta(days=DAYS_PER_RPT * i), return_state=True))
                ingest.result()
                progress.update(steps, advance=1, description=f"Night {i + 1}: refitting {label} (nightly-refit)")
                states.append(asyncio.run(nightly_refit(cell=CELL, output_dir=str(output / "parameters"),
                                                        return_state=True)))
            refit = states[-1].result()
            before = len(client.pipeline.list(limit=1000))
            rerun = asyncio.run(nightly_refit(cell=CELL, return_state=True))
            rerun.result()
            after = len(client.pipeline.list(limit=1000))
            progress.update(steps, advance=1, description="Done")
            history = parameter_history.fn(CellTarget(**CELL))
        verdicts = [s.result().verdict.verdict for s in states]
        _trajectory(console, history, verdicts)
        _baseline_vs_latest(console, history)
        ids = [s.state_details.flow_run_id for s in (*states, rerun)]
        _report(console, refit, states, rerun, (before, after), asyncio.run(_artifact_keys(ids)), output)
        return refit
    finally:
        sandbox.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ionworks-prefect demo", description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("demo-output"),
                        help="where the sandbox data, cycler files and parameter files go (default: demo-output)")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # a first start migrates a database
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")  # run logs still reach the Prefect UI
    run(args.output_dir)


if __name__ == "__main__":
    main()
