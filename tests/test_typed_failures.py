"""Typed failures at the edges: credentials, URLs and the one retry budget, through real flows and tasks."""

from __future__ import annotations

import pytest
from prefect import flow

from ionworks_prefect import InvalidCredentials, IonworksCredentials, IonworksTransientError, upload_measurement
from ionworks_prefect.credentials import resolve_credentials

from .measurement_frames import discharge_frame
from .prefect_runs import ended_task_run

pytestmark = pytest.mark.usefixtures("prefect_server")


def run_once(task, *args, **kwargs):
    """Run ``task`` in a flow; return its final state, the task run's run count and its seconds (start to end)."""
    states = []
    flow(lambda: states.append(task(*args, return_state=True, **kwargs)))()
    state = states[0]
    run = ended_task_run(state.state_details.task_run_id)
    return state, run.run_count, (run.end_time - run.start_time).total_seconds()


def test_no_key_anywhere_is_invalid_credentials(monkeypatch, sandbox):
    monkeypatch.delenv("IONWORKS_API_KEY", raising=False)
    monkeypatch.delenv("IONWORKS_API_TOKEN", raising=False)
    with pytest.raises(InvalidCredentials, match="No Ionworks credentials for http://127.0.0.1"):
        IonworksCredentials(api_url=sandbox.url).get_client()


def test_an_unknown_saved_block_is_invalid_credentials_naming_it():
    with pytest.raises(InvalidCredentials, match="No saved IonworksCredentials block named 'no-such-block'"):
        resolve_credentials("no-such-block")


@pytest.mark.parametrize("url", ["htp:/nowhere", "http:/nowhere", "nowhere", "http://", "http://host:0",
                                 "http://exa mple.com", "ftp://host/"])
def test_a_malformed_api_url_fails_at_once_naming_it(url):
    with pytest.raises(InvalidCredentials) as caught:
        IonworksCredentials(api_key="k", api_url=url).get_client()
    assert repr(url) in str(caught.value)


def test_a_malformed_url_in_a_task_fails_in_under_a_second_on_its_first_run(sandbox):
    credentials = IonworksCredentials(api_key=sandbox.api_key, api_url="htp:/nowhere")
    state, runs, elapsed = run_once(upload_measurement, discharge_frame(), "cell-id", "x", credentials)
    with pytest.raises(InvalidCredentials, match="htp:/nowhere"):
        state.result()
    assert runs == 1 and elapsed < 1.0


def test_an_unreachable_host_spends_one_budget_of_request_retries():
    """Port 9 refuses: the first request is tried 1 + 2 times, then the task fails; Prefect adds no task retry."""
    credentials = IonworksCredentials(api_key="k", api_url="http://127.0.0.1:9")
    task = upload_measurement.with_options(retries=2, retry_delay_seconds=[0.2, 0.4], retry_jitter_factor=0)
    state, runs, elapsed = run_once(task, discharge_frame(), "cell-id", "x", credentials)
    with pytest.raises(IonworksTransientError) as caught:
        state.result()
    assert caught.value.attempts == 3 and runs == 1
    assert 0.6 <= elapsed < 3.0
