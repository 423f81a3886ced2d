"""Pipeline tasks against the live sandbox: prepare, idempotent submit, wait (progress, timeout, cancel), fetch."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from prefect import flow
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.context import get_run_context

from ionworks_prefect import (
    CellTarget,
    FittedParameterSet,
    InvalidPipelineConfig,
    IonworksRequestError,
    PipelineCanceled,
    PipelineFailed,
    PipelineResult,
    PollSchedule,
    ResultNotReady,
    WaitTimedOut,
    fetch_pipeline_result,
    prepare_pipeline,
    run_pipeline,
    submit_pipeline,
    upload_measurement,
    wait_for_pipeline,
)
from ionworks_prefect.pipeline_config import HASH_TAG_PREFIX

from .measurement_frames import new_instance, unique
from .pipeline_configs import DN, TRUE, entry_pipeline, fit_pipeline, synthetic
from .prefect_runs import ended_task_run

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")
FAST = PollSchedule(first=0.1, factor=1.5, ceiling=1.0)


def _with_marker(client, config_hash: str) -> list:
    return [p for p in client.pipeline.list(description=f"ilike.%{HASH_TAG_PREFIX}{config_hash[:12]}%", limit=100)]


def _wait_status(client, pipeline_id: str, statuses: set[str], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while (status := client.pipeline.get(pipeline_id).status) not in statuses and time.monotonic() < deadline:
        time.sleep(0.2)
    return status


@pytest.fixture(scope="module")
def measurement_id(client) -> str:
    _, instance_id = new_instance(client, "fit")
    return upload_measurement.fn(synthetic(), instance_id, "rpt-1C").id


async def test_run_pipeline_fits_and_returns_a_typed_result(client, measurement_id):
    @flow
    async def fit_flow() -> PipelineResult:
        return await run_pipeline(fit_pipeline(f"db:{measurement_id}", name=unique("fit")), poll_schedule=FAST)

    result = await fit_flow()
    assert result.parameter_values[DN] == pytest.approx(TRUE[DN], rel=0.05)
    assert result.elements["fit"].cost is not None and result.elements["fit"].fitted
    assert set(result.fit_elements()) == {"fit"}
    assert result.config["elements"]["fit"]["parameters"][DN]["bounds"] == [1e-14, 1e-13]
    fitted = FittedParameterSet.from_pipeline_result(result, cell="cell-7")
    assert (fitted.parameters[0].lower_bound, fitted.measurement_ids) == (1e-14, [measurement_id])
    assert client.pipeline.get(result.pipeline_id).status == "completed"


def test_submission_is_cached_and_reattached_not_repeated(client):
    config = entry_pipeline(unique("nightly"))

    @flow
    def nightly(force: bool = False):
        """The task's state name and its result, read in the flow (a returned State would be read back from
        the API, where results are not persisted)."""
        state = submit_pipeline(config, force=force, return_state=True)
        return state.name, state.result()

    (first, run), (second, cached) = nightly(), nightly()
    assert first == "Completed" and second == "Cached"
    assert cached.id == run.id and not run.reattached

    uncached = submit_pipeline.with_options(cache_policy=NO_CACHE, refresh_cache=True)
    again = flow(lambda: uncached(config))()
    assert (again.id, again.reattached) == (run.id, True)  # found on the server by its content hash
    assert [p.id for p in _with_marker(client, run.config_hash)] == [run.id]

    forced = nightly(force=True)[1]
    assert forced.id != run.id and f"{HASH_TAG_PREFIX}{run.config_hash[:12]} forced" in forced.description
    assert flow(lambda: uncached(config))().id == run.id  # the forced run does not replace the original


def test_schema_object_and_dict_are_the_same_submission():
    config = entry_pipeline(unique("same"))

    @flow
    def both():
        uncached = submit_pipeline.with_options(cache_policy=NO_CACHE)
        return uncached(config), uncached(config.to_config())

    from_schema, from_dict = both()
    assert from_dict.id == from_schema.id and from_dict.reattached


async def test_wait_reports_progress_and_returns_the_final_run(client, measurement_id):
    @flow
    async def submit_and_wait_twice():
        run = submit_pipeline.with_options(cache_policy=NO_CACHE)(
            fit_pipeline(f"db:{measurement_id}", name=unique("progress")))
        final = await wait_for_pipeline(run.id, poll_schedule=FAST)
        again = await wait_for_pipeline(run.id, poll_schedule=FAST)  # finished at its first read
        return final, again, get_run_context().flow_run.id

    final, again, flow_run_id = await submit_and_wait_twice()
    assert (final.status, final.is_terminal, final.succeeded) == ("completed", True, True)
    assert (again.id, again.status) == (final.id, "completed")
    async with get_client() as prefect:
        artifacts = await prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    progress = [a for a in artifacts if a.type == "progress"]
    assert len(progress) == 1  # the second wait had no progress to show
    assert progress[0].data == 100.0 and final.id in progress[0].description


def _fitting_a_name_no_model_reads(config: dict) -> dict:
    """Fit a name an entry defines but the model never reads: accepted at submission, refused when it runs."""
    config["elements"]["known"]["values"]["Bogus parameter [m]"] = 1.0
    config["elements"]["fit"]["parameters"] = {"Bogus parameter [m]": {"initial_value": 1.0, "bounds": [0.5, 2.0]}}
    return config


async def test_failed_pipeline_raises_with_the_server_reason():
    config = fit_pipeline("db:unused", optimizer="dummy").to_config()
    config["elements"]["fit"]["objectives"]["1C"]["data"] = synthetic().to_dict(as_series=False)
    config = _fitting_a_name_no_model_reads(config)

    @flow
    async def failing():
        return await run_pipeline(config, poll_schedule=FAST)

    with pytest.raises(PipelineFailed) as caught:
        await failing()
    assert caught.value.status == "failed" and "Bogus parameter" in caught.value.error


def test_an_unknown_fit_parameter_fails_at_submission_without_retries(client):
    config = fit_pipeline("db:unused", optimizer="dummy").to_config()
    config["elements"]["fit"]["objectives"]["1C"]["data"] = synthetic().to_dict(as_series=False)
    config["elements"]["fit"]["parameters"] = {"Negative particle diffusivity": {"initial_value": 2e-14}}
    before = {p.id for p in client.pipeline.list()}
    started = time.monotonic()
    with pytest.raises(IonworksRequestError) as caught:
        submit_pipeline.fn(config)
    assert (caught.value.status_code, caught.value.error_code) == (422, "CONFIGURATION_ERROR")
    assert DN in str(caught.value) and time.monotonic() - started < 5
    assert {p.id for p in client.pipeline.list()} == before


async def test_timeout_leaves_the_pipeline_running_and_cancel_stops_it(client, measurement_id):
    run = submit_pipeline.fn(fit_pipeline(f"db:{measurement_id}", optimizer="slow", name=unique("slow")))

    @flow
    async def short_wait():
        return await wait_for_pipeline(run.id, max_wait_seconds=1.0, poll_schedule=FAST)

    with pytest.raises(WaitTimedOut) as caught:
        await short_wait()
    assert caught.value.last_status in {"pending", "running"} and caught.value.resource_id == run.id
    assert client.pipeline.get(run.id).status in {"pending", "running"}

    @flow
    async def long_wait():
        return await wait_for_pipeline(run.id, poll_schedule=FAST)

    waiting = asyncio.ensure_future(long_wait())
    await asyncio.sleep(2.0)
    waiting.cancel()  # as when the flow run is cancelled
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await asyncio.to_thread(_wait_status, client, run.id, {"canceled"}) == "canceled"
    with pytest.raises(PipelineCanceled):
        await long_wait()


def test_fetch_is_cached_once_finished_and_refused_before(client, measurement_id):
    done = submit_pipeline.fn(entry_pipeline(unique("fetch")))
    _wait_status(client, done.id, {"completed"})
    slow = submit_pipeline.fn(fit_pipeline(f"db:{measurement_id}", optimizer="slow", name=unique("slow")))

    @flow
    def fetch_twice(pipeline_id: str):
        return fetch_pipeline_result(pipeline_id, return_state=True), fetch_pipeline_result(pipeline_id, return_state=True)

    first, second = fetch_twice(done.id)
    assert second.name == "Cached" and second.result().parameter_values == first.result().parameter_values
    with pytest.raises(ResultNotReady):
        flow(lambda: fetch_pipeline_result(slow.id))()
    client.pipeline.cancel(slow.id)


def test_prepare_resolves_files_against_base_dir_and_uploads_large_ones(client, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    synthetic().write_csv(data / "small.csv")
    big = synthetic(period_s=1.0)
    assert big.height > 1000
    big.write_csv(data / "big.csv")
    monkeypatch.chdir(os.path.dirname(tmp_path))  # the worker's CWD is not the data's directory
    target = CellTarget(specification=unique("spec"), instance="cell-1")

    small = prepare_pipeline(fit_pipeline("file:data/small.csv"), base_dir=tmp_path)
    assert small["elements"]["fit"]["objectives"]["1C"]["data"]["Voltage [V]"] == synthetic()["Voltage [V]"].to_list()

    with pytest.raises(InvalidPipelineConfig, match="cell="):
        prepare_pipeline(fit_pipeline("file:data/big.csv"), base_dir=tmp_path)
    with pytest.raises(InvalidPipelineConfig, match="not found"):
        prepare_pipeline(fit_pipeline("file:data/missing.csv"), base_dir=tmp_path)

    first = prepare_pipeline(fit_pipeline("file:data/big.csv"), tmp_path, target, client=client)
    again = prepare_pipeline(fit_pipeline("file:data/big.csv"), tmp_path, target, client=client)
    reference = first["elements"]["fit"]["objectives"]["1C"]["data"]
    assert reference.startswith("db:") and again["elements"]["fit"]["objectives"]["1C"]["data"] == reference
    stored = client.cell_measurement.get(reference[3:])
    assert stored.name.startswith("data/big.csv [") and stored.row_count == big.height
    assert len(client.cell_measurement.list(stored.cell_instance_id)) == 1


def test_invalid_config_fails_without_retries():
    @flow
    def bad():
        state = submit_pipeline({"elements": {"known": {"element_type": "entry", "valuez": {}}}}, return_state=True)
        return state.state_details.task_run_id, state.result(raise_on_failure=False)

    task_run_id, error = bad()
    assert isinstance(error, InvalidPipelineConfig) and "valuez" in str(error)
    assert ended_task_run(task_run_id).run_count == 1  # not retried


def test_sync_flows_can_submit_and_wait():
    @flow
    def sync_flow():
        run = submit_pipeline(entry_pipeline(unique("sync")))
        return wait_for_pipeline.submit(run.id, poll_schedule=FAST).result()

    assert sync_flow().status == "completed"
