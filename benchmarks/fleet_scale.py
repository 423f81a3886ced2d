"""A fleet refit of many cells with a cheap pipeline: orchestration overhead per cell and requests per second.

Each of ``--cells`` cells (default 200) gets one small discharge; ``fleet_refit`` then refits them all with a
pipeline that evaluates its start only (``DummyOptimizer`` on an SPM objective, well under a second of work),
so what is measured is the orchestration: the per-cell subflow, its tasks, its waits and its artifacts. Printed:
the fleet's wall time and cells per minute, each cell's subflow time (median and max; its pipeline's own work
is a fraction of a second), the overhead per cell (wall time x cells at once / cells), the sandbox's requests
(all, per cell, per second overall and at the busiest second) and how many cells ran at once.

The Prefect server is a `prefect server start` on a throwaway PostgreSQL (Prefect's test server on SQLite when
PostgreSQL is not installed; with 200 cells at once SQLite stays locked).

    PYTHONPATH=. python benchmarks/fleet_scale.py [--cells 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PIPELINE = """
elements:
  fit:
    element_type: data_fit
    objectives:
      "*":
        type: CurrentDriven
        options: {model: {type: SPM}}
    parameters:
      "Negative particle diffusivity [m2.s-1]": {initial_value: 3.3e-14, bounds: [1.0e-14, 1.0e-13]}
    cost: {type: RMSE}
    optimizer: {type: DummyOptimizer}
"""


def _frame():
    from ionworks_sandbox.compute.synthetic import synthetic_discharge

    return synthetic_discharge({}, c_rates=(1.0,), model="SPM", noise_v=0.001, seed=1, period_s=60.0)


async def _runs(parent_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async with get_client() as prefect:
        runs, offset = [], 0
        while True:
            page = await prefect.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])), limit=200, offset=offset)
            runs += page
            if len(page) < 200:
                return runs
            offset += 200


@contextlib.contextmanager
def _prefect_server(home: Path) -> Iterator[None]:
    """A ``prefect server start`` on a throwaway PostgreSQL, as a fleet's server would run; Prefect's test server
    (SQLite) when PostgreSQL is not installed. SQLite serialises every write: 200 cells at once keep it locked."""
    from tests.postgres_server import PostgresServer, postgres_bindir

    bindir = postgres_bindir()
    if bindir is None:
        from prefect.testing.utilities import prefect_test_harness

        print("server: Prefect's test server on SQLite (no PostgreSQL found)", flush=True)
        with prefect_test_harness(server_startup_timeout=180):
            yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.live_prefect import LivePrefect, send_queued_logs_and_events

    with PostgresServer(bindir) as database:
        server = LivePrefect(home, {"PREFECT_SERVER_DATABASE_CONNECTION_URL": database.url})
        try:
            print(f"server: prefect server start on PostgreSQL ({bindir.parent.name})", flush=True)
            with temporary_settings({PREFECT_API_URL: server.api}):
                try:
                    yield
                finally:
                    send_queued_logs_and_events()
        finally:
            server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ["PREFECT_INTEGRATIONS_IONWORKS_FLEET_CONCURRENCY"] = str(args.concurrency)
    os.environ["PREFECT_INTEGRATIONS_IONWORKS_FLEET_CONCURRENCY_LIMIT"] = f"bench-fleet-{args.concurrency}"
    from ionworks import Ionworks

    from ionworks_prefect import CellTarget, upload_measurement
    from ionworks_prefect.flows import fleet_refit
    from ionworks_prefect.local_sandbox import LocalSandbox
    from ionworks_sandbox.request_log import read_request_log

    frame = _frame()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "requests.log"
        pipeline = Path(tmp) / "cheap.yaml"
        pipeline.write_text(PIPELINE)
        with LocalSandbox(Path(tmp) / "data", ["bench-key"], workers=2,
                          extra_args=["--request-log", str(log)]) as sandbox, \
                _prefect_server(Path(tmp) / "prefect"):
            os.environ.update(sandbox.client_env())
            client = Ionworks(api_url=sandbox.url, api_key="bench-key", project_id=sandbox.project_id, timeout=120)
            started = time.perf_counter()
            for index in range(args.cells):
                upload_measurement.fn(frame, CellTarget(specification="fleet-bench", instance=f"cell-{index:04d}"),
                                      "RPT 0 1C", tags=["rpt:RPT 0"])
            print(f"setup: {args.cells} cells uploaded in {time.perf_counter() - started:.0f} s", flush=True)
            begin = time.time()
            started = time.perf_counter()
            state = asyncio.run(fleet_refit("fleet-bench", pipeline_file=str(pipeline), return_state=True))
            wall = time.perf_counter() - started
            end = time.time()
            report = state.result()
            runs = asyncio.run(_runs(state.state_details.flow_run_id))
            pipelines = {p.id: p for p in client.pipeline.list(limit=1000)}
        requests = [r for r in read_request_log(log) if begin <= r[0] <= end]
    per_second = collections.Counter(int(r[0]) for r in requests)
    cell_runs = [r for r in runs if r.name.startswith("refit ")]
    subflow = [r.total_run_time.total_seconds() for r in cell_runs]
    spans = [(r.start_time, r.end_time) for r in cell_runs if r.start_time and r.end_time]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    print(f"fleet of {args.cells} cells: {wall:.1f} s wall, {60 * args.cells / wall:.0f} cells/min, "
          f"{sum(c.status != 'failed' for c in report.cells)} refitted, {len(pipelines)} pipelines on the sandbox")
    print(f"per cell: subflow median {statistics.median(subflow):.2f} s (max {max(subflow):.2f}); "
          f"orchestration overhead per cell {wall * min(peak, args.concurrency) / args.cells:.2f} s of a slot "
          f"(wall x cells at once / cells); at most {peak} cells at once (limit {args.concurrency})")
    print(f"sandbox requests: {len(requests)} in all, {len(requests) / args.cells:.1f} per cell, "
          f"{len(requests) / wall:.1f} per second overall, {max(per_second.values(), default=0)} at the busiest second")


if __name__ == "__main__":
    main()
