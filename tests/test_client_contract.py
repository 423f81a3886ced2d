"""The plugin holds to the HTTP contract the official client defines, against a sandbox that answers as the client
reads: the contract monitor itself (``tests/client_contract.py``), and the plugin where a real service may differ
from the sandbox (a list filter not applied, reads refused while a measurement processes, typed results, batches
at the client's limits). Live tests run over real HTTP, some through a loopback proxy that changes the server."""

from __future__ import annotations

import copy
import pickle
import uuid
from pathlib import Path

import ionworks_schema as iws
import pytest
from ionworks import Ionworks
from ionworks.errors import IonworksError

from ionworks_prefect import MeasurementProcessingFailed, history, pipeline_submission, upload_measurement
from ionworks_prefect.history import list_fit_records
from ionworks_prefect.measurements import store_measurement
from ionworks_prefect.pipeline_config import hash_tag, prepare_pipeline
from ionworks_prefect.pipeline_submission import submit_prepared
from ionworks_prefect.pipelines import read_result
from ionworks_prefect.status_reads import SIMULATIONS, STATUSES_CHUNK, StatusReader
from ionworks_sandbox.app import create_app
from ionworks_sandbox.measurement_processing import INLINE_ROW_LIMIT
from ionworks_sandbox.settings import SandboxSettings

from .client_contract import NOT_JSON, PLUGIN_DIRS, ROUTES, check_answer, shape, wrap_answer
from .fault_proxy import FaultProxy
from .measurement_frames import discharge_frame, new_instance, unique
from .pipeline_configs import entry_pipeline, fit_pipeline, synthetic

PIPELINE = {"id": "p1", "name": "fit", "status": "completed", "is_terminal": True, "is_failed": False}


def test_an_answer_the_client_cannot_parse_is_a_problem():
    assert check_answer("GET", "/pipelines/p1", "application/json", PIPELINE) == []
    (problem,) = check_answer("GET", "/pipelines/p1", "application/json", {**PIPELINE, "is_terminal": None})
    assert "PipelineSubmissionResponse" in problem and "is_terminal" in problem
    result = {"result": {}, "element_results": None}
    (problem,) = check_answer("GET", "/pipelines/p1/result", "application/json", result)
    assert "PipelineResponse" in problem and "element_results" in problem
    (problem,) = check_answer("GET", "/pipelines/p1", "application/json; charset=utf-8", PIPELINE)
    assert "Content-Type" in problem  # the client parses only exactly application/json
    (problem,) = check_answer("GET", "/pipelines/p1/unheard-of", "application/json", {})
    assert "no client contract" in problem


def test_list_answers_are_checked_by_shape_and_record():
    assert check_answer("GET", "/pipelines", "application/json", {"pipelines": [PIPELINE], "total": 1}) == []
    assert check_answer("GET", "/pipelines", "application/json", [PIPELINE]) == []
    (problem,) = check_answer("GET", "/pipelines", "application/json", {"pipelines": [PIPELINE, {"id": "p2"}]})
    assert problem.startswith("GET /pipelines: [1] does not fit PipelineSubmissionResponse")
    (problem,) = check_answer("GET", "/pipelines", "application/json", {"items": [PIPELINE]})
    assert "expected {'pipelines': [...]}" in problem
    (problem,) = check_answer("POST", "/simulations/statuses", "application/json", {"statuses": []})
    assert "expected an array" in problem


def _run_as(directory: str, source: str, answer: object) -> None:
    """Run ``source`` as if it were code in ``directory`` (the plugin's, or elsewhere)."""
    exec(compile(source, str(Path(directory) / "probe.py"), "exec"), {"answer": answer})  # noqa: S102


