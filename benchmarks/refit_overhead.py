"""The nightly-refit flow against a plain script making the same Ionworks calls on the same data, in one run.

For each pair, two cells get the same test: a real C/2 discharge of an LG M50 cell after a 2 h rest
(``tests/data/lgm50_cell785_0p5C_25degC.csv``, see ``tests/data/SOURCES.md``), or with ``--data synthetic`` a
rest then 0.5C and 1C discharges simulated with PyBaMM (a pipeline of a few seconds, which shows the flow's
fixed cost). The script builds the default ageing refit, submits it, waits with the official client's
``wait_for_completion(poll_interval=1)`` and reads the result; the flow (``nightly_refit``) refits the other cell
from scratch (cell lookup, tests, history, pipeline, wait, result, verdict, report with its plots, fleet row).
The two sides alternate which goes first, after one refit on each sandbox worker at once, which builds the
models each worker keeps (a worker's first fit builds them: 1-2 s). Then the flow
runs again on unchanged data. Printed: wall times, the flow/script ratio per pair (goal <= 1.10) and the
flow's extra seconds, the unchanged re-run / first run ratio (goal <= 0.05) with the pipelines it submitted
(goal 0), how long each side's pipeline job ran on the sandbox (so the flow's own cost can be told from the
compute's spread), the ratio again with both jobs taken as equally long (their mean; the run-to-run spread of
the same fit on the two workers is often larger than the flow's own cost), and where the flow's time went (its
task runs). For the re-run's floor, a flow that runs one task doing nothing is timed on the same Prefect server,
its runs named as the refit's are: what any unchanged night costs before it reads anything.

    PYTHONPATH=. python benchmarks/refit_overhead.py [--pairs 5] [--data real|synthetic]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

WORKERS = 2
REAL_TEST = Path(__file__).resolve().parent.parent / "tests" / "data" / "lgm50_cell785_0p5C_25degC.csv"


def _test_frames(data: str) -> dict:
    """Test name -> frame: the real C/2 discharge, or two simulated discharges."""
    import polars as pl

    if data == "real":
        return {"RPT 0 C/2": pl.read_csv(REAL_TEST)}
    from ionworks_sandbox.compute.synthetic import synthetic_discharge

    options = {"model_options": {"contact resistance": "true"}, "rest_first_s": 600.0, "noise_v": 0.001,
               "period_s": 20.0}
    truth = {"Contact resistance [Ohm]": 0.01}
    return {f"RPT 0 {rate}C": synthetic_discharge(truth, c_rates=(rate,), seed=i, **options)
            for i, rate in enumerate((0.5, 1.0))}


def _upload(cell, frames: dict) -> dict[str, str]:
    from ionworks_prefect import upload_measurement

    return {name: upload_measurement.fn(frame, cell, name, tags=["rpt:RPT 0"]).id for name, frame in frames.items()}


def _script(client, measurement_ids: dict[str, str]) -> float:
    """The same Ionworks calls as the flow's essentials, with the official client only."""
    from ionworks_prefect.refit_pipeline import RefitData, ageing_refit_pipeline, with_validation

    started = time.perf_counter()
    data = [RefitData(name=name, measurement_id=mid) for name, mid in measurement_ids.items()]
    submitted = client.pipeline.create(with_validation(ageing_refit_pipeline(data)))
    client.pipeline.wait_for_completion(submitted.id, timeout=900, poll_interval=1, verbose=False)
    client.pipeline.result(submitted.id)
    return time.perf_counter() - started


