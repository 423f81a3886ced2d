"""The ``ionworks-prefect`` command.

Example:
    ionworks-prefect sandbox --port 8765 --data-dir .sandbox-data --api-key dev-key
"""

from __future__ import annotations

import argparse
import os
import sys


def _sandbox(argv: list[str]) -> int:
    """Run the local Ionworks sandbox in this process's place (it prints the IONWORKS_* lines a client needs)."""
    os.execv(sys.executable, [sys.executable, "-m", "ionworks_sandbox", *argv])
    return 0  # pragma: no cover - execv does not return


def _demo(argv: list[str]) -> int:
    """Run the nightly-refit demo against a local sandbox."""
    os.execv(sys.executable, [sys.executable, "-m", "flows.demo", *argv])
    return 0  # pragma: no cover - execv does not return


COMMANDS = {"sandbox": _sandbox, "demo": _demo}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="ionworks-prefect", description="Ionworks for Prefect: local sandbox and demo.")
    parser.add_argument("command", choices=sorted(COMMANDS), help="sandbox: run a local Ionworks API; demo: run the nightly-refit demo")
    if not argv or argv[0] in {"-h", "--help"}:
        parser.print_help()
        return 0 if argv else 2
    command = parser.parse_args(argv[:1]).command
    return COMMANDS[command](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
