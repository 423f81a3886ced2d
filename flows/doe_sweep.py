"""Deployable recipe: simulate a protocol over a design grid.

Entrypoint in ``prefect.yaml``: ``flows/doe_sweep.py:doe_sweep``.
The flow lives in :mod:`ionworks_prefect.flows.doe_sweep`;
site parameters (cells, directories, schedules) are set per deployment in ``prefect.yaml`` or ``deployments/deploy.py``.
"""

from ionworks_prefect.flows.doe_sweep import doe_sweep

__all__ = ["doe_sweep"]