def test_plugin_reads_of_keys_the_client_does_not_define_are_noted():
    noted: list[str] = []
    answer = wrap_answer("GET", "/pipelines/p1", {**PIPELINE, "created_at": "2026-01-01"}, noted.append)
    _run_as(PLUGIN_DIRS[0], "answer['status']; answer.get('is_failed'); 'error' in answer", answer)
    assert noted == []
    _run_as(PLUGIN_DIRS[0], "answer.get('created_at')", answer)
    (note,) = noted
    assert "reads 'created_at' from the answer of GET /pipelines/{id}" in note and "probe.py:1" in note
    _run_as("/elsewhere", "answer['created_at']", answer)  # tests and the client may read what they like
    assert len(noted) == 1

    page = wrap_answer("GET", "/pipelines", {"pipelines": [{**PIPELINE, "updated_at": "x"}], "total": 1}, noted.append)
    _run_as(PLUGIN_DIRS[0], "answer.get('total'); [p['updated_at'] for p in answer['pipelines']]", page)
    assert "reads 'updated_at' from the answer of GET /pipelines" in noted[-1]
    elements = wrap_answer("GET", "/pipelines/p1/elements", [{"name": "fit", "status": "completed"}], noted.append)
    _run_as(PLUGIN_DIRS[0], "answer[0]['name']; answer[0]['status']", elements)
    assert "reads 'status' from the answer of GET /pipelines/{id}/elements" in noted[-1]
    # The wrapper leaves nothing behind when a record is copied or stored.
    assert type(copy.deepcopy(answer)) is dict and type(pickle.loads(pickle.dumps(answer))) is dict


def _routes(routes):
    for route in routes:
        if hasattr(route, "original_router"):  # an included router (FastAPI includes them lazily)
            yield from _routes(route.original_router.routes)
        else:
            yield route


def test_every_sandbox_route_has_a_client_contract(tmp_path):
    app = create_app(SandboxSettings(tmp_path, ("k",), "http://127.0.0.1:1"))
    served = {(method, shape(route.path)) for route in _routes(app.routes)
              for method in getattr(route, "methods", None) or () if method not in {"HEAD", "OPTIONS"}}
    described = {(r.method, shape(r.template)) for r in ROUTES}
    assert served - described - NOT_JSON == set()
    assert described - served == set()


@pytest.fixture(scope="module")
def project(client) -> str:
    """A project of its own, so its pipeline list holds only what these tests put there."""
    return client.project.create({"name": unique("contract")}).id


@pytest.fixture
def proxy(sandbox):
    with FaultProxy(sandbox.url) as running:
        yield running


def test_a_resubmission_is_found_when_the_server_ignores_the_description_filter(client, sandbox, proxy, project,
                                                                               monkeypatch):
    for i in range(101):  # older than the submission: an oldest-first page of 100 would not reach it
        client.pipeline.create(entry_pipeline(unique(f"older-{i}")), project_id=project)
    proxy.ignore_filter("GET", r"^/pipelines$", "description")
    via_proxy = Ionworks(api_url=proxy.url, api_key=sandbox.api_key, project_id=project)
    prepared = prepare_pipeline(entry_pipeline(unique("nightly")))
    first = submit_prepared(via_proxy, prepared, project_id=project)
    for i in range(3):
        client.pipeline.create(entry_pipeline(unique(f"newer-{i}")), project_id=project)
    monkeypatch.setattr(pipeline_submission, "LOOKUP_PAGE_SIZE", 2)

    again = submit_prepared(via_proxy, prepared, project_id=project)
    assert (again.id, again.reattached) == (first.id, True)
    listed = client.pipeline.list(project_id=project, limit=1000)
    assert [p.id for p in listed if hash_tag(first.config_hash) in (p.description or "")] == [first.id]
    lookups = proxy.hits_for("GET", r"^/pipelines$")
    assert len(lookups) >= 3  # pages of two, newest first, until the page after the match


def test_fit_history_pages_to_the_end_when_the_server_ignores_the_description_filter(client, sandbox, proxy,
                                                                                    project, monkeypatch):
    cell = str(uuid.uuid4())
    for i in range(3):
        marker = f"[iwp-fit:{cell} test=RPT%20{i} at=- efc={i * 50} key={i:016x}]"
        client.pipeline.create(entry_pipeline(unique(f"fit-{i}")), project_id=project, description=marker)
        client.pipeline.create(entry_pipeline(unique(f"other-{i}")), project_id=project,
                               description=f"[iwp-fit:{uuid.uuid4()} test=RPT%20{i} at=- efc=- key={i:016x}]")
    proxy.ignore_filter("GET", r"^/pipelines$", "description")
    monkeypatch.setattr(history, "PAGE_SIZE", 2)

    records = list_fit_records(Ionworks(api_url=proxy.url, api_key=sandbox.api_key, project_id=project), cell)
    assert [r.test for r in records] == ["RPT 2", "RPT 1", "RPT 0"]  # newest first, this cell's only
    assert [r.equivalent_full_cycles for r in records] == [100.0, 50.0, 0.0]


