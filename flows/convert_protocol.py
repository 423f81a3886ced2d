"""Deployable recipe: convert a UCP protocol to vendor files.

Entrypoint in ``prefect.yaml``: ``flows/convert_protocol.py:convert_protocol_files``.
The flow lives in :mod:`ionworks_prefect.flows.convert_protocol`;
site parameters (cells, directories, schedules) are set per deployment in ``prefect.yaml`` or ``deployments/deploy.py``.
"""

from ionworks_prefect.flows.convert_protocol import convert_protocol_files

__all__ = ["convert_protocol_files"]
