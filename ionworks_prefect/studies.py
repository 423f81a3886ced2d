"""Grouping measurements and simulations into Ionworks studies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ionworks import Ionworks

from ._calls import call
from .credentials import CredentialsArg, resolve_credentials
from .resource_ids import check_resource_id, path_segment
from .results import StudyAssignment
from .retries import ionworks_task


def find_or_create_study(client: Ionworks, name: str, project_id: str | None = None,
                         description: str | None = None) -> str:
    """The id of the project's study named ``name``, created if there is none.

    A create retried after its answer was lost can leave a second study of that name: the earliest is kept and
    the later ones are deleted.

    Example:
        >>> find_or_create_study(client, "RPT ageing 2026")
        '9a1b...'
    """
    def named() -> list[Any]:
        found = call("list studies", client.study.list, project_id=project_id, name_exact=name)
        return sorted((s for s in found if s.name == name), key=lambda s: str(getattr(s, "created_at", "") or ""))

    if match := named():
        return match[0].id
    body: dict[str, Any] = {"name": name, **({"description": description} if description else {})}
    created = call("create study", client.study.create, body, project_id=project_id)
    kept, *extra = named() or [created]
    for duplicate in extra:
        call("delete study", client.study.delete, path_segment(duplicate.id))
    return kept.id


@ionworks_task(
    name="Assign to Ionworks study",
    description="Add measurements and simulations to a study (created by name if needed); re-assigning is a no-op.",
)
def assign_to_study(
    study: str,
    measurement_ids: Sequence[str] = (),
    simulation_ids: Sequence[str] = (),
    credentials: CredentialsArg = None,
    *,
    by_name: bool = False,
    project_id: str | None = None,
) -> StudyAssignment:
    """Assign measurements and simulations to ``study`` (an id, or a name with ``by_name=True``).

    With ``by_name=True`` the project's study of that name is used, and created if there is none (a create
    retried after a lost answer keeps the earliest study of that name and deletes the others). Assigning what a
    study already holds changes nothing.

    Args:
        study: The study id, or its name when ``by_name`` is True.
        measurement_ids: Ids of the measurements to assign.
        simulation_ids: Ids of the simulations to assign.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.
        by_name: Treat ``study`` as a study name, creating the study if needed.
        project_id: Ionworks project of the study; the credentials' project by default.

    Returns:
        The :class:`StudyAssignment`: ``study_id`` and the ids assigned.

    Raises:
        InvalidResourceId: The study id or one of the measurement or simulation ids is empty or ``.``/``..``;
            nothing was sent.
        IonworksNotFound: The study, a measurement or a simulation does not exist.
        IonworksRequestError: Ionworks refused a request (4xx) or answered in a way that cannot be used.
        IonworksTransientError: A request still failed after its retries.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import CellTarget, assign_to_study, upload_measurement

        @flow
        def file_rpt_into_study(csv_path: str) -> str:
            rpt = upload_measurement(csv_path, CellTarget(specification="NMC811 21700", instance="cell-7"))
            return assign_to_study("RPT ageing 2026", [rpt.id], by_name=True).study_id
        ```
    """
    client = resolve_credentials(credentials).get_client()
    measurements = [path_segment(m, "Ionworks measurement id") for m in measurement_ids]
    simulations = [path_segment(s, "Ionworks simulation id") for s in simulation_ids]
    study_id = find_or_create_study(client, study, project_id) if by_name else check_resource_id(study)
    for measurement_id in measurements:
        call("assign measurement to study", client.study.assign_measurement, path_segment(study_id), measurement_id,
             project_id=project_id)
    for simulation_id in simulations:
        call("assign simulation to study", client.study.assign_simulation, path_segment(study_id), simulation_id,
             project_id=project_id)
    return StudyAssignment(study_id=study_id, measurement_ids=list(measurement_ids),
                           simulation_ids=list(simulation_ids))
