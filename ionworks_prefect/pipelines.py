"""Ionworks pipelines as tasks: submit once (see :mod:`~ionworks_prefect.pipeline_submission`), wait without
holding a thread, read typed results.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from ionworks import Ionworks
from prefect.cache_policies import INPUTS

from ._calls import acall, call
from .credentials import CredentialsArg, resolve_credentials
from .events import emit_pipeline_finished
from .exceptions import PipelineCanceled, PipelineFailed, ResultNotReady
from .measurements import CellArg
from .pipeline_config import PipelineConfig, config_dict, prepare_pipeline, referenced_measurements
from .pipeline_submission import SubmissionCache, log_submission, pipeline_url, run_from_record, submit_uploaded
from .resource_ids import path_segment, resource_path
from .results import ElementSummary, PipelineResult, PipelineRun
from .retries import ionworks_task
from .status_poller import StatusPoller
from .status_reads import PIPELINES
from .waiting import PollSchedule, wait_until_terminal


@ionworks_task(
    name="Submit Ionworks pipeline",
    description="Submit a pipeline once per distinct content; reattaches to an identical earlier submission.",
    cache_policy=SubmissionCache(),
    cache_expiration=timedelta(days=1),
)
def submit_pipeline(
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
    """Submit a pipeline (``ionworks_schema.Pipeline`` or dict) once per distinct content.

    Local data is resolved first (see :func:`prepare_pipeline`). A pending, running or completed pipeline
    submitted earlier with the same content is reattached instead of submitted again (``reattached=True``); a
    failed or canceled one is not. The task's Prefect cache returns the same :class:`PipelineRun` for a day, with
    the status it had at submission: wait on it for the current one.

    Args:
        config: The pipeline, as an ``ionworks_schema.Pipeline`` or its config dict.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.
        base_dir: Directory that ``file:``/``folder:`` data references are resolved against; the current
            directory by default.
        cell: A cell instance id or :class:`CellTarget` that data files over 1,000 rows are uploaded to as
            measurements (referenced as ``db:<id>``); required when the config references such a file.
        name: Pipeline name, replacing the config's.
        description: Pipeline description, replacing the config's (the submission marker is appended to it).
        options: Pipeline options, replacing the config's.
        project_id: Ionworks project; by default the config's ``project_id``, else the credentials' project.
        force: Submit even when an identical pipeline exists, and bypass the cache.

    Returns:
        The submitted or reattached :class:`PipelineRun` (``id``, ``status``, ``url``, ``config_hash``,
        ``reattached``).

    Raises:
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.
        InvalidPipelineConfig: The config is malformed (found before any upload), a data reference is missing or
            unreadable, a file over 1,000 rows was given without ``cell``, or the client refused the config;
            nothing was submitted.
        InvalidMeasurementError: A data file to be uploaded as a measurement failed its checks.
        IonworksRequestError: Ionworks refused a request (4xx) or gave an answer that cannot be used; the
            measurements uploaded for a refused submission are deleted.
        IonworksTransientError: A request still failed after its retries (connection error, timeout, 429, 5xx);
            a rerun reattaches to the pipeline if it was created.

    Examples:
        ```python
        import ionworks_schema as iws
        from prefect import flow
        from ionworks_prefect import CellTarget, submit_pipeline, wait_for_pipeline

        DN = "Negative particle diffusivity [m2.s-1]"

        @flow
        async def refit_cell_7(data_dir: str) -> str:
            pipeline = iws.Pipeline({"fit": iws.DataFit(
                objectives={"1C": iws.objectives.CurrentDriven(data_input="file:rpt/1C.csv",
                                                               options={"model": {"type": "SPMe"}})},
                parameters={DN: iws.Parameter(DN, initial_value=2e-14, bounds=(1e-14, 1e-13))},
            )}, name="cell-7 refit")
            run = submit_pipeline(pipeline, base_dir=data_dir,
                                  cell=CellTarget(specification="NMC811 21700", instance="cell-7"))
            final = await wait_for_pipeline(run.id, max_wait_seconds=900)
            return final.status
        ```
    """
    client = resolve_credentials(credentials).get_client()
    overrides = {"name": name, "description": description, "options": options}
    merged = {**config_dict(config), **{k: v for k, v in overrides.items() if v is not None}}
    uploaded: list[str] = []
    prepared = prepare_pipeline(merged, base_dir, cell, client=client, created=uploaded)
    run = submit_uploaded(client, prepared, uploaded, project_id=project_id, force=force)
    log_submission(run)
    return run


def raise_for_failure(run: PipelineRun, label: str = "Pipeline") -> None:
    """Raise :class:`PipelineCanceled` or :class:`PipelineFailed` for a failed terminal run."""
    if run.is_failed:
        kind = PipelineCanceled if run.status == "canceled" else PipelineFailed
        detail = f": {run.error}" if run.error else ""
        raise kind(f"{label} {run.id} {run.status}{detail}", resource_id=run.id, status=run.status, error=run.error)


async def await_pipeline(
    client: Ionworks,
    pipeline_id: str,
    *,
    max_wait_seconds: float,
    schedule: PollSchedule,
    measurement_ids: list[str] | None = None,
    config_hash: str | None = None,
    project_id: str | None = None,
) -> PipelineRun:
    """Wait for a pipeline without raising on failure; emits the completion event.

    The wait shares its event loop's status poller: ``project_id`` (default: the client's) is the project whose
    unfinished pipelines it lists each tick; a pipeline of another project is still seen, read on its own.
    """
    poller = StatusPoller.for_client(client)
    with poller.watch(PIPELINES, [pipeline_id], scope=project_id or client.project_id, schedule=schedule) as watch:
        final = await wait_until_terminal(
            f"Ionworks pipeline {pipeline_id}", watch,
            cancel=lambda: call("cancel pipeline", client.post, resource_path("/pipelines", pipeline_id) + "/cancel", {}),
            max_wait_seconds=max_wait_seconds,
        )
    run = run_from_record(final.raw, url=pipeline_url(client, pipeline_id), config_hash=config_hash)
    emit_pipeline_finished(client, run, measurement_ids or [])
    return run


@ionworks_task(
    name="Wait for Ionworks pipeline",
    description="Poll a pipeline until it finishes, with a progress artifact; cancels it if the run is cancelled.",
)
async def wait_for_pipeline(
    pipeline_id: str,
    credentials: CredentialsArg = None,
    *,
    max_wait_seconds: float = 3600.0,
    poll_schedule: PollSchedule = PollSchedule(),
    raise_on_failure: bool = True,
) -> PipelineRun:
    """Wait until the pipeline is terminal, reporting progress in a Prefect progress artifact.

    Waits gathered in one flow share one status poller: each tick lists the project's unfinished pipelines in
    one request, and the waited ones that left that list by id in one more. Transient read errors are logged and
    the wait goes on. If the wait is cancelled (flow run cancelled, task timeout), the pipeline is cancelled in
    Ionworks. A pipeline seen finished emits ``ionworks.pipeline.completed`` or ``ionworks.pipeline.failed``.

    Args:
        pipeline_id: The Ionworks pipeline id.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.
        max_wait_seconds: How long to wait before giving up (the pipeline keeps running).
        poll_schedule: Delays between status reads.
        raise_on_failure: Raise for a failed or canceled pipeline; with False, return its run instead.

    Returns:
        The final :class:`PipelineRun` (``status``, ``error``, ``succeeded``).

    Raises:
        PipelineFailed: The pipeline failed (the server's error in the message) and ``raise_on_failure`` is True.
        PipelineCanceled: The pipeline was canceled and ``raise_on_failure`` is True.
        WaitTimedOut: It did not finish within ``max_wait_seconds``; it keeps running in Ionworks.
        InvalidResourceId: ``pipeline_id`` is empty or ``.``/``..``; nothing was sent.
        IonworksNotFound: No pipeline has that id.
        IonworksRequestError: Ionworks refused a status read (4xx) or answered with a record that cannot be used.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        import asyncio
        from prefect import flow
        from ionworks_prefect import wait_for_pipeline

        @flow
        async def wait_for_refits(pipeline_ids: list[str]) -> list[str]:
            finals = await asyncio.gather(*(wait_for_pipeline(pid, max_wait_seconds=1800, raise_on_failure=False)
                                            for pid in pipeline_ids))
            return [f"{final.id}: {final.status}" for final in finals]
        ```
    """
    client = resolve_credentials(credentials).get_client()
    run = await await_pipeline(client, pipeline_id, max_wait_seconds=max_wait_seconds, schedule=poll_schedule)
    if raise_on_failure:
        raise_for_failure(run)
    return run


def _finished_at(client: Ionworks, segment: str) -> str | None:
    """When the pipeline's last element that ran a job last changed, or None when no element names a job.

    A pipeline record has no time (``PipelineSubmissionResponse``). Its elements listing documents each element's
    ``updated_at`` beside the ``job_id`` that the client's own ``PipelineResponse.element`` reads. The element's
    job (``JobResponse``) has the same time, for one more request whose answer carries the job's result.
    """
    elements = call("list pipeline elements", client.get, f"/pipelines/{segment}/elements")
    ran = [e for e in elements if isinstance(e, dict) and isinstance(e.get("job_id"), str)]
    updated = ran[-1].get("updated_at") if ran else None
    return updated if isinstance(updated, str) else None


def read_result(client: Ionworks, pipeline_id: str) -> PipelineResult:
    """Read a finished pipeline's results with the client's typed accessors (raises :class:`ResultNotReady` before).

    Each element is summarised from what ``PipelineResponse.element(name)`` decodes its result into (an
    ``ionworks_schema`` result); ``element_results`` keeps the raw dicts. The pipeline's parameter values are its
    ``result``, which the client documents as the final parameter values, read as the client reads every result
    payload (an element's, a simple pipeline's): under ``parameter_values``. Element results hold no order, so
    they cannot stand in for it; a fitted value is still found on its element (``FittedParameterSet``).
    """
    segment = path_segment(pipeline_id)
    run = run_from_record(call("get pipeline", client.pipeline.get, segment).model_dump())
    raise_for_failure(run)
    if not run.is_terminal:
        raise ResultNotReady(f"Pipeline {pipeline_id} is {run.status}; its result is not available yet")
    response = call("get pipeline result", client.pipeline.result, segment)
    typed = call("read pipeline element results", lambda: response.results)
    values = response.result.get("parameter_values")
    return PipelineResult(pipeline_id=pipeline_id, parameter_values=values if isinstance(values, dict) else {},
                          element_results=response.element_results,
                          elements={name: ElementSummary.from_result(name, result) for name, result in typed.items()},
                          completed_at=_finished_at(client, segment))


@ionworks_task(
    name="Fetch Ionworks pipeline result",
    description="Read the parameter values and element results of a completed pipeline.",
    cache_policy=INPUTS - "credentials",
)
def fetch_pipeline_result(pipeline_id: str, credentials: CredentialsArg = None) -> PipelineResult:
    """Fetch a completed pipeline's result (cached by ``pipeline_id``: a finished result never changes).

    Args:
        pipeline_id: The Ionworks pipeline id.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.

    Returns:
        The :class:`PipelineResult`: final ``parameter_values``, raw ``element_results``, a summary per element
        (``elements``) and ``completed_at``; ``config`` is None.

    Raises:
        PipelineFailed: The pipeline failed.
        PipelineCanceled: The pipeline was canceled.
        ResultNotReady: The pipeline is still pending or running.
        InvalidResourceId: ``pipeline_id`` is empty or ``.``/``..``; nothing was sent.
        IonworksNotFound: No pipeline has that id.
        IonworksRequestError: Ionworks refused a request (4xx) or answered in a way that cannot be used.
        IonworksTransientError: A request still failed after its retries.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import fetch_pipeline_result

        @flow
        def fitted_values(pipeline_id: str) -> dict:
            result = fetch_pipeline_result(pipeline_id)
            return {name: element.parameter_values for name, element in result.fit_elements().items()}
        ```
    """
    return read_result(resolve_credentials(credentials).get_client(), pipeline_id)


@ionworks_task(
    name="Run Ionworks pipeline",
    description="Prepare, submit (idempotently), wait for and fetch a pipeline.",
)
async def run_pipeline(
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
    """Prepare, submit, wait for and fetch a pipeline in one task; a retry reattaches to the same pipeline.

    Submission follows :func:`submit_pipeline` (without its cache), the wait :func:`wait_for_pipeline`.

    Args:
        config: The pipeline, as an ``ionworks_schema.Pipeline`` or its config dict.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.
        base_dir: Directory that ``file:``/``folder:`` data references are resolved against; the current
            directory by default.
        cell: A cell instance id or :class:`CellTarget` that data files over 1,000 rows are uploaded to as
            measurements; required when the config references such a file.
        project_id: Ionworks project; by default the config's ``project_id``, else the credentials' project.
        force: Submit even when an identical pipeline exists.
        max_wait_seconds: How long to wait for the pipeline before giving up (it keeps running).
        poll_schedule: Delays between status reads.

    Returns:
        The :class:`PipelineResult`, with the submitted (prepared) config as ``config``.

    Raises:
        InvalidPipelineConfig: The config or its data cannot be used; nothing was submitted.
        InvalidMeasurementError: A data file to be uploaded as a measurement failed its checks.
        PipelineFailed: The pipeline failed (the server's error in the message).
        PipelineCanceled: The pipeline was canceled.
        WaitTimedOut: It did not finish within ``max_wait_seconds``; it keeps running in Ionworks.
        IonworksRequestError: Ionworks refused a request (4xx) or answered in a way that cannot be used.
        IonworksTransientError: A submission or result request still failed after its retries.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import CellTarget, run_pipeline, upload_measurement

        @flow
        async def refit_from_rpt(csv_path: str) -> dict:
            rpt = upload_measurement(csv_path, CellTarget(specification="NMC811 21700", instance="cell-7"))
            result = await run_pipeline({"name": "cell-7 refit", "elements": {"fit": {
                "element_type": "data_fit",
                "objectives": {"1C": {"type": "CurrentDriven", "data": rpt.db_ref,
                                      "options": {"model": {"type": "SPMe"}}}},
                "parameters": {"Negative particle diffusivity [m2.s-1]": {"initial_value": 2e-14,
                                                                          "bounds": [1e-14, 1e-13]}},
            }}}, max_wait_seconds=1800)
            return result.parameter_values
        ```
    """
    client = resolve_credentials(credentials).get_client()
    uploaded: list[str] = []
    prepared = await acall("prepare pipeline", prepare_pipeline, config, base_dir, cell, client=client,
                           created=uploaded)
    submitted = await acall("submit pipeline", submit_uploaded, client, prepared, uploaded, project_id=project_id,
                            force=force)
    log_submission(submitted)
    run = await await_pipeline(client, submitted.id, max_wait_seconds=max_wait_seconds, schedule=poll_schedule,
                               measurement_ids=referenced_measurements(prepared), config_hash=submitted.config_hash,
                               project_id=project_id or prepared.get("project_id"))
    raise_for_failure(run)
    result = await acall("fetch pipeline result", read_result, client, submitted.id)
    return result.model_copy(update={"config": prepared})
