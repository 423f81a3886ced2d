"""The sandbox refuses what a careful Ionworks server refuses: other organizations' ids, keys that leave their
object, over-limit bodies, abandoned or replayed uploads, unknown parameters and over-limit inline data.

Driven over real HTTP: the official client where it can express the request, raw httpx where the attack needs it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from pathlib import Path

import httpx
import ionworks_schema as iws
import pytest
from ionworks import Ionworks
from ionworks.errors import IonworksError

from ionworks_prefect.local_sandbox import LocalSandbox

from .measurement_frames import discharge_frame, new_instance, parquet_bytes, unique
from .protocols import ONE_C_DISCHARGE

DN = "Negative particle diffusivity [m2.s-1]"
SMALL_KEY, SMALL_OTHER_KEY = "small-key", "small-other-key"


@pytest.fixture(scope="module")
def small_sandbox(tmp_path_factory):
    """A sandbox of two organizations with a 1 MB body limit, 2 s upload lifetime and 1 s download links."""
    extra = ["--max-body-mb", "1", "--upload-ttl-seconds", "2", "--download-url-ttl-seconds", "1"]
    keys = [SMALL_KEY, f"small-other:{SMALL_OTHER_KEY}"]
    with LocalSandbox(tmp_path_factory.mktemp("strict") / "data", keys, workers=1, extra_args=extra) as small:
        yield small


@pytest.fixture(scope="module")
def small_client(small_sandbox):
    return Ionworks(api_url=small_sandbox.url, api_key=SMALL_KEY, project_id=small_sandbox.project_id)


def _error(call) -> IonworksError:
    with pytest.raises(IonworksError) as caught:
        call()
    return caught.value


def _initiate(client, instance_id: str, name: str, **measurement) -> dict:
    return client.post(
        f"/cell_instances/{instance_id}/cell_measurements/initiate-upload",
        {"measurement": {"name": name, **measurement}},
    )


def _series_url(started: dict) -> str:
    return next(u for u in started["uploads"] if u["filename"] == "time_series.parquet")["signed_url"]


def _confirm(client, instance_id: str, measurement_id: str, name: str, **measurement) -> dict:
    return client.post(
        f"/cell_measurements/{measurement_id}/confirm-upload",
        {"cell_instance_id": instance_id, "measurement": {"name": name, **measurement}, "measurement_type": "time_series"},
    )


def _objects(sandbox: LocalSandbox) -> Path:
    return sandbox.data_dir / "objects"


# ---- organization isolation ---------------------------------------------------------------------------


def test_a_parameterized_model_cannot_be_attached_to_another_organizations_cell(client, other_org_client):
    spec_id, _ = new_instance(client, "owned")
    error = _error(lambda: other_org_client.parameterized_model.create(spec_id, {"name": "intruder", "model_id": "SPMe"}))
    assert (error.status_code, error.error_code) == (404, "NOT_FOUND")
    assert spec_id in error.message
    mine = client.parameterized_model.create(spec_id, {"name": unique("own"), "model_id": "SPMe"})
    assert (mine.cell_specification_id, mine.project_id) == (spec_id, client.cell_spec.get(spec_id).project_id)


def test_another_organizations_model_reads_as_unknown_when_used_as_a_base(client, other_org_client):
    stored = client.parameterized_model.create(None, {"name": unique("base"), "model_id": "SPM"})
    project_id = other_org_client.get("/users/me")["default_project_id"]

    def create(model_id: str):
        return other_org_client.parameterized_model.create(None, {"name": "x", "model_id": model_id, "project_id": project_id})

    theirs, unknown = _error(lambda: create(stored.id)), _error(lambda: create("no-such-id"))
    assert (theirs.status_code, theirs.error_code) == (unknown.status_code, unknown.error_code) == (422, "UNSUPPORTED")


@pytest.mark.slow
def test_a_simulation_cannot_join_another_organizations_study(client, other_org_client, sandbox):
    study = client.study.create({"name": unique("study")})
    other_project = other_org_client.get("/users/me")["default_project_id"]
    config = {
        "parameterized_model": "spm-chen2020",
        "protocol_experiment": {"protocol": ONE_C_DISCHARGE, "name": "1C"},
        "project_id": other_project,
        "study_id": study.id,
    }
    error = _error(lambda: other_org_client.simulation.protocol(config))
    assert (error.status_code, error.error_code) == (404, "NOT_FOUND") and study.id in error.message
    own = other_org_client.study.create({"name": unique("own")}, project_id=other_project)
    created = other_org_client.simulation.protocol({**config, "study_id": own.id})
    assert other_org_client.simulation.get(created.simulation_id)["study_id"] == own.id


# ---- signed storage URLs ------------------------------------------------------------------------------


def _old_style_token(sandbox: LocalSandbox, key: str) -> str:
    """A token signed with the sandbox's own secret over ``key`` alone: a leaked signer."""
    secret = (sandbox.data_dir / "secret").read_text().encode()
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def test_a_dotted_key_cannot_reach_another_measurement(client, sandbox):
    _, instance_id = new_instance(client)
    frame = discharge_frame()
    victim = client.cell_measurement.create(instance_id, {"measurement": {"name": unique("victim")}, "time_series": frame})
    pending = _initiate(client, instance_id, unique("pending"))["measurement_id"]
    key = f"{pending}/../{victim.id}/time_series.parquet"
    url = f"{sandbox.url}/storage/{pending}/%2E%2E/{victim.id}/time_series.parquet?token={_old_style_token(sandbox, key)}"
    response = httpx.put(url, content=b"overwritten")
    assert (response.status_code, response.json()["error_code"]) == (400, "BAD_REQUEST")
    assert "storage key" in response.json()["message"]
    assert client.cell_measurement.time_series(victim.id).equals(frame)
    got = httpx.get(url)
    assert got.status_code == 400


