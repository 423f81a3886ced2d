"""Reusable Prefect flows for battery teams, built on the ionworks_prefect tasks.

- :func:`nightly_refit`: fit each new test of a cell, judge it, publish the cell's trajectory (nightly).
- :func:`fleet_refit`: every cell of a specification refitted as its own run, bounded; one fleet view.
- :func:`ingest_cycler_data`: upload new cycler files, report broken ones, optionally refit.
- :func:`cycler_watcher`: announce new files in a drop directory as events.
- :func:`convert_protocol_files`: one UCP protocol to native files for several cyclers.
- :func:`doe_sweep`: simulate a protocol over a design grid; table and plot of the runs.

The repository's ``flows/`` folder holds the deployable recipes (``prefect.yaml`` entrypoints) that import
these flows, and the end-to-end demo.

Example:
    ```python
    import asyncio
    from ionworks_prefect.flows import nightly_refit

    asyncio.run(nightly_refit(cell={"specification": "NMC811 21700", "instance": "cell-7"}))
    ```
"""

from .convert_protocol import convert_protocol_files
from .cycler_watcher import cycler_watcher
from .doe_sweep import doe_sweep
from .fleet_refit import fleet_refit
from .ingest_cycler_data import ingest_cycler_data
from .nightly_refit import nightly_refit

__all__ = ["convert_protocol_files", "cycler_watcher", "doe_sweep", "fleet_refit", "ingest_cycler_data", "nightly_refit"]