def _last_pipeline_job_seconds(client) -> float:
    """How long the newest pipeline job ran on the sandbox (its own listing), start to finish."""
    job = max((j for j in client.get("/jobs/") if j["job_type"] == "pipeline"), key=lambda j: j["created_at"])
    return (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()


async def _nothing() -> None:
    """The body of the floor flow's one task."""


async def _floor_flow(cell: str = "cell") -> None:
    """A flow run with one task doing nothing: what Prefect costs an unchanged night before its first read."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    await task(_nothing, name="nothing", cache_policy=NO_CACHE)()


def _floor_seconds(runs: int = 5) -> float:
    """The median wall time of ``runs`` floor flows, each in its own event loop as the re-run is."""
    from prefect import flow

    floor = flow(_floor_flow, name="floor", flow_run_name="floor {cell}")  # named, as each refit's run is
    asyncio.run(floor())  # the first run of a flow registers it
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        asyncio.run(floor())
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def _task_times(flow_run_id) -> dict[str, float]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as prefect:
        runs = await prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    totals: dict[str, float] = {}
    for run in runs:
        name = run.name.rsplit("-", 1)[0]
        totals[name] = totals.get(name, 0.0) + (run.total_run_time.total_seconds() if run.total_run_time else 0.0)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--data", choices=("real", "synthetic"), default="real")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    from ionworks import Ionworks
    from prefect.testing.utilities import prefect_test_harness

    from ionworks_prefect import CellTarget
    from ionworks_prefect.flows import nightly_refit
    from ionworks_prefect.local_sandbox import LocalSandbox

    frames = _test_frames(args.data)
    print(f"load average at the start: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, \
            LocalSandbox(Path(tmp) / "sandbox", ["bench-key"], workers=WORKERS) as sandbox, \
            prefect_test_harness(server_startup_timeout=180):
        os.environ.update(sandbox.client_env())
        client = Ionworks(api_url=sandbox.url, api_key="bench-key", project_id=sandbox.project_id, timeout=120)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            list(pool.map(lambda i: _script(client, _upload(CellTarget(specification="bench", instance=f"warm-up-{i}"),
                                                            frames)), range(WORKERS)))
        print(f"warm-up: {WORKERS} refits at once in {time.perf_counter() - started:.2f} s", flush=True)
        floor = _floor_seconds()
        print(f"floor: a flow running one task that does nothing takes {floor:.3f} s (median of 5)", flush=True)
        ratios, extras, beyond, matched, reruns, floors, submitted_on_rerun = [], [], [], [], [], [], []
        for pair in range(args.pairs):
            raw_cell = CellTarget(specification="bench", instance=f"script-{pair}")
            flow_cell = CellTarget(specification="bench", instance=f"flow-{pair}")
            raw_ids, _ = _upload(raw_cell, frames), _upload(flow_cell, frames)

            def run_flow() -> tuple[float, object]:
                started = time.perf_counter()
                state = asyncio.run(nightly_refit(cell=flow_cell, return_state=True))
                return time.perf_counter() - started, state

            if pair % 2 == 0:
                raw, raw_job = _script(client, raw_ids), _last_pipeline_job_seconds(client)
                (flowed, state), flow_job = run_flow(), _last_pipeline_job_seconds(client)
            else:
                (flowed, state), flow_job = run_flow(), _last_pipeline_job_seconds(client)
                raw, raw_job = _script(client, raw_ids), _last_pipeline_job_seconds(client)
            before = len(client.pipeline.list(limit=1000))
            started = time.perf_counter()
            asyncio.run(nightly_refit(cell=flow_cell))
            rerun = time.perf_counter() - started
            submitted_on_rerun.append(len(client.pipeline.list(limit=1000)) - before)
            ratios.append(flowed / raw)
            extras.append(flowed - raw)
            reruns.append(rerun / flowed)
            floors.append(floor / flowed)
            first = "script" if pair % 2 == 0 else "flow"
            print(f"pair {pair} ({first} first): script {raw:.2f} s, flow {flowed:.2f} s, "
                  f"ratio {flowed / raw:.2f}x ({flowed - raw:+.2f} s); unchanged re-run {rerun:.2f} s "
                  f"({rerun / flowed:.3f} of the first run), {submitted_on_rerun[-1]} submitted; the pipeline job ran "
                  f"{raw_job:.2f} / {flow_job:.2f} s, wall beyond it {raw - raw_job:.2f} / {flowed - flow_job:.2f} s",
                  flush=True)
            beyond.append((flowed - flow_job) - (raw - raw_job))
            job = (raw_job + flow_job) / 2
            matched.append((job + flowed - flow_job) / (job + raw - raw_job))
            if pair == args.pairs - 1:
                times = asyncio.run(_task_times(state.state_details.flow_run_id))
                print("flow task runs (s): " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in times.items()))
        print(f"refit flow / raw client script ratio: median {statistics.median(ratios):.2f}x "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f}; goal <= 1.10); the flow's extra time: median "
              f"{statistics.median(extras):+.2f} s, of which beyond the two pipeline jobs' own run times "
              f"{statistics.median(beyond):+.2f} s")
        print(f"the same ratio with both sides' pipeline jobs taken as equally long (their mean), each side's wall "
              f"beyond its job added: median {statistics.median(matched):.2f}x (min {min(matched):.2f}, "
              f"max {max(matched):.2f})")
        print(f"unchanged re-run / first run ratio: median {statistics.median(reruns):.3f} "
              f"(max {max(reruns):.3f}; goal <= 0.05), pipelines submitted: {sum(submitted_on_rerun)} (goal 0); "
              f"the floor flow / first run: median {statistics.median(floors):.3f}")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
