"""Named versions of a cell's fitted parameters: ``latest``, ``best`` and promoted aliases such as ``production``.

``latest`` is the newest fitted test and ``best`` the fit with the lowest worst-objective RMSE; both are worked
out from the history. Any other alias (``production``, ``staging``, ...) is set by
:func:`promote_parameter_set` and stored in Ionworks, as a ``[iwp-alias:<name>]`` tag in the fitted pipeline's
description, so it survives a new Prefect database. :func:`load_parameter_set` returns the set an alias points
at, ready for ``to_bpx()`` in a downstream flow.

Example:
    ```python
    from prefect import flow
    from ionworks_prefect import CellTarget, load_parameter_set, promote_parameter_set

    @flow
    def release(pipeline_id: str):
        cell = CellTarget(specification="NMC811 21700", instance="cell-7")
        promote_parameter_set(cell, pipeline_id, "production")
        bpx = load_parameter_set(cell, "production").to_bpx()
    ```
"""

from __future__ import annotations

import re

from ._calls import call
from .cell_tests import find_cell
from .credentials import CredentialsArg, resolve_credentials
from .exceptions import ParameterSetError
from .history import ALIAS_PREFIX, latest_per_test, list_fit_records, read_fitted_sets
from .measurements import CellArg
from .parameter_sets import FittedParameterSet
from .retries import ionworks_task

COMPUTED_ALIASES = ("latest", "best")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def _check(alias: str) -> None:
    if not _NAME.match(alias):
        raise ParameterSetError(f"Alias {alias!r} must be 1-40 lowercase letters, digits or dashes")


@ionworks_task(name="Promote parameter set", description="Point a named alias (e.g. production) at one fit of a cell.")
def promote_parameter_set(cell: CellArg, pipeline_id: str, alias: str = "production",
                          credentials: CredentialsArg = None) -> str:
    """Point ``alias`` at the cell's fit ``pipeline_id``, moving it from whichever fit held it.

    Args:
        cell: A cell instance id or a ``CellTarget``.
        pipeline_id: One of the cell's successful refit pipelines.
        alias: The alias to set (not ``latest`` or ``best``, which are worked out from the history).
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the environment.

    Returns:
        The pipeline id the alias now points at.

    Raises:
        ParameterSetError: The alias is malformed or computed, the cell does not exist, or the pipeline is not
            one of the cell's successful fits.
        IonworksRequestError: Ionworks refused the description update.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import CellTarget, parameter_history, promote_parameter_set

        @flow
        def promote_best_of_last_month():
            cell = CellTarget(specification="NMC811 21700", instance="cell-7")
            history = parameter_history(cell)
            promote_parameter_set(cell, history.sort("rmse_mv")["pipeline_id"][0], "production")
        ```
    """
    _check(alias)
    if alias in COMPUTED_ALIASES:
        raise ParameterSetError(f"{alias!r} is worked out from the history and cannot be promoted")
    client = resolve_credentials(credentials).get_client()
    identity = find_cell(client, cell)
    records = list_fit_records(client, identity.instance_id) if identity else []
    target = next((r for r in records if r.pipeline_id == pipeline_id and r.succeeded), None)
    if target is None:
        raise ParameterSetError(f"Pipeline {pipeline_id!r} is not a successful refit of cell {cell!r}")
    tag = f"[{ALIAS_PREFIX}{alias}]"
    for record in records:
        if alias in record.aliases and record.pipeline_id != pipeline_id:
            call("update pipeline", client.pipeline.update, record.pipeline_id,
                 description=" ".join(record.description.replace(tag, "").split()))
    if alias not in target.aliases:
        call("update pipeline", client.pipeline.update, pipeline_id, description=f"{target.description} {tag}")
    return pipeline_id


@ionworks_task(name="Load parameter set", description="The fitted parameter set an alias of a cell points at.")
def load_parameter_set(cell: CellArg, alias: str = "production",
                       credentials: CredentialsArg = None) -> FittedParameterSet:
    """The cell's fitted set that ``alias`` names: ``latest``, ``best`` or a promoted alias.

    Args:
        cell: A cell instance id or a ``CellTarget``.
        alias: ``latest`` (newest test), ``best`` (lowest worst-objective RMSE) or a promoted alias.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the environment.

    Returns:
        The :class:`FittedParameterSet` (``.to_bpx()`` gives its BPX document).

    Raises:
        ParameterSetError: The cell has no fit, or no fit carries the alias.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import CellTarget, load_parameter_set

        @flow
        def simulate_with_production_parameters():
            fitted = load_parameter_set(CellTarget(specification="NMC811 21700", instance="cell-7"))
            print(fitted.values, fitted.to_bpx()["Header"])
        ```
    """
    _check(alias)
    client = resolve_credentials(credentials).get_client()
    identity = find_cell(client, cell)
    records = list_fit_records(client, identity.instance_id) if identity else []
    label = identity.label if identity else str(cell)
    if alias in COMPUTED_ALIASES:
        sets = read_fitted_sets(client, latest_per_test(records), label)
        if not sets:
            raise ParameterSetError(f"Cell {label!r} has no fitted parameter set")
        if alias == "latest":
            return sets[-1]
        scored = [s for s in sets if s.rmse_mv]
        return min(scored, key=lambda s: max(s.rmse_mv.values())) if scored else sets[-1]
    holder = next((r for r in records if alias in r.aliases and r.succeeded), None)
    if holder is None:
        raise ParameterSetError(f"No fit of cell {label!r} is promoted as {alias!r}")
    return read_fitted_sets(client, [holder], label)[0]
