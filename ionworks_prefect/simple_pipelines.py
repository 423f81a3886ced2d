"""Ionworks simple pipelines (one data fit or validation run as a single job; deprecated upstream).

Submission follows the same idempotency rules as full pipelines (``ionworks_prefect.pipelines``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ionworks import Ionworks
from ionworks.simple_pipeline import SimplePipelineSubmissionResponse

from ._calls import acall, call, run_logger
from .credentials import CredentialsArg, resolve_credentials
from .measurements import CellArg
from .pipeline_config import PipelineConfig, config_dict, prepare_pipeline
from .pipelines import SubmissionCache, log_submission, raise_for_failure, run_from_record, submit_uploaded
from .resource_ids import resource_path
from .results import ElementSummary, PipelineResult, PipelineRun
from .retries import ionworks_task
from .status_poller import StatusPoller
from .status_reads import SIMPLE_PIPELINES
from .waiting import PollSchedule, wait_until_terminal

_RESULT_ELEMENTS = ("data_fit", "array_data_fit", "validation")


def _result_element(config: dict[str, Any] | None) -> str:
    elements = (config or {}).get("elements") or {}
    return next((n for n, e in elements.items() if e.get("element_type") in _RESULT_ELEMENTS), "result")


def _result(client: Ionworks, record: dict[str, Any], config: dict[str, Any] | None = None) -> PipelineResult:
    """The result of a finished simple pipeline record, decoded by the client (``result_object``)."""
    response = SimplePipelineSubmissionResponse(**record, client=client)
    name = _result_element(config)
    summary = ElementSummary.from_result(name, response.result_object)
    return PipelineResult(pipeline_id=response.id, parameter_values=summary.parameter_values,
                          element_results={name: response.result or {}}, elements={name: summary}, config=config,
                          completed_at=response.updated_at)


@ionworks_task(
    name="Submit Ionworks simple pipeline",
    description="Submit a single-fit simple pipeline once per distinct content.",
    cache_policy=SubmissionCache(),
)
def submit_simple_pipeline(
    config: PipelineConfig,
    credentials: CredentialsArg = None,
    *,
    base_dir: str | Path | None = None,
    cell: CellArg | None = None,
    name: str | None = None,
    description: str | None = None,
    options: dict[str, Any] | None = None,
    project_id: str | None = None,
    force: bool = False,
) -> PipelineRun:
    """Submit a simple pipeline idempotently (same rules as :func:`submit_pipeline`).

    Example:
        >>> run = submit_simple_pipeline(config, base_dir="data")
    """
    client = resolve_credentials(credentials).get_client()
    overrides = {"name": name, "description": description, "options": options}
    merged = {**config_dict(config), **{k: v for k, v in overrides.items() if v is not None}}
    uploaded: list[str] = []
    prepared = prepare_pipeline(merged, base_dir, cell, client=client, created=uploaded)
    run = submit_uploaded(client, prepared, uploaded, project_id=project_id, force=force, simple=True)
    run_logger().info("Ionworks simple pipeline %s %s", run.id, "reattached" if run.reattached else "submitted")
    return run


async def _await_simple(client: Ionworks, pipeline_id: str, max_wait_seconds: float, schedule: PollSchedule,
                        project_id: str | None = None) -> dict[str, Any]:
    """Wait on the shared status poller (one list of the project's unfinished simple pipelines per tick)."""
    poller = StatusPoller.for_client(client)
    with poller.watch(SIMPLE_PIPELINES, [pipeline_id], scope=project_id or client.project_id,
                      schedule=schedule) as watch:
        final = await wait_until_terminal(
            f"Ionworks simple pipeline {pipeline_id}", watch,
            cancel=lambda: call("cancel simple pipeline", client.post,
                                resource_path("/simple_pipelines", pipeline_id) + "/cancel", {}),
            max_wait_seconds=max_wait_seconds,
        )
    return final.raw


@ionworks_task(
    name="Wait for Ionworks simple pipeline",
    description="Poll a simple pipeline until it finishes; cancels it if the run is cancelled.",
)
async def wait_for_simple_pipeline(
    pipeline_id: str,
    credentials: CredentialsArg = None,
    *,
    max_wait_seconds: float = 3600.0,
    poll_schedule: PollSchedule = PollSchedule(),
) -> PipelineResult:
    """Wait for a simple pipeline and return its result; raises :class:`PipelineFailed`/:class:`WaitTimedOut`.

    Example:
        >>> result = await wait_for_simple_pipeline(run.id)
    """
    client = resolve_credentials(credentials).get_client()
    record = await _await_simple(client, pipeline_id, max_wait_seconds, poll_schedule)
    raise_for_failure(run_from_record(record), "Simple pipeline")
    return _result(client, record)


@ionworks_task(
    name="Run Ionworks simple pipeline",
    description="Prepare, submit (idempotently) and wait for a simple pipeline.",
)
async def run_simple_pipeline(
    config: PipelineConfig,
    credentials: CredentialsArg = None,
    *,
    base_dir: str | Path | None = None,
    cell: CellArg | None = None,
    project_id: str | None = None,
    force: bool = False,
    max_wait_seconds: float = 3600.0,
    poll_schedule: PollSchedule = PollSchedule(),
) -> PipelineResult:
    """Submit and wait in one task; a retry reattaches to the same simple pipeline.

    Example:
        >>> result = await run_simple_pipeline(config, base_dir="data")
    """
    client = resolve_credentials(credentials).get_client()
    uploaded: list[str] = []
    prepared = await acall("prepare pipeline", prepare_pipeline, config, base_dir, cell, client=client,
                           created=uploaded)
    submitted = await acall("submit simple pipeline", submit_uploaded, client, prepared, uploaded,
                            project_id=project_id, force=force, simple=True)
    log_submission(submitted)
    record = await _await_simple(client, submitted.id, max_wait_seconds, poll_schedule,
                                 project_id or prepared.get("project_id"))
    raise_for_failure(run_from_record(record), "Simple pipeline")
    return _result(client, record, prepared)
