"""Deployable recipe: the nightly refit of a cell or a specification.

Entrypoint in ``prefect.yaml``: ``flows/nightly_refit.py:nightly_refit``.
The flow lives in :mod:`ionworks_prefect.flows.nightly_refit`;
site parameters (cells, directories, schedules) are set per deployment in ``prefect.yaml`` or ``deployments/deploy.py``.
"""

from ionworks_prefect.flows.nightly_refit import nightly_refit

__all__ = ["nightly_refit"]
