"""Fault soak: 100 small refits through a fault-injecting proxy, at 10 % and at 30 % of requests failing.

One sandbox (2 compute workers) and one Prefect test server. Every Ionworks request of the refits passes through
``tests/fault_proxy.FaultProxy``, which fails each request with the given probability in one of four ways, drawn
at random: a 503, a 429 with Retry-After 1 s, a connection dropped before the request reaches the server, or one
dropped after the server acted (the client never hears that it succeeded). The upload links go to the sandbox's
storage directly, as signed URLs do.

One refit is one flow run, never retried as a flow: create the cell (``CellTarget``), upload a 300-row discharge
as its measurement, then run a one-parameter pipeline with the dummy optimizer on it (submit, wait, fetch the
result). ``--concurrency`` refits run at once. Printed per fault rate: flow runs completed on their first try,
cells holding exactly one measurement and names holding exactly one pipeline (counted on the sandbox directly,
not through the proxy), the faults injected by kind, and the wall time. Goals: 100 of 100 at 10 %, >= 95 at 30 %.

Usage:
    python benchmarks/fault_soak.py [--refits 100] [--rates 0.1 0.3] [--concurrency 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "ERROR")  # the retries are logged as warnings

import ionworks_schema as iws  # noqa: E402
from ionworks import Ionworks  # noqa: E402
from prefect import flow  # noqa: E402

from ionworks_prefect import CellTarget, IonworksCredentials, PollSchedule, run_pipeline, upload_measurement  # noqa: E402
from ionworks_prefect.local_sandbox import LocalSandbox  # noqa: E402
from tests.fault_proxy import FaultProxy  # noqa: E402
from tests.measurement_frames import discharge_frame  # noqa: E402

DN = "Negative particle diffusivity [m2.s-1]"
GOALS = {0.1: 1.0, 0.3: 0.95}
SCHEDULE = PollSchedule(first=0.2, factor=1.5, ceiling=1.0)
#: The faults a transient outage makes (the proxy can also refuse with a 409, which no retry may ride out).
TRANSIENT_FAULTS = ("503", "429", "drop_before_forward", "drop_after_forward")


def refit_config(measurement_id: str, label: str) -> iws.Pipeline:
    """A one-parameter fit with the dummy optimizer (the initial guess only): a cheap, real pipeline."""
    return iws.Pipeline(
        {
            "known": iws.direct_entries.DirectEntry(parameters={"Ambient temperature [K]": 298.15}),
            "fit": iws.DataFit(
                objectives={"rpt": iws.objectives.CurrentDriven(data_input=f"db:{measurement_id}",
                                                                options={"model": {"type": "SPM"}})},
                parameters={DN: iws.Parameter(DN, initial_value=2e-14, bounds=(1e-14, 1e-13))},
                cost=iws.costs.RMSE(),
                optimizer=iws.optimizers.DummyOptimizer(),
            ),
        },
        name=label,
    )


@flow(name="soak-refit", retries=0)
async def soak_refit(index: int, run: str, credentials: IonworksCredentials) -> str:
    """Upload one cell's test and refit it; returns the pipeline id."""
    cell = CellTarget(specification=f"soak-{run}", instance=f"cell-{index}")
    frame = discharge_frame(current=1.0 + index / 1000)  # distinct data per refit
    uploaded = await asyncio.to_thread(upload_measurement, frame, cell, "rpt-0", credentials)
    result = await run_pipeline(refit_config(uploaded.id, f"soak {run} {index}"), credentials,
                                max_wait_seconds=300, poll_schedule=SCHEDULE)
    return result.pipeline_id


async def soak(refits: int, concurrency: int, run: str, credentials: IonworksCredentials) -> list[str | None]:
    """Run the refits; per refit None when its flow run completed, else the message of its final state."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> str | None:
        async with gate:
            state = await soak_refit(index, run, credentials, return_state=True)
            return None if state.is_completed() else state.message

    return list(await asyncio.gather(*(one(i) for i in range(refits))))


def left_on_server(client: Ionworks, run: str, refits: int) -> tuple[list[int], list[int]]:
    """Per refit: how many measurements its cell holds, and how many pipelines carry its name."""
    specs = [s for s in client.cell_spec.list(name_exact=f"soak-{run}") if s.name == f"soak-{run}"]
    measurements = dict.fromkeys(range(refits), 0)
    for spec in specs:
        for instance in client.cell_instance.list(spec.id, limit=1000):
            index = int(instance.name.rpartition("-")[2])
            measurements[index] = len(client.cell_measurement.list(instance.id))
    names = [p.name for p in client.pipeline.list(limit=1000) if (p.name or "").startswith(f"soak {run} ")]
    return list(measurements.values()), [names.count(f"soak {run} {i}") for i in range(refits)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refits", type=int, default=100)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    failed_goal = False
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        with LocalSandbox(Path(tmp) / "data", ["soak-key"], workers=2) as sandbox:
            direct = Ionworks(api_url=sandbox.url, api_key=sandbox.api_key, project_id=sandbox.project_id)
            for rate in args.rates:
                with FaultProxy(sandbox.url) as proxy:
                    proxy.randomly(rate, kinds=TRANSIENT_FAULTS, seed=args.seed)
                    credentials = IonworksCredentials(api_key=sandbox.api_key, api_url=proxy.url,
                                                      project_id=sandbox.project_id)
                    run = uuid.uuid4().hex[:8]
                    started = time.perf_counter()
                    failures = asyncio.run(soak(args.refits, args.concurrency, run, credentials))
                    completed = [f is None for f in failures]
                    elapsed = time.perf_counter() - started
                    faults, requests = proxy.injected(), len(proxy.hits)
                measurements, pipelines = left_on_server(direct, run, args.refits)
                done = sum(completed)
                exact = sum(completed[i] and measurements[i] == 1 and pipelines[i] == 1 for i in range(args.refits))
                duplicates = sum(m > 1 for m in measurements) + sum(p > 1 for p in pipelines)
                goal = GOALS.get(rate, 0.95)
                ok = exact >= goal * args.refits and duplicates == 0
                failed_goal |= not ok
                print(f"faults {rate:.0%}: {done}/{args.refits} refits completed on the first flow-run try, "
                      f"{exact} of them with exactly one measurement and one pipeline; {duplicates} duplicated "
                      f"measurements or pipelines; {requests} proxied requests, "
                      f"{sum(faults.values())} faults ({', '.join(f'{k} {v}' for k, v in sorted(faults.items()))}); "
                      f"{elapsed:.0f} s", flush=True)
                print(f"   goal ({goal:.0%} completed, one measurement and one pipeline each): "
                      f"{'met' if ok else 'NOT met'}", flush=True)
                for message in sorted({f for f in failures if f}):
                    print(f"   failed: {message[:300]}", flush=True)
    raise SystemExit(1 if failed_goal else 0)


if __name__ == "__main__":
    main()
