"""Ingest cycler files: read, check and upload each as a measurement of one cell; optionally refit.

Files come by name (``files``; the ``ionworks.cycler.file_arrived`` trigger passes the event's path) or
from a directory (``directory`` + ``pattern``). Formats are detected per file, or chosen with ``reader``
(one name, or glob pattern -> name); see :mod:`ionworks_prefect.cycler_files`. Uploads run in parallel; a
file that cannot be read or fails a check is reported with its reason in the ``ingest-<cell>`` table
artifact and does not stop the others.

Final state: ``Completed`` when every file was ingested; ``Completed`` named ``Partially ingested``, with a
message counting the failed files, when some were; ``Failed`` (:class:`IngestFailed`) when none was. A partial
ingest is not a failure because the measurements it stored are usable (and a refit may follow), but its
name shows in the flow-run list and its message says how many files need attention.

Example:
    >>> asyncio.run(ingest_cycler_data(directory="/lab/drop/cell-7", cell="1c4f...", refit=True))
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Optional, Union

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import acreate_table_artifact
from prefect.deployments import run_deployment
from prefect.states import Completed, State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from ionworks_prefect import CellTarget, IonworksPrefectError, UploadedMeasurement, upload_measurement
from ionworks_prefect.credentials import resolve_credentials
from ionworks_prefect.measurements import resolve_cell_instance
from ionworks_prefect.retries import ionworks_task

from ._mapping import results_or_reasons

ARTIFACT_PREFIX = "ingest-"
PARTIAL_STATE_NAME = "Partially ingested"


class IngestFailed(IonworksPrefectError):
    """None of the given cycler files could be ingested."""


class FileOutcome(BaseModel):
    """What happened to one cycler file."""

    file: str
    status: Literal["uploaded", "unchanged", "failed"]
    measurement_id: Optional[str] = None
    rows: Optional[int] = None
    reason: Optional[str] = None


class IngestReport(BaseModel):
    """Outcome per file, and the refit run started afterwards (if any)."""

    files: list[FileOutcome]
    refit_flow_run_id: Optional[str] = None

    @property
    def uploaded(self) -> list[FileOutcome]:
        """Files stored as new measurements."""
        return [f for f in self.files if f.status == "uploaded"]

    @property
    def failed(self) -> list[FileOutcome]:
        """Files that could not be ingested, with reasons."""
        return [f for f in self.files if f.status == "failed"]


def artifact_key(cell: Union[str, CellTarget, Mapping[str, Any]]) -> str:
    """The report artifact's key for a cell: ``ingest-<specification>-<instance>`` or ``ingest-<instance id>``.

    Example:
        >>> artifact_key(CellTarget(specification="NMC811 21700", instance="cell-7"))
        'ingest-nmc811-21700-cell-7'
    """
    if isinstance(cell, Mapping):
        cell = CellTarget(**cell)
    if isinstance(cell, CellTarget):
        spec = cell.specification if isinstance(cell.specification, str) else cell.specification.get("name", "")
        label = f"{spec}-{cell.instance}"
    else:
        label = cell
    return ARTIFACT_PREFIX + (re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "cell")


def collect_files(files: Union[str, list[str], None], directory: Optional[str], pattern: str) -> list[Path]:
    """The files to ingest: those named, plus the non-hidden files in ``directory`` matching ``pattern``.

    Example:
        >>> collect_files(None, "drop/", "*.mpt")
        [PosixPath('drop/rpt-0.mpt')]
    """
    named = [files] if isinstance(files, str) else list(files or [])
    paths = [Path(f).expanduser() for f in named]
    if directory is not None:
        paths += sorted(p for p in Path(directory).expanduser().glob(pattern)
                        if p.is_file() and not p.name.startswith("."))
    return list(dict.fromkeys(paths))


@ionworks_task(name="Resolve cell instance", description="The cell instance id, created on first use.")
def resolve_cell(cell: Union[str, CellTarget], credentials: Optional[str] = None) -> str:
    """The cell instance id; a ``CellTarget`` is created on first use. Done once, before parallel uploads.

    Args:
        cell: A cell instance id, or a :class:`CellTarget` naming specification and instance.
        credentials: A saved ``IonworksCredentials`` block's name; the ``IONWORKS_*`` environment without one.

    Returns:
        The cell instance id.

    Raises:
        InvalidResourceId: ``cell`` is an empty id.
        IonworksRequestError: Ionworks refused the lookup or the creation.

    Examples:
        >>> instance_id = resolve_cell(CellTarget(specification="NMC811 21700", instance="cell-7"))
    """
    return resolve_cell_instance(resolve_credentials(credentials).get_client(), cell)


def _outcome(path: Path, uploaded: Optional[UploadedMeasurement], reason: Optional[str]) -> FileOutcome:
    if uploaded is None:
        return FileOutcome(file=str(path), status="failed", reason=reason)
    return FileOutcome(file=str(path), status="uploaded" if uploaded.created else "unchanged",
                       measurement_id=uploaded.id, rows=uploaded.row_count)


async def _start_refit(cell: Union[str, CellTarget], deployment: Optional[str], credentials: Optional[str]) -> str:
    parameters: dict[str, Any] = {"cell": cell.model_dump() if isinstance(cell, CellTarget) else cell}
    if deployment:
        run = await run_deployment(deployment, parameters=parameters, timeout=0)
        return str(run.id)
    from .nightly_refit import nightly_refit

    state = await nightly_refit(**parameters, credentials=credentials, return_state=True)
    return str(state.state_details.flow_run_id)


@flow(name="ingest-cycler-data", description="Upload new cycler files as measurements; report broken files.",
      task_runner=ThreadPoolTaskRunner(max_workers=4))
async def ingest_cycler_data(
    cell: Union[str, CellTarget],
    files: Union[str, list[str], None] = None,
    directory: Optional[str] = None,
    pattern: str = "*",
    reader: Union[str, dict[str, str], None] = None,
    rated_capacity: Optional[float] = None,
    voltage_window: Optional[tuple[float, float]] = None,
    refit: bool = False,
    refit_deployment: Optional[str] = None,
    credentials: Optional[str] = None,
    tags: Optional[list[str]] = None,
    start_time: Optional[datetime] = None,
) -> Union[IngestReport, State]:
    """Upload cycler files for ``cell`` (instance id or ``{"specification", "instance"}``).

    With ``refit``, a refit follows when at least one new measurement was stored: the deployment
    ``refit_deployment`` (e.g. ``"nightly-refit/refit-cell"``) is started without waiting, or, without
    one, the ``nightly_refit`` flow runs here as a subflow. ``tags`` (e.g. ``["rpt:RPT 3", "efc:300"]``) and
    ``start_time`` are given to every uploaded measurement, so the files of one check-up form one test.

    Args:
        cell: the cell instance id, or its specification and instance names (created on first use).
        files: file paths to ingest (one path or a list).
        directory: a directory whose non-hidden files matching ``pattern`` are ingested too.
        pattern: glob pattern within ``directory``.
        reader: a reader name for every file, or glob pattern -> reader name (``{"*.csv": "arbin"}``);
            files no pattern matches are detected.
        rated_capacity: the cell's capacity in A.h, bounding the plausible current.
        voltage_window: the cell's ``(V_min, V_max)``, bounding the plausible voltage (else 0-6 V).
        refit: start a refit when new measurements were stored.
        refit_deployment: the refit deployment to start instead of running the refit here.
        credentials: the name of an ``IonworksCredentials`` block; None reads the ``IONWORKS_*`` variables.
        tags: tags for every uploaded measurement, e.g. ``["rpt:RPT 3", "efc:300"]`` (one test of the cell).
        start_time: when the test ran, for every uploaded measurement.

    Returns:
        The :class:`IngestReport` (also the run's result when some files failed, under the ``Partially
        ingested`` state).

    Raises:
        IngestFailed: no file could be ingested; the message names every file and its reason.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import CellTarget
        from ionworks_prefect.flows import ingest_cycler_data

        @flow
        async def ingest_rpt_3():
            cell = CellTarget(specification="NMC811 21700", instance="cell-7")
            report = await ingest_cycler_data(cell=cell, files=["rpt-3/0p1C.mpt", "rpt-3/1C.mpt"],
                                              tags=["rpt:RPT 3", "efc:300"], refit=True)
            return [f.reason for f in report.failed]

        @flow
        async def ingest_arbin_drop():
            await ingest_cycler_data(cell="1c4f...", directory="/lab/drop", reader={"*_CH*.csv": "arbin"})
        ```
    """
    logger = get_run_logger()
    paths = collect_files(files, directory, pattern)
    if not paths:
        logger.info("No cycler files to ingest")
        return IngestReport(files=[])
    instance_id = resolve_cell(cell, credentials)
    futures = upload_measurement.map(
        paths, unmapped(instance_id), credentials=unmapped(credentials), reader=unmapped(reader),
        rated_capacity=unmapped(rated_capacity), voltage_window=unmapped(voltage_window), tags=unmapped(tags),
        start_time=unmapped(start_time))
    settled = await asyncio.to_thread(results_or_reasons, futures)
    outcomes = [_outcome(path, *result) for path, result in zip(paths, settled, strict=False)]
    for outcome in outcomes:
        if outcome.status == "failed":
            logger.warning("Could not ingest %s: %s", outcome.file, outcome.reason)
    report = IngestReport(files=outcomes)
    failed = len(report.failed)
    await acreate_table_artifact(
        [o.model_dump() for o in outcomes], key=artifact_key(cell),
        description=f"Cycler files for cell {instance_id}: {len(outcomes) - failed} ingested, {failed} failed")
    if failed == len(outcomes):
        raise IngestFailed(f"None of {len(outcomes)} cycler file(s) could be ingested: "
                           + "; ".join(f"{Path(o.file).name}: {o.reason}" for o in outcomes))
    if refit and report.uploaded:
        report.refit_flow_run_id = await _start_refit(cell, refit_deployment, credentials)
    if failed:
        return Completed(data=report, name=PARTIAL_STATE_NAME,
                         message=f"{failed} of {len(outcomes)} cycler file(s) could not be ingested: "
                                 + ", ".join(Path(o.file).name for o in report.failed))
    return report
