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
from .pipeline_submission import SubmissionCache, log_submission, run_from_record, submit_uploaded
from .pipelines import raise_for_failure
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
    """Submit a simple pipeline once per distinct content (same rules as :func:`submit_pipeline`).

    A simple pipeline runs one data fit or validation as a single job (deprecated upstream in favour of full
    pipelines). An identical earlier submission that has not failed is reattached (``reattached=True``), and the
    task's Prefect cache returns the same :class:`PipelineRun` for identical inputs.

    Args:
        config: The pipeline, as an ``ionworks_schema.Pipeline`` or its config dict.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.
        base_dir: Directory that ``file:``/``folder:`` data references are resolved against; the current
            directory by default.
        cell: A cell instance id or :class:`CellTarget` that data files over 1,000 rows are uploaded to as
            measurements; required when the config references such a file.
        name: Pipeline name, replacing the config's.
        description: Pipeline description, replacing the config's (the submission marker is appended to it).
        options: Pipeline options, replacing the config's.
        project_id: Ionworks project; by default the config's ``project_id``, else the credentials' project.
        force: Submit even when an identical simple pipeline exists, and bypass the cache.

    Returns:
        The submitted or reattached :class:`PipelineRun` (``url`` is None for simple pipelines).

    Raises:
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.
        InvalidPipelineConfig: The config or its data cannot be used, or the client refused it; nothing was
            submitted.
        InvalidMeasurementError: A data file to be uploaded as a measurement failed its checks.
        IonworksRequestError: Ionworks refused a request (4xx) or gave an answer that cannot be used; the
            measurements uploaded for a refused submission are deleted.
        IonworksTransientError: A request still failed after its retries; a rerun reattaches to the simple
            pipeline if it was created.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import submit_simple_pipeline, wait_for_simple_pipeline

        @flow
        async def quick_fit(config: dict, data_dir: str) -> dict:
            run = submit_simple_pipeline(config, base_dir=data_dir, name="cell-7 quick fit")
            result = await wait_for_simple_pipeline(run.id, max_wait_seconds=600)
            return result.parameter_values
        ```
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
    """Wait for a simple pipeline to finish and return its result.

    Waits share the status poller as :func:`wait_for_pipeline` does; transient read errors are logged and the
    wait goes on. If the wait is cancelled, the simple pipeline is cancelled in Ionworks.

    Args:
        pipeline_id: The Ionworks simple pipeline id.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.
        max_wait_seconds: How long to wait before giving up (the simple pipeline keeps running).
        poll_schedule: Delays between status reads.

    Returns:
        The :class:`PipelineResult`: the fitted ``parameter_values`` and the one element's raw and summarised
        result under the name ``result``; ``config`` is None.

    Raises:
        PipelineFailed: The simple pipeline failed (the server's error in the message).
        PipelineCanceled: It was canceled.
        WaitTimedOut: It did not finish within ``max_wait_seconds``; it keeps running in Ionworks.
        InvalidResourceId: ``pipeline_id`` is empty or ``.``/``..``; nothing was sent.
        IonworksNotFound: No simple pipeline has that id.
        IonworksRequestError: Ionworks refused a status read (4xx) or answered with a record that cannot be used.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import wait_for_simple_pipeline

        @flow
        async def collect_quick_fit(pipeline_id: str) -> float | None:
            result = await wait_for_simple_pipeline(pipeline_id, max_wait_seconds=900)
            return result.elements["result"].cost
        ```
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
    """Prepare, submit and wait for a simple pipeline in one task; a retry reattaches to the same one.

    Submission follows :func:`submit_simple_pipeline` (without its cache), the wait
    :func:`wait_for_simple_pipeline`.

    Args:
        config: The pipeline, as an ``ionworks_schema.Pipeline`` or its config dict.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.
        base_dir: Directory that ``file:``/``folder:`` data references are resolved against; the current
            directory by default.
        cell: A cell instance id or :class:`CellTarget` that data files over 1,000 rows are uploaded to as
            measurements; required when the config references such a file.
        project_id: Ionworks project; by default the config's ``project_id``, else the credentials' project.
        force: Submit even when an identical simple pipeline exists.
        max_wait_seconds: How long to wait before giving up (the simple pipeline keeps running).
        poll_schedule: Delays between status reads.

    Returns:
        The :class:`PipelineResult`, its element named after the config's data fit or validation element, with
        the submitted (prepared) config as ``config``.

    Raises:
        InvalidPipelineConfig: The config or its data cannot be used; nothing was submitted.
        InvalidMeasurementError: A data file to be uploaded as a measurement failed its checks.
        PipelineFailed: The simple pipeline failed (the server's error in the message).
        PipelineCanceled: It was canceled.
        WaitTimedOut: It did not finish within ``max_wait_seconds``; it keeps running in Ionworks.
        IonworksRequestError: Ionworks refused a request (4xx) or answered in a way that cannot be used.
        IonworksTransientError: A request still failed after its retries.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        import ionworks_schema as iws
        from prefect import flow
        from ionworks_prefect import run_simple_pipeline

        DN = "Negative particle diffusivity [m2.s-1]"

        @flow
        async def quick_fit(data_dir: str) -> dict:
            pipeline = iws.Pipeline({"fit": iws.DataFit(
                objectives={"1C": iws.objectives.CurrentDriven(data_input="file:rpt/1C.csv",
                                                               options={"model": {"type": "SPM"}})},
                parameters={DN: iws.Parameter(DN, initial_value=2e-14, bounds=(1e-14, 1e-13))},
            )}, name="cell-7 quick fit")
            result = await run_simple_pipeline(pipeline, base_dir=data_dir)
            return result.elements["fit"].parameter_values
        ```
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
