"""Deployable recipe: ingest new cycler files, optionally refit.

Entrypoint in ``prefect.yaml``: ``flows/ingest_cycler_data.py:ingest_cycler_data``.
The flow lives in :mod:`ionworks_prefect.flows.ingest_cycler_data`;
site parameters (cells, directories, schedules) are set per deployment in ``prefect.yaml`` or ``deployments/deploy.py``.
"""

from ionworks_prefect.flows.ingest_cycler_data import ingest_cycler_data

__all__ = ["ingest_cycler_data"]
