"""Ingest speed: a cycler CSV to a ready measurement on a local sandbox, against a polars read + parquet write.

For each size, a cycler CSV is written (1 s sampling; rest, 1 A discharge, rest, 1 A charge, 2,000 rows per
step; time, current, voltage, temperature, step and cycle counts). Then, each in a fresh process so peak
memory is its own:

- baseline: ``pl.read_csv(file).write_parquet(...)``;
- ingest: ``upload_measurement`` of the file to a new cell on a sandbox started here
  (``ionworks_prefect.local_sandbox.LocalSandbox``), until the measurement is ready.

Each side runs three times, interleaved (baseline, ingest, baseline, ...), each run in a fresh process that first
warms up on a small file (imports, thread pools); medians are compared, and the ratio of each pair is printed.
Printed: the time ratio (goal <= 1.5x), the CPU time each side used (steadier than wall time on a shared machine),
each process's peak RSS growth over the parquet file's size (goal <= 4x, client and sandbox), where the
ingest's time goes on each side, and the floor the upload contract sets: staging the CSV as parquet (itself a
read and a write of the data) and, after the confirm, the server's read and step derivation, one after the other.

``--return-freed-memory`` runs every process (baseline, client, sandbox) with its allocators returning freed
memory at once (polars' jemalloc without decay, glibc mapping large blocks): peak RSS then follows the memory in
use, not what the allocators keep for reuse, at some cost in time.

Usage:
    python benchmarks/ingest_speed.py                      # 1,000,000 and 5,000,000 rows
    python benchmarks/ingest_speed.py --rows 1000000
    python benchmarks/ingest_speed.py --rows 1000000 --return-freed-memory
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import polars as pl

STEP_ROWS = 2_000
#: Allocator settings under which freed memory leaves the process at once (read when a process starts).
RETURN_FREED_MEMORY = {"_RJEM_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0", "MALLOC_MMAP_THRESHOLD_": "1048576"}


def cycler_csv(path: Path, rows: int, seed: int = 0) -> None:
    """A plausible Ionworks-style cycler export: discharge current positive, voltage following the current."""
    rng = np.random.default_rng(seed)
    step = np.arange(rows) // STEP_ROWS
    kind = step % 4  # rest, discharge, rest, charge
    position = (np.arange(rows) % STEP_ROWS) / STEP_ROWS
    voltage = np.choose(kind, [np.full(rows, 4.05), 4.0 - 0.8 * position, np.full(rows, 3.15), 3.2 + 0.8 * position])
    pl.DataFrame({
        "Time [s]": np.arange(rows, dtype=float),
        "Current [A]": np.choose(kind, [0.0, 1.0, 0.0, -1.0]),
        "Voltage [V]": voltage + rng.normal(0.0, 5e-4, rows),
        "Temperature [degC]": 25.0 + rng.normal(0.0, 0.1, rows),
        "Step count": step,
        "Cycle count": step // 4,
    }).write_csv(path)


def _kib(field: str, pid: str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak(pid: str = "self") -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def _cpu_seconds(pid: str = "self") -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


REPEATS = 3


def _baseline(csv: str, parquet: str, warm_up: str) -> dict:
    pl.read_csv(warm_up).write_parquet(parquet)
    _reset_peak()
    before = _kib("VmRSS")
    started, cpu = time.perf_counter(), _cpu_seconds()
    pl.read_csv(csv).write_parquet(parquet)
    return {"seconds": time.perf_counter() - started, "cpu": _cpu_seconds() - cpu, "peak_kib": _kib("VmHWM") - before}


def _ingest(csv: str, env: dict[str, str], warm_up: str, server_pid: str) -> dict:
    os.environ.update(env)
    from ionworks import Ionworks

    from ionworks_prefect import CellTarget
    from ionworks_prefect.measurement_checks import check_measurement
    from ionworks_prefect.measurement_data import stage_measurement
    from ionworks_prefect.measurements import store_measurement

    client = Ionworks()
    target = CellTarget(specification=f"bench-{os.getpid()}-{time.time_ns()}", instance="cell")
    store_measurement(client, warm_up, target, "warm-up")  # imports, thread pools, the cell itself
    _reset_peak()
    _reset_peak(server_pid)
    before, server_before = _kib("VmRSS"), _kib("VmRSS", server_pid)
    started, cpu, server_cpu = time.perf_counter(), _cpu_seconds(), _cpu_seconds(server_pid)
    uploaded = store_measurement(client, csv, target, "bench")
    seconds, cpu, server_cpu = (time.perf_counter() - started, _cpu_seconds() - cpu,
                                _cpu_seconds(server_pid) - server_cpu)
    peak, server_peak = _kib("VmHWM") - before, _kib("VmHWM", server_pid) - server_before
    record = client.cell_measurement.get(uploaded.id)
    assert record.processing_status == "ready" and record.row_count == uploaded.row_count, record
    parts = {}
    t = time.perf_counter()
    with stage_measurement(csv) as staged:  # re-timed after the run, in this (warm) process
        parts["CSV streamed to parquet"] = time.perf_counter() - t
        t = time.perf_counter()
        check_measurement(staged.table)
        parts["checks (sanity + client rules)"] = time.perf_counter() - t
        t = time.perf_counter()
        staged.digest()
        parts["digest (beside the cell look-up and upload in the ingest)"] = time.perf_counter() - t
    parts["the rest (upload, server processing, polls)"] = seconds - sum(
        v for k, v in parts.items() if not k.startswith("digest"))
    return {"seconds": seconds, "cpu": cpu, "server_cpu": server_cpu, "peak_kib": peak, "server_peak_kib": server_peak,
            "rows": uploaded.row_count, "parts": parts}


def _server_parts(parquet: Path) -> dict[str, float]:
    """The sandbox's processing steps timed in this process on the same parquet file."""
    from ionworks_sandbox.measurement_processing import cycle_table, derive_steps, file_digest, read_time_series

    parts = {}
    t = time.perf_counter()
    frame = read_time_series(parquet)
    parts["read + check"] = time.perf_counter() - t
    t = time.perf_counter()
    steps = derive_steps(frame)
    parts["derive steps (ionworksdata)"] = time.perf_counter() - t
    t = time.perf_counter()
    cycle_table(steps)
    parts["cycles"] = time.perf_counter() - t
    t = time.perf_counter()
    file_digest(parquet, frame)
    parts["digest"] = time.perf_counter() - t
    return parts


