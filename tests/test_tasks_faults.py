"""Retries and idempotency through a fault-injecting proxy in front of the live sandbox (no mocks).

Each test ends by counting what the sandbox holds: one pipeline per distinct submission, one measurement per upload.
"""

from __future__ import annotations

import pytest
from prefect import flow
from prefect.cache_policies import NO_CACHE

from ionworks_prefect import PollSchedule, submit_pipeline, upload_measurement, wait_for_pipeline
from ionworks_prefect.pipeline_config import HASH_TAG_PREFIX

from .measurement_frames import discharge_frame, new_instance, unique
from .pipeline_configs import entry_pipeline

pytestmark = pytest.mark.usefixtures("prefect_server")
QUICK_RETRIES = {"retry_delay_seconds": [0.2, 0.4, 0.8], "retry_jitter_factor": 0}


def _submit(config, credentials):
    task = submit_pipeline.with_options(cache_policy=NO_CACHE, **QUICK_RETRIES)
    return flow(lambda: task(config, credentials))()


def _pipelines_with(client, run) -> list[str]:
    tag = f"{HASH_TAG_PREFIX}{run.config_hash[:12]}"
    return [p.id for p in client.pipeline.list(description=f"ilike.%{tag}%", limit=100)]


def test_503_on_submit_is_retried_into_one_pipeline(client, proxy, proxied):
    proxy.inject("POST", r"^/pipelines$", "503")
    run = _submit(entry_pipeline(unique("503")), proxied)
    assert [h.outcome for h in proxy.hits_for("POST", r"^/pipelines$")][-2:] == ["503", "200"]
    assert _pipelines_with(client, run) == [run.id]


def test_429_waits_for_retry_after_before_the_retry(client, proxy, proxied):
    proxy.inject("POST", r"^/pipelines$", "429", retry_after=1.5)
    run = _submit(entry_pipeline(unique("429")), proxied)
    limited, accepted = proxy.hits_for("POST", r"^/pipelines$")[-2:]
    assert (limited.outcome, accepted.outcome) == ("429", "200")
    assert accepted.at - limited.at >= 1.5
    assert _pipelines_with(client, run) == [run.id]


@pytest.mark.parametrize("drops", [1, 5])
def test_dropped_replies_after_the_server_acted_leave_one_pipeline(client, proxy, proxied, drops):
    """Each lost answer is resent under the one budget (5 retries); the duplicates they made are removed."""
    proxy.inject("POST", r"^/pipelines$", "drop_after_forward", times=drops)
    before = len(proxy.hits_for("POST", r"^/pipelines$"))
    run = _submit(entry_pipeline(unique(f"drop{drops}")), proxied)
    forwarded = proxy.hits_for("POST", r"^/pipelines$")[before:]
    assert sum(h.outcome == "drop_after_forward" for h in forwarded) == drops  # each one created a pipeline
    assert _pipelines_with(client, run) == [run.id]
    assert client.pipeline.get(run.id).status in {"pending", "running", "completed"}


@pytest.mark.parametrize("fault, path", [
    ("503", r"/initiate-upload$"),
    ("drop_after_forward", r"/confirm-upload$"),
    ("drop_before_forward", r"/initiate-upload$"),
])
def test_upload_faults_leave_exactly_one_measurement(client, proxy, proxied, fault, path):
    _, instance_id = new_instance(client)
    proxy.inject("POST", path, fault)
    task = upload_measurement.with_options(**QUICK_RETRIES)
    uploaded = flow(lambda: task(discharge_frame(), instance_id, "rpt-0", proxied))()
    assert [h.outcome for h in proxy.hits_for("POST", path)][-1] in {"200", "409"}
    assert [m.id for m in client.cell_measurement.list(instance_id)] == [uploaded.id]
    assert client.cell_measurement.get(uploaded.id).processing_status == "ready"


def test_status_polls_ride_out_server_errors(proxy, proxied):
    run = _submit(entry_pipeline(unique("poll")), proxied)
    seen = len(proxy.hits_for("GET", r"^/pipelines$"))
    proxy.inject("GET", r"^/pipelines$", "503", times=3)
    schedule = PollSchedule(first=0.05, factor=1.5, ceiling=0.5)
    final = flow(lambda: wait_for_pipeline.submit(run.id, proxied, poll_schedule=schedule).result())()
    assert final.status == "completed"
    assert [h.outcome for h in proxy.hits_for("GET", r"^/pipelines$")][seen:seen + 4] == ["503"] * 3 + ["200"]


def test_a_request_that_stays_down_fails_after_its_budget_without_a_task_retry(client, proxy, proxied):
    """6 lost answers in a row: 1 + 5 tries, then the task fails; Prefect does not start the budget again."""
    proxy.inject("POST", r"^/pipelines$", "drop_before_forward", times=6)
    before = len(proxy.hits_for("POST", r"^/pipelines$"))
    task = submit_pipeline.with_options(cache_policy=NO_CACHE, **QUICK_RETRIES)
    state = flow(lambda: task(entry_pipeline(unique("down")), proxied, return_state=True))(return_state=True)
    assert state.is_failed()
    assert len(proxy.hits_for("POST", r"^/pipelines$")[before:]) == 6
