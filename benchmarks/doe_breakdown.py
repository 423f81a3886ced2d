"""Where the DOE benchmark's time goes, with 1 and 2 compute workers: job run times, idle workers, CPU by process.

Runs the grid of ``doe_scaling.py`` (waiting with the same client call, polling every ``--poll-interval``
seconds, 0.2 there) and then reads every job's ``started_at``/``finished_at`` back from
``GET /jobs/``. Prints the wall time, the mean and median job run time, how busy the workers were over the
jobs' span, and the CPU seconds used meanwhile by the sandbox server, each worker process and this client
(from /proc, so Linux only). Equal worker CPU per job with 1 and 2 workers and workers busy ~100 % mean the
job path adds nothing; a worker on the CPU for less than ~100 % of its jobs' run time was waiting for a core.

Usage:
    python benchmarks/doe_breakdown.py [--runs 50] [--poll-interval 0.2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from doe_scaling import PROTOCOL, grid
from ionworks import Ionworks

from ionworks_prefect.local_sandbox import LocalSandbox


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return found


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run_batch(client: Ionworks, doe: dict, poll_interval: float) -> tuple[float, int]:
    config = {"parameterized_model": "spm-chen2020", "protocol_experiment": {"protocol": PROTOCOL, "name": "DOE"},
              "design_parameters_doe": doe}  # fmt: skip
    started = time.perf_counter()
    ids = [r.simulation_id for r in client.simulation.protocol_batch(config)]
    client.simulation.wait_for_completion(ids, timeout=1800, poll_interval=poll_interval, verbose=False)
    return time.perf_counter() - started, len(ids)


def breakdown(workers: int, runs: int, poll_interval: float, root: Path) -> None:
    with LocalSandbox(root / f"workers-{workers}", ["bench-key"], workers=workers) as sandbox:
        client = Ionworks(api_url=sandbox.url, api_key=sandbox.api_key, project_id=sandbox.project_id)
        # One distinct design per worker (identical runs would be returned again, warming one worker only).
        warm_up = {"sampling": "grid", "rows": [{"type": "discrete", "name": "Positive electrode thickness [m]",
                                                 "values": [75e-6 + 1e-7 * i for i in range(workers)]}]}  # fmt: skip
        run_batch(client, warm_up, poll_interval)
        server = sandbox.process.pid
        pids = [server, *children(server)]
        before = {pid: cpu_seconds(pid) for pid in pids}
        client_before = time.process_time()
        wall, count = run_batch(client, grid(runs), poll_interval)
        used = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
        client_cpu = time.process_time() - client_before
        jobs = [job for job in client.get("/jobs/") if job["job_type"] == "simulate"][:count]
    durations = [seconds(job["finished_at"]) - seconds(job["started_at"]) for job in jobs]
    span = max(seconds(job["finished_at"]) for job in jobs) - min(seconds(job["started_at"]) for job in jobs)
    worker_cpu = [used[pid] for pid in pids[1:] if used[pid] > 0.05]
    print(f"{workers} worker(s): {count} simulations in {wall:.2f} s; job run time mean "
          f"{statistics.mean(durations) * 1e3:.0f} ms, median {statistics.median(durations) * 1e3:.0f} ms; "
          f"jobs' span {span:.2f} s, workers busy {sum(durations) / (span * workers):.0%} of it, "
          f"on the CPU {sum(worker_cpu) / sum(durations):.0%} of their run time")  # fmt: skip
    print(
        f"  CPU s: workers {' + '.join(f'{c:.2f}' for c in worker_cpu)} "
        f"({sum(worker_cpu) / count * 1e3:.0f} ms per simulation), server {used[server]:.2f}, client {client_cpu:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--poll-interval", type=float, default=0.2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            breakdown(workers, args.runs, args.poll_interval, Path(tmp))


if __name__ == "__main__":
    main()