def _fresh(fn, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _median(runs: list[dict], key: str) -> float:
    return sorted(run[key] for run in runs)[len(runs) // 2]


def report(rows: int, work: Path, bases: list[dict], ingests: list[dict], server_peak_kib: int) -> None:
    csv, parquet = work / f"cycler-{rows}.csv", work / f"cycler-{rows}.parquet"
    size_kib = parquet.stat().st_size / 1024
    ratios = sorted(i["seconds"] / b["seconds"] for b, i in zip(bases, ingests))
    base = {"seconds": _median(bases, "seconds"), "peak_kib": max(b["peak_kib"] for b in bases)}
    ingest = {"seconds": _median(ingests, "seconds"), "peak_kib": max(i["peak_kib"] for i in ingests),
              "parts": {k: sorted(i["parts"][k] for i in ingests)[len(ingests) // 2] for k in ingests[0]["parts"]}}
    print(f"\n{rows:,} rows: CSV {csv.stat().st_size / 2**20:.0f} MiB, parquet {size_kib / 1024:.1f} MiB")
    print(f"  baseline (polars read + parquet write), median of {REPEATS}: {base['seconds']:.2f} s, "
          f"peak RSS +{base['peak_kib'] / 1024:.0f} MiB")
    print(f"  ingest to ready measurement, median of {REPEATS}: {ingest['seconds']:.2f} s, client peak RSS "
          f"+{ingest['peak_kib'] / 1024:.0f} MiB, sandbox +{server_peak_kib / 1024:.0f} MiB")
    print(f"  ratio ingest / baseline: {ingest['seconds'] / base['seconds']:.2f}x (goal <= 1.5x); per pair "
          + ", ".join(f"{r:.2f}x" for r in ratios))
    cpu = sorted(i["cpu"] + i["server_cpu"] for i in ingests)[len(ingests) // 2]
    print(f"  CPU time (all threads), median: baseline {_median(bases, 'cpu'):.2f} s; ingest client "
          f"{_median(ingests, 'cpu'):.2f} s + sandbox {_median(ingests, 'server_cpu'):.2f} s, "
          f"{cpu / _median(bases, 'cpu'):.2f}x the baseline")
    print(f"  ratio client peak RSS / parquet size: {ingest['peak_kib'] / size_kib:.2f}x (goal <= 4x; "
          f"baseline {base['peak_kib'] / size_kib:.2f}x)")
    print(f"  ratio sandbox peak RSS / parquet size: {server_peak_kib / size_kib:.2f}x (goal <= 4x)")
    print("  client: " + ", ".join(f"{k} {v:.2f} s" for k, v in ingest["parts"].items()))
    server = _server_parts(parquet)
    print("  sandbox (same steps, this process): " + ", ".join(f"{k} {v:.2f} s" for k, v in server.items()))
    floor = ingest["parts"]["CSV streamed to parquet"] + sum(v for k, v in server.items() if k != "digest")
    print(f"  floor under the upload contract (the CSV staged as parquet before it is sent, then the server's read "
          f"and derivation, which start at the confirm): {floor:.2f} s, {floor / base['seconds']:.2f}x the baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--return-freed-memory", action="store_true",
                        help="run every process with allocators that return freed memory at once")
    args = parser.parse_args()
    if args.return_freed_memory:
        os.environ.update(RETURN_FREED_MEMORY)  # inherited by the sandbox and each fresh process
    from ionworks_prefect.local_sandbox import LocalSandbox

    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        work = Path(tmp)
        warm_up = work / "warm-up.csv"
        cycler_csv(warm_up, 4 * STEP_ROWS, seed=1)
        for rows in args.rows:
            cycler_csv(work / f"cycler-{rows}.csv", rows)
        with LocalSandbox(work / "sandbox", ["bench-key"], workers=1) as sandbox:
            time.sleep(5.0)  # the compute worker imports PyBaMM at start
            pid = str(sandbox.process.pid)
            for rows in args.rows:
                csv, parquet = str(work / f"cycler-{rows}.csv"), str(work / f"cycler-{rows}.parquet")
                bases, ingests = [], []
                for _ in range(REPEATS):  # interleaved, so the machine's load falls on both alike
                    bases.append(_fresh(_baseline, csv, parquet, str(warm_up)))
                    ingests.append(_fresh(_ingest, csv, sandbox.client_env(), str(warm_up), pid))
                report(rows, work, bases, ingests, max(i["server_peak_kib"] for i in ingests))


if __name__ == "__main__":
    main()