def test_an_upload_link_is_not_a_download_link(client):
    _, instance_id = new_instance(client)
    name = unique("write-only")
    started = _initiate(client, instance_id, name)
    url = _series_url(started)
    assert httpx.put(url, content=parquet_bytes(discharge_frame())).status_code == 200
    _confirm(client, instance_id, started["measurement_id"], name)
    response = httpx.get(url)
    assert (response.status_code, response.json()["error_code"]) == (403, "FORBIDDEN")


def test_an_upload_link_writes_only_its_own_file(client, sandbox):
    _, instance_id = new_instance(client)
    started = _initiate(client, instance_id, unique("one-file"))
    mid = started["measurement_id"]
    url = _series_url(started).replace("time_series.parquet", "cycles.parquet")
    assert httpx.put(url, content=b"x").status_code == 403
    forged = f"{sandbox.url}/storage/{mid}/extra.bin?token={_old_style_token(sandbox, f'{mid}/extra.bin')}"
    assert httpx.put(forged, content=b"x").status_code in (403, 409)
    assert not (_objects(sandbox) / mid / "extra.bin").exists()


def test_download_links_expire(small_client):
    _, instance_id = new_instance(small_client)
    frame = discharge_frame(points_per_step=10)
    mid = small_client.cell_measurement.create(instance_id, {"measurement": {"name": "m"}, "time_series": frame}).id
    redirect = httpx.get(
        f"{small_client.api_url}/cell_measurements/{mid}/time_series/download", headers={"X-API-Key": SMALL_KEY}
    )
    assert redirect.status_code == 307
    link = redirect.headers["location"]
    assert httpx.get(link).status_code == 200
    time.sleep(2.5)
    expired = httpx.get(link)
    assert (expired.status_code, expired.json()["error_code"]) == (403, "FORBIDDEN")
    assert small_client.cell_measurement.time_series(mid).equals(frame)  # a fresh link works


# ---- body limits --------------------------------------------------------------------------------------


