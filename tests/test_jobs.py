"""IonworksPipeline (a Prefect JobBlock) and run_ionworks_pipeline: Prefect's block test suite, trigger / wait /
fetch against the live sandbox, three visible tasks, reattaching on a second trigger, nothing sent for a bad config."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName, TaskRunFilter
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from ionworks_prefect import InvalidPipelineConfig, IonworksCredentials
from ionworks_prefect.jobs import IonworksPipeline, run_ionworks_pipeline

from .measurement_frames import new_instance, unique
from .pipeline_configs import DN, TRUE, fit_pipeline, synthetic


class _OfflineSuite(BlockStandardTestSuite):
    def test_has_a_valid_image(self, block) -> None:  # the suite downloads the logo; here: a URL is set
        assert block._logo_url.startswith("https://")


class TestIonworksCredentialsBlock(_OfflineSuite):
    @pytest.fixture
    def block(self):
        return IonworksCredentials


class TestIonworksPipelineBlock(_OfflineSuite):
    @pytest.fixture
    def block(self):
        return IonworksPipeline


async def task_names(flow_run_name: str) -> list[str]:
    """The names of the task runs of the flow run named ``flow_run_name``, without their suffixes, sorted."""
    async with get_client() as prefect:
        (flow_run,) = await prefect.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(any_=[flow_run_name])))
        tasks = await prefect.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
                                             task_run_filter=TaskRunFilter())
    return sorted(t.name.rsplit("-", 1)[0] for t in tasks)


def _pipeline(measurement_id: str) -> IonworksPipeline:
    return IonworksPipeline(pipeline=fit_pipeline(f"db:{measurement_id}", name=unique("block fit")).to_config(),
                            max_wait_seconds=300)


@pytest.mark.usefixtures("prefect_server", "sandbox")
async def test_trigger_wait_fetch_and_a_second_trigger_reattaches(client):
    from ionworks_prefect import upload_measurement

    _, instance_id = new_instance(client)
    measurement = upload_measurement.fn(synthetic(), instance_id, "rpt-1C")
    block = _pipeline(measurement.id)
    await block.save(unique("pipeline-block").lower(), overwrite=True)

    run = await block.trigger()
    final = await run.wait_for_completion()
    result = await run.fetch_result()
    assert final.status == "completed" and result.pipeline_id == run.pipeline_id
    assert result.parameter_values[DN] == pytest.approx(TRUE[DN], rel=0.05)
    again = await block.trigger()
    assert again.pipeline_id == run.pipeline_id and again.submitted.reattached


@pytest.mark.usefixtures("prefect_server", "sandbox")
async def test_the_library_flow_runs_trigger_wait_and_fetch_as_three_tasks(client):
    from ionworks_prefect import upload_measurement

    _, instance_id = new_instance(client)
    measurement = upload_measurement.fn(synthetic(seed=3), instance_id, "rpt-1C")
    run_name = unique("run-ionworks-pipeline")
    result = await run_ionworks_pipeline.with_options(flow_run_name=run_name)(_pipeline(measurement.id))
    assert result.parameter_values[DN] == pytest.approx(TRUE[DN], rel=0.05)
    assert await task_names(run_name) == ["Fetch Ionworks pipeline run result", "Trigger Ionworks pipeline",
                                          "Wait for Ionworks pipeline run"]


@pytest.mark.usefixtures("prefect_server", "sandbox")
async def test_an_invalid_config_fails_the_trigger_and_sends_nothing(client):
    before = len(client.pipeline.list(limit=1000))
    block = IonworksPipeline(pipeline={"elements": {"fit": {"element_type": "data_fit", "objectives": "nope"}}})
    with pytest.raises(InvalidPipelineConfig):
        await block.trigger()
    assert len(client.pipeline.list(limit=1000)) == before
