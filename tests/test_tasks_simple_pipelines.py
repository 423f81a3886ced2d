"""Simple pipeline tasks against the live sandbox: idempotent submit, wait, run, failure."""

from __future__ import annotations

import pytest
from prefect import flow

from ionworks_prefect import (
    PipelineFailed,
    PipelineResult,
    PollSchedule,
    run_simple_pipeline,
    submit_simple_pipeline,
    upload_measurement,
    wait_for_simple_pipeline,
)
from ionworks_prefect.pipeline_config import HASH_TAG_PREFIX

from .measurement_frames import new_instance, unique
from .pipeline_configs import DN, TRUE, fit_pipeline, synthetic

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")
FAST = PollSchedule(first=0.1, factor=1.5, ceiling=1.0)


@pytest.fixture(scope="module")
def data_ref(client) -> str:
    _, instance_id = new_instance(client, "simple")
    return upload_measurement.fn(synthetic(), instance_id, "rpt-1C").db_ref


async def test_run_simple_pipeline_fits(data_ref):
    @flow
    async def simple_fit() -> PipelineResult:
        return await run_simple_pipeline(fit_pipeline(data_ref, name=unique("simple")), poll_schedule=FAST)

    result = await simple_fit()
    assert result.parameter_values[DN] == pytest.approx(TRUE[DN], rel=0.05)
    assert set(result.element_results) == {"fit"} and result.elements["fit"].fitted


async def test_submit_reattaches_and_wait_returns_the_result(client, data_ref):
    config = fit_pipeline(data_ref, optimizer="dummy", name=unique("simple-dummy"))

    @flow
    async def submit_twice_and_wait():
        first = submit_simple_pipeline(config)
        again = submit_simple_pipeline.with_options(refresh_cache=True)(config)
        return first, again, await wait_for_simple_pipeline(first.id, poll_schedule=FAST)

    first, again, result = await submit_twice_and_wait()
    assert again.id == first.id and again.reattached
    assert result.parameter_values[DN] == pytest.approx(2e-14)  # the dummy optimizer keeps the initial guess
    marked = client.simple_pipeline.list(description=f"ilike.%{HASH_TAG_PREFIX}{first.config_hash[:12]}%")
    assert [p.id for p in marked] == [first.id]


async def test_failed_simple_pipeline_raises(data_ref):
    config = fit_pipeline(data_ref, optimizer="dummy").to_config()
    config["elements"]["known"]["values"]["Bogus parameter [m]"] = 1.0  # accepted at submission, refused at run
    config["elements"]["fit"]["parameters"] = {"Bogus parameter [m]": {"initial_value": 1.0, "bounds": [0.5, 2.0]}}

    @flow
    async def failing():
        return await run_simple_pipeline(config, poll_schedule=FAST)

    with pytest.raises(PipelineFailed, match="Bogus parameter"):
        await failing()