def _chunks(total: int, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def test_an_over_limit_chunked_json_body_is_413(small_sandbox):
    def body():
        yield b'{"name": "chunked", "notes": "'
        yield from (c.replace(b" ", b"x") for c in _chunks(1_500_000))
        yield b'"}'

    response = httpx.post(
        f"{small_sandbox.url}/cell_specifications",
        content=body(),
        headers={"X-API-Key": SMALL_KEY, "Content-Type": "application/json"},
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert (response.status_code, response.json()["error_code"]) == (413, "PAYLOAD_TOO_LARGE")


def test_an_over_limit_chunked_upload_is_413_and_leaves_no_file(small_client, small_sandbox):
    _, instance_id = new_instance(small_client)
    started = _initiate(small_client, instance_id, unique("big"))
    response = httpx.put(_series_url(started), content=_chunks(1_500_000))
    assert (response.status_code, response.json()["error_code"]) == (413, "PAYLOAD_TOO_LARGE")
    folder = _objects(small_sandbox) / started["measurement_id"]
    assert not folder.exists() or list(folder.iterdir()) == []


# ---- API description ----------------------------------------------------------------------------------


def test_the_api_description_needs_a_key(sandbox):
    for path in ("/openapi.json", "/docs", "/redoc"):
        response = httpx.get(f"{sandbox.url}{path}")
        assert response.status_code in (401, 404), path
        assert response.json()["error_code"] in ("UNAUTHORIZED", "NOT_FOUND")
    described = httpx.get(f"{sandbox.url}/openapi.json", headers={"X-API-Key": sandbox.api_key})
    assert described.status_code == 200 and "/cell_specifications" in described.json()["paths"]


# ---- upload lifetime ----------------------------------------------------------------------------------


def test_an_abandoned_upload_expires_with_its_file(small_client, small_sandbox):
    _, instance_id = new_instance(small_client)
    name = unique("abandoned")
    started = _initiate(small_client, instance_id, name)
    mid = started["measurement_id"]
    assert httpx.put(_series_url(started), content=parquet_bytes(discharge_frame())).status_code == 200
    folder = _objects(small_sandbox) / mid
    assert folder.is_dir()
    deadline = time.monotonic() + 10
    while folder.exists() and time.monotonic() < deadline:  # swept without any further request
        time.sleep(0.2)
    assert not folder.exists()
    assert httpx.put(_series_url(started), content=b"late").status_code in (403, 409)
    error = _error(lambda: _confirm(small_client, instance_id, mid, name))
    assert (error.status_code, error.error_code) == (404, "NOT_FOUND")
    assert not folder.exists()


def _confirm_at_once(sandbox: LocalSandbox, instance_id: str, measurement_id: str, name: str, times: int) -> list:
    """``times`` confirms of one upload released together, each on its own connection: ``[(status, id)]``."""
    body = {"cell_instance_id": instance_id, "measurement": {"name": name}, "measurement_type": "time_series"}
    ready = threading.Barrier(times)
    answers: list[tuple[int, str | None]] = []

    def confirm() -> None:
        with httpx.Client(base_url=sandbox.url, headers={"X-API-Key": sandbox.api_key}, timeout=60) as http:
            http.get("/healthz")
            ready.wait()
            response = http.post(f"/cell_measurements/{measurement_id}/confirm-upload", json=body)
            answers.append((response.status_code, response.json().get("id")))

    threads = [threading.Thread(target=confirm) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_concurrent_confirms_create_one_measurement_and_keep_its_data(client, sandbox):
    _, instance_id = new_instance(client)
    frame = discharge_frame()
    for _ in range(6):  # the race lost confirmed data in about half of such rounds
        name = unique("raced")
        started = _initiate(client, instance_id, name)
        mid = started["measurement_id"]
        assert httpx.put(_series_url(started), content=parquet_bytes(frame)).status_code == 200
        assert _confirm_at_once(sandbox, instance_id, mid, name, times=8) == [(200, mid)] * 8
        assert client.cell_measurement.get(mid).processing_status == "ready"
        assert client.cell_measurement.time_series(mid).equals(frame)
    assert len(list(client.cell_measurement.list(instance_id))) == 6


# ---- documented client limits: tags -------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags, says",
    [([f"t{i}" for i in range(51)], "at most 50 tags"), (["x" * 51], "longer than 50 characters")],
    ids=["51 tags", "51 characters"],
)
def test_bad_tags_are_refused_and_leave_nothing_behind(client, sandbox, tags, says):
    _, instance_id = new_instance(client)
    before = set(_objects(sandbox).iterdir())
    frame = discharge_frame(points_per_step=10)
    error = _error(
        lambda: client.cell_measurement.create(
            instance_id, {"measurement": {"name": unique("tagged"), "tags": tags}, "time_series": frame}
        )
    )
    assert (error.status_code, error.error_code, error.data["detail"]["field"]) == (400, "BAD_REQUEST", "tags")
    assert says in error.message
    assert set(_objects(sandbox).iterdir()) == before
    assert list(client.cell_measurement.list(instance_id)) == []

    refused = _error(lambda: _initiate(client, instance_id, unique("tagged"), tags=tags))
    assert (refused.status_code, refused.data["detail"]["field"]) == (400, "tags")
    assert set(_objects(sandbox).iterdir()) == before


# ---- submission-time pipeline checks ------------------------------------------------------------------


def _inline(rows: int) -> dict:
    frame = discharge_frame(points_per_step=rows // 3 + 1).head(rows)
    return {name: frame[name].to_list() for name in ("Time [s]", "Current [A]", "Voltage [V]")}


def _fit(parameter: str, data: dict | str, *, entry: dict | None = None) -> dict:
    elements = {}
    if entry is not None:
        elements["known"] = {"element_type": "entry", "values": entry}
    elements["fit"] = {
        "element_type": "data_fit",
        "objectives": {"1C": {"type": "CurrentDriven", "data": data, "options": {"model": {"type": "SPMe"}}}},
        "parameters": {parameter: {"initial_value": 2e-14, "bounds": [1e-14, 1e-13]}},
        "optimizer": {"type": "DummyOptimizer"},
    }
    return {"elements": elements, "name": unique("checked")}


def _pipelines(client) -> set[str]:
    return {p.id for p in client.pipeline.list()}


def test_an_unknown_fit_parameter_is_422_at_submission_with_the_closest_names(client):
    before = _pipelines(client)
    typo = "Negative particle diffusivity [m2.s]"
    error = _error(lambda: client.post("/pipelines", _fit(typo, _inline(300))))
    assert (error.status_code, error.error_code) == (422, "CONFIGURATION_ERROR")
    detail = error.data["detail"]
    assert detail["field"] == f"elements.fit.parameters.{typo}"
    assert detail["value"] == typo and DN in detail["closest"]
    assert typo in error.message and DN in error.message and "SPMe" in error.message
    assert _pipelines(client) == before


def test_a_fit_parameter_defined_by_an_earlier_element_is_accepted(client):
    custom = "Negative particle diffusivity scale"
    submitted = client.post("/pipelines", _fit(custom, _inline(300), entry={custom: 3e-14}))
    assert submitted["id"] in _pipelines(client)
    error = _error(lambda: client.post("/pipelines", _fit(custom, _inline(300))))
    assert error.status_code == 422 and custom in error.message


def test_more_than_1000_inline_rows_is_422_naming_the_field(client):
    before = _pipelines(client)
    error = _error(lambda: client.post("/pipelines", _fit(DN, _inline(1001))))
    assert (error.status_code, error.error_code) == (422, "CONFIGURATION_ERROR")
    assert error.data["detail"] == {
        "field": "elements.fit.objectives.1C.data", "n_rows": 1001, "max_rows": 1000
    }  # fmt: skip
    assert "1001 rows" in error.message and "db:<measurement_id>" in error.message
    wrapped = _fit(DN, {"data": _inline(1001), "time_range": {"start": 0, "end": 100}})
    error = _error(lambda: client.post("/simple_pipelines", {"config": {"elements": wrapped["elements"]}}))
    assert error.status_code == 422 and error.data["detail"]["field"] == "elements.fit.objectives.1C.data.data"
    assert _pipelines(client) == before
    assert client.post("/pipelines", _fit(DN, _inline(1000)))["id"] in _pipelines(client)


def test_inline_rows_referenced_from_an_entry_are_counted(client):
    config = _fit(DN, "known.measured", entry={"measured": _inline(1200)})
    error = _error(lambda: client.post("/pipelines", config))
    assert error.status_code == 422 and error.data["detail"]["field"] == "elements.known.values.measured"


def test_the_official_client_surfaces_the_parameter_check(client):
    pipeline = iws.Pipeline(
        {
            "fit": iws.DataFit(
                objectives={"1C": iws.objectives.CurrentDriven(data_input=_inline(300), options={"model": {"type": "SPM"}})},
                parameters={"Negative particle radius": iws.Parameter("Negative particle radius", initial_value=5e-6,
                                                                     bounds=(1e-6, 1e-5))},  # fmt: skip
                optimizer=iws.optimizers.DummyOptimizer(),
            )
        },
        name=unique("typo"),
    )
    error = _error(lambda: client.pipeline.create(pipeline))
    assert error.status_code == 422 and "Negative particle radius [m]" in error.data["detail"]["closest"]
    assert json.dumps(error.data)  # the body stays the client's {"error_code", "message", "detail"}


# ---- more ids from the body ---------------------------------------------------------------------------


def _template(client, project_id: str) -> str:
    return client.post(
        "/experiment_templates", {"name": unique("protocol"), "source_protocol": ONE_C_DISCHARGE, "project_id": project_id}
    )["id"]


def test_a_measurement_takes_only_a_protocol_of_its_own_project(small_client, small_sandbox):
    client = small_client
    other_org_client = Ionworks(api_url=small_sandbox.url, api_key=SMALL_OTHER_KEY)
    _, instance_id = new_instance(client)
    frame = discharge_frame(points_per_step=10)
    mid = client.cell_measurement.create(instance_id, {"measurement": {"name": unique("m")}, "time_series": frame}).id
    theirs = _template(other_org_client, other_org_client.get("/users/me")["default_project_id"])
    error = _error(lambda: client.cell_measurement.update(mid, {"protocol_id": theirs}))
    assert (error.status_code, error.error_code) == (404, "NOT_FOUND") and theirs in error.message
    elsewhere = _template(client, client.post("/projects", {"name": unique("project")})["id"])
    error = _error(lambda: client.cell_measurement.update(mid, {"protocol_id": elsewhere}))
    assert (error.status_code, error.data["detail"]["field"]) == (400, "protocol_id")
    own = _template(client, small_sandbox.project_id)
    assert client.cell_measurement.update(mid, {"protocol_id": own}).protocol_id == own
    assert client.cell_measurement.update(mid, {"protocol_id": None}).protocol_id is None
    name = unique("confirmed")
    error = _error(
        lambda: client.cell_measurement.create(
            instance_id, {"measurement": {"name": name, "protocol_id": theirs}, "time_series": frame}
        )
    )
    assert error.status_code == 404 and name not in {m.name for m in client.cell_measurement.list(instance_id)}


def test_simulation_statuses_refuse_more_ids_than_the_documented_page(client):
    error = _error(lambda: client.post("/simulations/statuses", {"simulation_ids": [f"s{i}" for i in range(1001)]}))
    assert (error.status_code, error.data["detail"]["field"]) == (422, "simulation_ids")
    error = _error(lambda: client.post("/simulations/statuses", {"simulation_ids": 7}))
    assert error.status_code == 422
    assert client.post("/simulations/statuses", {"simulation_ids": ["none"] * 1000, "limit": 1000}) == []


@pytest.mark.parametrize(
    "doe",
    [
        {"sampling": "random", "count": 10**9, "rows": [{"type": "range", "name": "x", "min": 0, "max": 1}]},
        {"sampling": "grid", "rows": [{"type": "range", "name": "x", "min": 0, "max": 1, "count": 10**5},
                                      {"type": "discrete", "name": "y", "values": [1.0, 2.0]}]},
    ],
    ids=["random", "grid"],
)
def test_a_batch_expanding_past_the_limit_is_422_before_anything_runs(client, doe):
    config = {
        "parameterized_model": "spm-chen2020",
        "protocol_experiment": {"protocol": ONE_C_DISCHARGE, "name": unique("sweep")},
        "design_parameters_doe": doe,
    }
    started = time.monotonic()
    error = _error(lambda: client.simulation.protocol_batch(config))
    assert (error.status_code, error.data["detail"]["field"]) == (422, "design_parameters_doe")
    assert error.data["detail"]["max_count"] == 10_000 and time.monotonic() - started < 10
