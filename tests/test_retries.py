"""Unit tests of the retry policy: error classification, Retry-After, and the task options."""

from __future__ import annotations

import inspect
import itertools

import httpx
import pytest
import requests
from ionworks.errors import IonworksError
from ionworks.validators import MeasurementValidationError
from prefect.states import Completed, Failed

from ionworks_prefect import (
    IonworksNotFound,
    IonworksRequestError,
    IonworksTransientError,
    PipelineFailed,
    WaitTimedOut,
)
from ionworks_prefect._calls import call, error_from_http_response, parse_retry_after, translate_error
from ionworks_prefect.pipelines import run_pipeline, submit_pipeline, wait_for_pipeline
from ionworks_prefect.retries import ionworks_task, is_retryable, retry_on_transient_error
from ionworks_prefect.waiting import PollSchedule


def _http_error(status: int, headers: dict[str, str] | None = None) -> IonworksError:
    """An IonworksError raised the way the client raises it: inside ``except HTTPError`` and ``from None``."""
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    try:
        try:
            raise requests.HTTPError(response=response)
        except requests.HTTPError:
            raise IonworksError({"error_code": "X", "message": f"status {status}"}, status_code=status) from None
    except IonworksError as exc:
        return exc


def _connection_error() -> IonworksError:
    try:
        try:
            raise requests.ConnectionError("connection refused")
        except requests.ConnectionError as e:
            raise IonworksError(f"Error during request to http://x/pipelines: {e}") from None
    except IonworksError as exc:
        return exc


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 408])
def test_server_and_rate_limit_errors_are_transient(status):
    error = translate_error(_http_error(status), "submit pipeline")
    assert isinstance(error, IonworksTransientError) and is_retryable(error)
    assert error.status_code == status and "status" in error.message


@pytest.mark.parametrize("status", [400, 401, 403, 409, 422, 501])
def test_client_errors_and_not_implemented_fail_at_once(status):
    error = translate_error(_http_error(status), "submit pipeline")
    assert type(error) is IonworksRequestError and not is_retryable(error)


def test_not_found_has_its_own_type():
    assert isinstance(translate_error(_http_error(404), "get"), IonworksNotFound)


def test_connection_errors_and_transport_failures_are_transient():
    assert is_retryable(translate_error(_connection_error(), "submit"))
    assert is_retryable(translate_error(requests.ConnectionError("reset"), "upload"))
    assert is_retryable(translate_error(httpx.ConnectError("refused"), "poll"))


def test_validation_and_domain_failures_are_not_retried():
    assert translate_error(MeasurementValidationError("bad time"), "upload").status_code is None
    assert not is_retryable(translate_error(MeasurementValidationError("bad time"), "upload"))
    assert not is_retryable(PipelineFailed("failed", resource_id="p", status="failed"))
    assert not is_retryable(WaitTimedOut("slow", resource_id="p", last_status="running"))
    assert translate_error(ValueError("not an API error"), "x") is None


def test_retry_after_is_read_from_the_response_behind_the_client_error():
    error = translate_error(_http_error(429, {"Retry-After": "3"}), "submit")
    assert error.retry_after == 3.0
    assert translate_error(_http_error(429), "submit").retry_after is None
    assert parse_retry_after("100000") == 60.0 and parse_retry_after("soon") is None


def test_httpx_responses_parse_like_the_client():
    standard = error_from_http_response(
        httpx.Response(503, json={"error_code": "UNAVAILABLE", "message": "busy"}, headers={"Retry-After": "1"}), "poll")
    assert isinstance(standard, IonworksTransientError) and standard.retry_after == 1.0
    assert standard.error_code == "UNAVAILABLE" and "busy" in str(standard)
    legacy = error_from_http_response(httpx.Response(404, json={"detail": "Pipeline not found"}), "poll")
    assert isinstance(legacy, IonworksNotFound) and "Pipeline not found" in str(legacy)


def test_call_retries_in_place_waiting_at_least_retry_after(monkeypatch):
    slept = []
    monkeypatch.setattr("ionworks_prefect._calls.time.sleep", slept.append)
    answers = iter([_http_error(429, {"Retry-After": "2"}), _http_error(503), "ok"])

    def flaky():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert call("submit", flaky) == "ok"
    assert slept[0] == 2.0 and 1.0 <= slept[1] <= 1.5  # Retry-After, then the second backoff step (1 s + jitter)


def test_a_request_that_spent_its_retries_is_not_retried_again_by_prefect(monkeypatch):
    monkeypatch.setattr("ionworks_prefect._calls.time.sleep", lambda _: None)
    tries = []

    def down():
        tries.append(1)
        raise _connection_error()

    with pytest.raises(IonworksTransientError) as caught:
        call("submit", down)
    assert len(tries) == 6 and caught.value.attempts == 6  # 1 + the default 5 retries
    assert "after 6 attempts" in str(caught.value) and not is_retryable(caught.value)
    assert isinstance(caught.value.__cause__, IonworksError)


