"""Ingest cycler files: read, validate and upload each as a measurement of one cell; optionally refit.

Files come by name (``files``; the ``ionworks.cycler.file_arrived`` trigger passes the event's path) or
from a directory (``directory`` + ``pattern``). Cycler exports are read by ionworksdata (Maccor, Neware,
Arbin, BioLogic, Novonix, BaSyTec, ...), Ionworks-style CSV and parquet by polars. Uploads run in
parallel; a file that cannot be read or fails validation is reported with its reason in the
``ingest-cycler-data`` table artifact and does not stop the others. The run fails only when no file
was ingested at all.

Example:
    >>> asyncio.run(ingest_cycler_data(directory="/lab/drop/cell-7", cell="1c4f...", refit=True))
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Optional, Union

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from ._mapping import results_or_reasons
from ionworks_prefect import CellTarget, IonworksPrefectError, UploadedMeasurement, upload_measurement
from ionworks_prefect.credentials import resolve_credentials
from ionworks_prefect.measurements import resolve_cell_instance

ARTIFACT_KEY = "ingest-cycler-data"


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


@task(name="Resolve cell instance", cache_policy=NO_CACHE)
def resolve_cell(cell: Union[str, CellTarget], credentials: Optional[str] = None) -> str:
    """The cell instance id; a ``CellTarget`` is created on first use. Done once, before parallel uploads."""
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
    refit: bool = False,
    refit_deployment: Optional[str] = None,
    credentials: Optional[str] = None,
    tags: Optional[list[str]] = None,
    start_time: Optional[datetime] = None,
) -> IngestReport:
    """Upload cycler files for ``cell`` (instance id or ``{"specification", "instance"}``).

    With ``refit``, a refit follows when at least one new measurement was stored: the deployment
    ``refit_deployment`` (e.g. ``"nightly-refit/refit-cell"``) is started without waiting, or, without
    one, the ``nightly_refit`` flow runs here as a subflow. ``tags`` (e.g. ``["rpt:RPT 3", "efc:300"]``) and
    ``start_time`` are given to every uploaded measurement, so the files of one check-up form one test.

    Example:
        >>> report = await ingest_cycler_data(cell="1c4f...", files=["rpt-0.mpt", "rpt-1.mpt"])
        >>> [f.reason for f in report.failed]
    """
    logger = get_run_logger()
    paths = collect_files(files, directory, pattern)
    if not paths:
        logger.info("No cycler files to ingest")
        return IngestReport(files=[])
    instance_id = resolve_cell(cell, credentials)
    futures = upload_measurement.map(paths, unmapped(instance_id), credentials=unmapped(credentials),
                                     tags=unmapped(tags), start_time=unmapped(start_time))
    settled = await asyncio.to_thread(results_or_reasons, futures)
    outcomes = [_outcome(path, *result) for path, result in zip(paths, settled, strict=False)]
    for outcome in outcomes:
        if outcome.status == "failed":
            logger.warning("Could not ingest %s: %s", outcome.file, outcome.reason)
    await acreate_table_artifact([o.model_dump() for o in outcomes], key=ARTIFACT_KEY,
                                 description=f"Cycler files for cell {instance_id}: uploaded, unchanged or failed")
    report = IngestReport(files=outcomes)
    if not any(o.status != "failed" for o in outcomes):
        raise IngestFailed(f"None of {len(outcomes)} cycler file(s) could be ingested: "
                           + "; ".join(f"{Path(o.file).name}: {o.reason}" for o in outcomes))
    if refit and report.uploaded:
        report.refit_flow_run_id = await _start_refit(cell, refit_deployment, credentials)
    return report
