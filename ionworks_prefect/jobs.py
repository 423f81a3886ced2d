"""A saved, triggerable Ionworks pipeline: ``IonworksPipeline`` (a Prefect ``JobBlock``) and its run.

The shape prefect-dbt, prefect-airbyte and prefect-aws share: the block holds what to run and the credentials;
``trigger()`` submits it (idempotently: an identical earlier submission is reattached) and returns an
:class:`IonworksPipelineRun`, whose ``wait_for_completion()`` and ``fetch_result()`` finish the job.
:func:`run_ionworks_pipeline` runs the three steps as three visible, separately retried tasks.

Example:
    ```python
    from prefect import flow
    from ionworks_prefect import IonworksCredentials
    from ionworks_prefect.jobs import IonworksPipeline

    @flow
    async def refit_from_block():
        pipeline = await IonworksPipeline.load("cell-7-refit")
        run = await pipeline.trigger()
        await run.wait_for_completion()
        return await run.fetch_result()
    ```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from prefect import flow
from prefect.blocks.abstract import JobBlock, JobRun
from pydantic import Field

from ._calls import acall
from .credentials import IonworksCredentials
from .pipeline_config import prepare_pipeline, referenced_measurements
from .pipeline_submission import log_submission, submit_uploaded
from .pipelines import await_pipeline, raise_for_failure, read_result
from .results import PipelineResult, PipelineRun
from .retries import ionworks_task
from .waiting import PollSchedule


class IonworksPipelineRun(JobRun[PipelineResult]):
    """One submitted run of an :class:`IonworksPipeline` (not a block)."""

    def __init__(self, pipeline: IonworksPipeline, submitted: PipelineRun, config: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.submitted = submitted
        self.config = config

    @property
    def pipeline_id(self) -> str:
        """The Ionworks pipeline id of this run."""
        return self.submitted.id

    async def wait_for_completion(self) -> PipelineRun:
        """Wait until the pipeline finishes (the block's ``max_wait_seconds`` at most).

        Returns:
            The final :class:`PipelineRun`.

        Raises:
            PipelineFailed: The pipeline failed (the server's error in the message).
            PipelineCanceled: It was canceled.
            WaitTimedOut: It did not finish in time; it keeps running in Ionworks.
        """
        client = self.pipeline.credentials.get_client()
        final = await await_pipeline(client, self.pipeline_id, max_wait_seconds=self.pipeline.max_wait_seconds,
                                     schedule=PollSchedule(), measurement_ids=referenced_measurements(self.config),
                                     config_hash=self.submitted.config_hash)
        raise_for_failure(final)
        self.logger.info("Ionworks pipeline %s %s", self.pipeline_id, final.status)
        return final

    async def fetch_result(self) -> PipelineResult:
        """The finished pipeline's result (parameter values, element results, the submitted config).

        Raises:
            ResultNotReady: The pipeline has not completed yet.
            PipelineFailed: It failed.
        """
        client = self.pipeline.credentials.get_client()
        result = await acall("fetch pipeline result", read_result, client, self.pipeline_id)
        return result.model_copy(update={"config": self.config})


class IonworksPipeline(JobBlock[PipelineResult]):
    """A pipeline configuration saved with its credentials; ``trigger()`` runs it on Ionworks.

    Attributes:
        credentials: The Ionworks credentials block.
        pipeline: The pipeline configuration (the dict ``ionworks_schema.Pipeline.to_config()`` gives).
        base_dir: Directory that ``file:``/``folder:`` data references are resolved against.
        cell: Cell instance id that files over 1,000 rows are uploaded to (as measurements).
        max_wait_seconds: How long ``wait_for_completion()`` waits (seconds, above 0; 3600 by default).

    Raises:
        pydantic.ValidationError: ``pipeline`` is missing or ``max_wait_seconds`` is not above 0.
        InvalidPipelineConfig: From :meth:`trigger`: the configuration or its data is invalid; nothing was
            submitted.
        IonworksRequestError: From :meth:`trigger`: Ionworks refused the submission.
        IonworksTransientError: From :meth:`trigger`: a request still failed after its retries; triggering
            again reattaches to a pipeline that was created.
        InvalidCredentials: From :meth:`trigger`: the credentials hold no API key or token, or a malformed URL.

    Examples:
        Load a saved pipeline block:
        ```python
        from ionworks_prefect.jobs import IonworksPipeline

        pipeline = IonworksPipeline.load("BLOCK_NAME")
        ```

        Save a pipeline once, then run it from any flow:
        ```python
        from prefect import flow
        from ionworks_prefect import IonworksCredentials
        from ionworks_prefect.jobs import IonworksPipeline, run_ionworks_pipeline

        config = {"name": "cell-7 refit", "elements": {"fit": {
            "element_type": "data_fit",
            "objectives": {"1C": {"type": "CurrentDriven", "data": "file:rpt/1C.csv",
                                  "options": {"model": {"type": "SPMe"}}}},
            "parameters": {"Negative particle diffusivity [m2.s-1]": {"initial_value": 2e-14,
                                                                      "bounds": [1e-14, 1e-13]}},
        }}}
        IonworksPipeline(credentials=IonworksCredentials.load("ionworks"), pipeline=config,
                         base_dir="/lab/cell-7").save("cell-7-refit")

        @flow
        async def nightly():
            result = await run_ionworks_pipeline(await IonworksPipeline.load("cell-7-refit"))
            print(result.parameter_values)
        ```
    """

    _block_type_name = "Ionworks Pipeline"
    _description = "A saved Ionworks pipeline configuration that a flow can trigger, wait for and fetch."
    _logo_url = "https://app.ionworks.com/ionworks-logo-square.png"
    _documentation_url = "https://docs.ionworks.com"

    credentials: IonworksCredentials = Field(default_factory=IonworksCredentials,
                                             description="Credentials and endpoint of the Ionworks API.")
    pipeline: dict[str, Any] = Field(description="Pipeline configuration: elements, and optionally name, "
                                                 "description and options.")
    base_dir: Optional[str] = Field(default=None, description="Where file: and folder: data references live.")
    cell: Optional[str] = Field(default=None, title="Cell instance id",
                                description="Cell that data files over 1,000 rows are uploaded to.")
    max_wait_seconds: float = Field(default=3600.0, gt=0, description="How long to wait for the pipeline.")

    async def trigger(self) -> IonworksPipelineRun:
        """Submit the pipeline once per distinct content (an identical earlier submission is reattached).

        Returns:
            The :class:`IonworksPipelineRun` to wait on and fetch.

        Raises:
            InvalidPipelineConfig: The configuration or its data is invalid (nothing was submitted).
            IonworksRequestError: Ionworks refused the submission.
        """
        client = self.credentials.get_client()
        base = Path(self.base_dir) if self.base_dir else None
        uploaded: list[str] = []
        config = await acall("prepare pipeline", prepare_pipeline, self.pipeline, base, self.cell, client=client,
                             created=uploaded)
        submitted = await acall("submit pipeline", submit_uploaded, client, config, uploaded)
        log_submission(submitted)
        return IonworksPipelineRun(self, submitted, config)


@ionworks_task(name="Trigger Ionworks pipeline", description="Submit a saved Ionworks pipeline.")
async def trigger_pipeline(pipeline: IonworksPipeline) -> IonworksPipelineRun:
    """Trigger ``pipeline`` (see :meth:`IonworksPipeline.trigger`)."""
    return await pipeline.trigger()


@ionworks_task(name="Wait for Ionworks pipeline run", description="Wait until a triggered pipeline finishes.")
async def wait_for_pipeline_run(run: IonworksPipelineRun) -> PipelineRun:
    """Wait for ``run`` (see :meth:`IonworksPipelineRun.wait_for_completion`)."""
    return await run.wait_for_completion()


@ionworks_task(name="Fetch Ionworks pipeline run result", description="Read a finished pipeline's result.")
async def fetch_pipeline_run_result(run: IonworksPipelineRun) -> PipelineResult:
    """Fetch ``run``'s result (see :meth:`IonworksPipelineRun.fetch_result`)."""
    return await run.fetch_result()


@flow(name="run-ionworks-pipeline", description="Trigger a saved Ionworks pipeline, wait for it, fetch its result.")
async def run_ionworks_pipeline(pipeline: IonworksPipeline) -> PipelineResult:
    """Trigger, wait for and fetch a saved pipeline as three tasks, each retried on transient faults only.

    A retried trigger reattaches to the pipeline it submitted; a retried wait polls the same pipeline.

    Args:
        pipeline: The :class:`IonworksPipeline` block to run.

    Returns:
        The :class:`PipelineResult` (parameter values, element results, the submitted config).

    Raises:
        InvalidPipelineConfig: The configuration is invalid; nothing was submitted.
        PipelineFailed: The pipeline failed.
        PipelineCanceled: It was canceled.
        WaitTimedOut: It did not finish within the block's ``max_wait_seconds``.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect.jobs import IonworksPipeline, run_ionworks_pipeline

        @flow
        async def refit_cell_7():
            result = await run_ionworks_pipeline(await IonworksPipeline.load("cell-7-refit"))
            return result.parameter_values
        ```
    """
    run = await trigger_pipeline(pipeline)
    await wait_for_pipeline_run(run)
    return await fetch_pipeline_run_result(run)