def test_a_refused_processing_read_removes_the_upload(client, sandbox, proxy):
    _, instance_id = new_instance(client, "refused")
    proxy.inject("GET", r"^/cell_measurements/[^/]+$", "409", times=5)
    via_proxy = Ionworks(api_url=proxy.url, api_key=sandbox.api_key, project_id=sandbox.project_id)
    with pytest.raises(MeasurementProcessingFailed, match="injected fault") as caught:
        store_measurement(via_proxy, discharge_frame(), instance_id, "refused")
    assert caught.value.measurement_id and "removed" in str(caught.value)
    assert list(client.cell_measurement.list(instance_id)) == []  # nothing half-created


def test_reads_while_processing_leave_out_steps_and_time_series(client, sandbox):
    _, instance_id = new_instance(client, "background")
    frame = discharge_frame(points_per_step=INLINE_ROW_LIMIT // 3 + 1)  # processed in the background
    pending = client.cell_measurement.create(instance_id, {"measurement": {"name": "early"}, "time_series": frame},
                                             wait_for_processing=False)
    plain = client.session.get(f"{sandbox.url}/cell_measurements/{pending.id}", timeout=30)
    lean = client.get(f"/cell_measurements/{pending.id}?include_steps=false&include_time_series=false")
    if plain.status_code == 409:  # the read came while processing was in flight
        assert plain.json()["error_code"] == "NOT_READY" and "include_steps=false" in plain.json()["message"]
    else:  # processing had already finished: both reads answer
        assert plain.status_code == 200 and plain.json()["processing_status"] == "ready"
    assert lean["processing_status"] in {"pending", "running", "ready"}

    uploaded = upload_measurement.fn(frame, instance_id, "late")  # the task waits with the client's own reads
    assert client.cell_measurement.get(uploaded.id).processing_status == "ready"


def test_results_are_read_with_the_clients_typed_accessors(client):
    _, instance_id = new_instance(client, "typed")
    data = upload_measurement.fn(synthetic(), instance_id, "rpt").db_ref
    config = fit_pipeline(data, optimizer="dummy", name=unique("typed"))
    pipeline_id = client.pipeline.create(config).id
    client.pipeline.wait_for_completion(pipeline_id, timeout=120, poll_interval=0.2, verbose=False)

    result = read_result(client, pipeline_id)
    typed = client.pipeline.result(pipeline_id)
    assert set(result.elements) == set(typed.element_results) and set(result.fit_elements()) == {"fit"}
    fit = typed.element("fit")
    assert isinstance(fit, iws.ParameterEstimatorResult)
    assert (result.elements["fit"].cost, result.elements["fit"].parameter_values) == (fit.cost, fit.parameter_values)
    assert result.elements["fit"].result_type == type(fit).type
    job_id = next(e["job_id"] for e in client.get(f"/pipelines/{pipeline_id}/elements") if e["name"] == "fit")
    assert result.completed_at == client.job.get(job_id).updated_at
    assert result.parameter_values == typed.result["parameter_values"]


async def test_simulation_statuses_are_read_in_batches_the_service_accepts(client):
    ids = [str(uuid.uuid4()) for _ in range(STATUSES_CHUNK + 500)]
    with pytest.raises(IonworksError, match="at most 1000"):  # the sandbox refuses a larger batch, as the client says
        client.post("/simulations/statuses", {"simulation_ids": ids, "limit": len(ids)})
    reader = StatusReader(client)
    assert await SIMULATIONS.read(reader, None, ids, batched=True) == {}  # none exists; no batch refused


async def test_status_reads_follow_redirects_with_the_clients_timeout(sandbox):
    client = Ionworks(api_url=sandbox.url, api_key=sandbox.api_key, project_id=sandbox.project_id, timeout=7)
    reader = StatusReader(client)
    jobs = await reader.get_json("/jobs", "list jobs")  # the service redirects to /jobs/
    assert isinstance(jobs, list)
    assert reader._http is not None and reader._http.timeout.read == 7.0
    await reader._http.aclose()
