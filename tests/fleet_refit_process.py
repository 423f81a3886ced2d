"""``python -m tests.fleet_refit_process SPECIFICATION PARAMETERS_JSON``: fleet refit runs in one process, against
the Prefect server in PREFECT_API_URL, one for each line read from stdin until it closes; each returned FleetRefit
is printed as JSON on a line of its own (one process for several nights saves its start-up, ~15 s)."""

import asyncio
import json
import sys

from ionworks_prefect.flows.fleet_refit import fleet_refit


async def main(specification: str, parameters: dict) -> None:
    while sys.stdin.readline():
        print((await fleet_refit(specification, parameters=parameters)).model_dump_json(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
