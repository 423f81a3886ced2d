"""Deployable recipes and the demo.

Each module here is a ``prefect.yaml`` entrypoint that imports a reusable flow from
:mod:`ionworks_prefect.flows`; ``flows.demo`` is the end-to-end nightly-refit demo (``ionworks-prefect demo``).

The package imports nothing itself, so ``python -m flows.demo`` can configure Prefect before Prefect loads.
"""
