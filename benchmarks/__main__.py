"""``python -m benchmarks``: run every benchmark script in this folder, one subprocess each, and print its ratio lines.

Each ``benchmarks/<name>.py`` runs as ``python benchmarks/<name>.py`` from the repository root with this tree
first on ``PYTHONPATH``; a new script is picked up without registering it. Printed per script: its ratio,
speed-up, goal and target lines, its exit code and wall time (``--verbose`` prints all of its output).

Usage:
    python -m benchmarks                          # all of them (tens of minutes)
    python -m benchmarks concurrent_waits fit_speed
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SUMMARY = re.compile(r"ratio|speed-up|goal|target|\d\.\d+x\b", re.IGNORECASE)


def scripts() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_"))


def main() -> int:
    known = {p.stem: p for p in scripts()}
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="name", help=f"any of: {', '.join(known)} (default: all)")
    parser.add_argument("--verbose", action="store_true", help="print each script's whole output")
    args = parser.parse_args()
    if unknown := [n for n in args.names if n not in known]:
        parser.error(f"no benchmark named {', '.join(unknown)}; there are: {', '.join(known)}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    failed = 0
    for name in args.names or list(known):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, str(known[name])], cwd=ROOT, env=env, capture_output=True, text=True)
        lines = done.stdout.splitlines()
        print(f"== {name}: exit {done.returncode}, {time.perf_counter() - started:.0f} s", flush=True)
        for line in lines if args.verbose else [line for line in lines if SUMMARY.search(line)]:
            print(f"   {line}")
        if done.returncode:
            failed += 1
            print("   " + "\n   ".join(done.stderr.strip().splitlines()[-5:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
