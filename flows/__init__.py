"""Ready-made Prefect flows for battery teams, built on the ionworks_prefect tasks.

- ``flows.nightly_refit.nightly_refit``: refit a cell's parameters to its measurements and publish them (nightly).
- ``flows.ingest_cycler_data.ingest_cycler_data``: upload new cycler files, report broken ones, optionally refit.
- ``flows.cycler_watcher.cycler_watcher``: announce new files in a drop directory as events.
- ``flows.convert_protocol.convert_protocol_files``: one UCP protocol to native files for several cyclers.
- ``flows.doe_sweep.doe_sweep``: simulate a protocol over a design grid; table and plot of the runs.
- ``flows.demo``: the end-to-end nightly-refit demo (``ionworks-prefect demo``).

The package imports nothing itself, so ``python -m flows.demo`` can configure Prefect before Prefect loads.

Example:
    >>> from flows.nightly_refit import nightly_refit
"""
