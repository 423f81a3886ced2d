"""Deployable recipe: announce new files in a drop directory as events.

Entrypoint in ``prefect.yaml``: ``flows/cycler_watcher.py:cycler_watcher``.
The flow lives in :mod:`ionworks_prefect.flows.cycler_watcher`;
site parameters (cells, directories, schedules) are set per deployment in ``prefect.yaml`` or ``deployments/deploy.py``.
"""

from ionworks_prefect.flows.cycler_watcher import cycler_watcher

__all__ = ["cycler_watcher"]
