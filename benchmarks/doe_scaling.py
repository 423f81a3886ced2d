"""DOE throughput of the sandbox: a 50-run grid with 2 compute workers against the same grid with 1.

Each run simulates a 1C discharge of SPM (Chen2020) with a different positive-electrode thickness and
negative-particle radius. Both sandboxes run on this machine, one after the other, through the official
client over HTTP; timing starts at submission and ends when every simulation has its results (polled every
second, so the client's polling does not take the cores the workers need). Each sandbox
first runs one warm-up simulation so worker start-up is not counted. Target: 2 workers >= 1.8x faster.

Usage:
    python benchmarks/doe_scaling.py [--runs 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from ionworks import Ionworks

from ionworks_prefect.local_sandbox import LocalSandbox

PROTOCOL = """
global:
  initial_soc: 1
  temperature: 25
steps:
  - direction: Discharge
    mode: C-rate
    value: 1
    ends:
      - variable: Voltage [V]
        value: 2.5
"""
TARGET = 1.8
#: Status polls share the two cores with the workers; at 0.2 s they take ~16 % of the CPU the workers need.
POLL_SECONDS = 1.0


def grid(runs: int) -> dict:
    side = int(np.ceil(runs / 5))
    return {
        "sampling": "grid",
        "rows": [
            {"type": "range", "name": "Positive electrode thickness [m]", "min": 60e-6, "max": 90e-6, "count": 5},
            {"type": "range", "name": "Negative particle radius [m]", "min": 4e-6, "max": 8e-6, "count": side},
        ],
    }


def run_batch(client: Ionworks, doe: dict) -> float:
    config = {
        "parameterized_model": "spm-chen2020",
        "protocol_experiment": {"protocol": PROTOCOL, "name": "DOE benchmark"},
        "design_parameters_doe": doe,
    }
    started = time.perf_counter()
    responses = client.simulation.protocol_batch(config)
    client.simulation.wait_for_completion(
        [r.simulation_id for r in responses], timeout=1800, poll_interval=POLL_SECONDS, verbose=False
    )
    return time.perf_counter() - started, len(responses)


def timed(workers: int, runs: int, root: Path) -> tuple[float, int]:
    with LocalSandbox(root / f"workers-{workers}", ["bench-key"], workers=workers) as sandbox:
        client = Ionworks(api_url=sandbox.url, api_key=sandbox.api_key, project_id=sandbox.project_id)
        # One distinct design per worker (identical runs would be returned again, warming one worker only).
        warm_up = {"sampling": "grid", "rows": [{"type": "discrete", "name": "Positive electrode thickness [m]",
                                                 "values": [75e-6 + 1e-7 * i for i in range(workers)]}]}
        run_batch(client, warm_up)
        return run_batch(client, grid(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one, count = timed(1, args.runs, Path(tmp))
        two, _ = timed(2, args.runs, Path(tmp))
    print(f"DOE of {count} simulations, 1 worker: {one:.2f} s ({one / count * 1000:.0f} ms per run)")
    print(f"DOE of {count} simulations, 2 workers: {two:.2f} s ({two / count * 1000:.0f} ms per run)")
    print(f"speed-up with 2 workers: {one / two:.2f}x (target >= {TARGET}x)")


if __name__ == "__main__":
    main()