@pytest.mark.parametrize("raised, kind, says", [
    (KeyError("id"), IonworksRequestError, "no field 'id'"),
    (TypeError("'Response' object is not subscriptable"), IonworksRequestError, "not subscriptable"),
    (ValueError("Authentication required"), IonworksRequestError, "Authentication required"),
    (requests.exceptions.InvalidSchema("No connection adapters were found for 'htp:/nowhere/pipelines'"),
     IonworksRequestError, "htp:/nowhere"),
    (requests.exceptions.JSONDecodeError("Expecting value", "<html>", 0), IonworksRequestError, "not JSON"),
])
def test_every_other_client_failure_is_typed_and_tried_once(raised, kind, says):
    tries = []

    def broken():
        tries.append(1)
        raise raised

    with pytest.raises(kind) as caught:
        call("get pipeline", broken)
    assert type(caught.value) is kind and says in str(caught.value) and tries == [1]
    assert not is_retryable(caught.value)


def test_a_client_model_rejecting_an_answer_is_a_typed_error():
    from ionworks.pipeline import PipelineSubmissionResponse

    with pytest.raises(IonworksRequestError, match="Unexpected answer from Ionworks: .* at status"):
        call("get pipeline", PipelineSubmissionResponse.model_validate, {"id": "p", "name": "x", "status": None})


def test_a_client_value_error_about_the_input_takes_the_callers_type():
    from ionworks_prefect import InvalidSimulationConfig

    def refuse():
        raise ValueError("Unknown key 'protocl'")

    with pytest.raises(InvalidSimulationConfig, match="submit simulation: Unknown key 'protocl'"):
        call("submit simulation", refuse, invalid=InvalidSimulationConfig)


def test_retry_condition_classifies_the_failed_state():
    transient = Failed(data=IonworksTransientError("busy", status_code=503))
    permanent = Failed(data=IonworksRequestError("bad", status_code=400))
    assert retry_on_transient_error(None, None, transient) is True
    assert retry_on_transient_error(None, None, permanent) is False
    assert retry_on_transient_error(None, None, Completed(data=1)) is False


def test_every_api_task_uses_the_shared_policy():
    assert inspect.isfunction(retry_on_transient_error)  # a partial or callable object would disable retries
    for task in (submit_pipeline, wait_for_pipeline, run_pipeline):
        assert task.retry_condition_fn is retry_on_transient_error
        assert task.retries >= 1 and task.retry_jitter_factor is not None
        assert task.retry_delay_seconds == sorted(task.retry_delay_seconds)  # exponential backoff


def test_ionworks_task_options_can_be_overridden():
    @ionworks_task(name="t", description="d", retries=1)
    def noop() -> None: ...

    assert noop.retries == 1 and noop.retry_condition_fn is retry_on_transient_error


def test_poll_schedule_starts_fast_and_backs_off_to_the_ceiling():
    delays = list(itertools.islice(PollSchedule(first=0.2, factor=1.5, ceiling=5.0).delays(), 12))
    assert delays[:3] == pytest.approx([0.2, 0.3, 0.45])
    assert delays == sorted(delays) and delays[-1] == 5.0 and max(delays) == 5.0


def test_async_and_sync_tasks_retry_transient_errors_only(prefect_server):
    import asyncio

    from prefect import flow

    calls = {"async": 0, "sync": 0, "permanent": 0}

    @ionworks_task(name="flaky async", description="d", retry_delay_seconds=0)
    async def flaky_async() -> str:
        calls["async"] += 1
        if calls["async"] < 3:
            raise IonworksTransientError("busy", status_code=503)
        return "ok"

    @ionworks_task(name="flaky sync", description="d", retry_delay_seconds=0)
    def flaky_sync() -> str:
        calls["sync"] += 1
        if calls["sync"] < 2:
            raise IonworksTransientError("reset")
        return "ok"

    @ionworks_task(name="permanent", description="d", retry_delay_seconds=0)
    def permanent() -> None:
        calls["permanent"] += 1
        raise IonworksRequestError("bad request", status_code=400)

    @flow
    async def exercise():
        return await flaky_async(), flaky_sync(), permanent(return_state=True)

    first, second, failed = asyncio.run(exercise())
    assert (first, second, failed.is_failed()) == ("ok", "ok", True)
    assert calls == {"async": 3, "sync": 2, "permanent": 1}


def test_a_flow_using_the_tasks_pickles_for_the_runners_subprocess():
    import cloudpickle

    from ionworks_prefect.flows import fleet_refit, nightly_refit

    for flow_object in (nightly_refit, fleet_refit):
        assert cloudpickle.loads(cloudpickle.dumps(flow_object)).name == flow_object.name


def test_every_task_that_takes_credentials_uses_the_shared_policy():
    """Every Prefect task of the plugin and its flows that can reach Ionworks (it takes ``credentials``)."""
    import importlib
    import pkgutil

    from prefect import Task

    import ionworks_prefect

    found = {}
    for info in pkgutil.walk_packages(ionworks_prefect.__path__, "ionworks_prefect."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, Task) and "credentials" in inspect.signature(value.fn).parameters:
                found[f"{value.fn.__module__}.{value.fn.__name__}"] = value
    assert "ionworks_prefect.flows.ingest_cycler_data.resolve_cell" in found and len(found) > 20
    unshared = [name for name, t in found.items() if t.retry_condition_fn is not retry_on_transient_error]
    assert unshared == []
