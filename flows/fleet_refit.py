"""Deployable recipe: refit every cell of a specification, each as its own run.

Entrypoint in ``prefect.yaml``: ``flows/fleet_refit.py:fleet_refit``. The flow lives in
:mod:`ionworks_prefect.flows.fleet_refit`;
site parameters (cells, directories, schedules) are set per deployment in ``prefect.yaml`` or ``deployments/deploy.py``.
"""

from ionworks_prefect.flows.fleet_refit import fleet_refit

__all__ = ["fleet_refit"]
