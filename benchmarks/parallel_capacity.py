"""How much of a second core this machine gives right now: the same CPU-bound work in 1 and 2 processes.

The ceiling for any two-worker speed-up measured at the same time (``doe_scaling.py``): on an idle 2-core
machine it is close to 2.0x; other processes running alongside lower it. Run it just before and after a
scaling benchmark to tell a slow sandbox from a busy machine.

Usage:
    python benchmarks/parallel_capacity.py [--units 8]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

UNIT = 10_000_000


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def timed(processes: int, units: int) -> float:
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(spin, [1] * processes)  # processes started before timing
        started = time.perf_counter()
        pool.map(spin, [UNIT] * units, chunksize=1)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=8)
    units = parser.parse_args().units
    one = timed(1, units)
    two = timed(2, units)
    print(f"{units} units of CPU-bound work, 1 process: {one:.2f} s, 2 processes: {two:.2f} s")
    print(f"machine's 2-process speed-up now: {one / two:.2f}x (2.00x on an idle 2-core machine)")


if __name__ == "__main__":
    main()
