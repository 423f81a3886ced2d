"""Cell specifications and instances through the official client against the live sandbox."""

from __future__ import annotations

import json

import httpx
import pytest
from ionworks import Ionworks
from ionworks.errors import IonworksError

from ionworks_prefect.local_sandbox import LocalSandbox

from .measurement_frames import discharge_frame, new_instance, unique


@pytest.fixture(scope="module")
def small_sandbox(tmp_path_factory):
    """A second sandbox with a 1 MB body limit, for tests that add projects or need the limit."""
    with LocalSandbox(
        tmp_path_factory.mktemp("small") / "data", ["small-key"], workers=1, extra_args=["--max-body-mb", "1"]
    ) as small:
        yield small


def _status(call) -> int:
    with pytest.raises(IonworksError) as caught:
        call()
    return caught.value.status_code


def test_spec_crud_defaults_to_the_callers_project(client, sandbox):
    name = unique("spec")
    spec = client.cell_spec.create(
        {"name": name, "form_factor": "pouch", "ratings": {"capacity": {"value": 5, "unit": "A.h"}}}
    )
    assert spec.project_id == sandbox.project_id
    assert client.cell_spec.get(spec.id).ratings == {"capacity": {"value": 5, "unit": "A.h"}}

    updated = client.cell_spec.update(spec.id, {"manufacturer": "Acme", "name": name + "-v2"})
    assert (updated.name, updated.manufacturer, updated.form_factor) == (name + "-v2", "Acme", "pouch")
    assert [s.id for s in client.cell_spec.list(name_exact=name + "-v2")] == [spec.id]

    client.cell_spec.delete(spec.id)
    assert _status(lambda: client.cell_spec.get(spec.id)) == 404
    assert list(client.cell_spec.list(name_exact=name + "-v2")) == []


def test_spec_list_filters_order_and_pages(client, sandbox):
    tag = unique("lst")
    ids = [
        client.cell_spec.create({"name": f"{tag}-{i}", "form_factor": "cyl" if i % 2 else "pouch"}).id for i in range(3)
    ]
    by_name = client.cell_spec.list(name=tag, order_by="name", order="asc")
    assert [s.id for s in by_name] == ids
    assert [s.id for s in client.cell_spec.list(name=tag.upper(), form_factor="cyl")] == [ids[1]]
    page = client.cell_spec.list(name=tag, order_by="name", order="desc", limit=1, offset=1)
    assert ([s.id for s in page], page.total) == ([ids[1]], 3)
    newer = client.cell_spec.list(name=tag, created_after=client.cell_spec.get(ids[0]).created_at)
    assert {s.id for s in newer} == set(ids[1:])
    assert len(client.cell_spec.list(name=tag, project_id=sandbox.project_id)) == 3


def test_duplicate_spec_name_conflicts_per_project_and_create_or_get_returns_it(client):
    name = unique("dup-spec")
    first = client.cell_spec.create({"name": name})
    with pytest.raises(IonworksError) as caught:
        client.cell_spec.create({"name": name})
    assert (caught.value.status_code, caught.value.error_code) == (409, "CONFLICT")
    assert caught.value.data["detail"]["existing_id"] == first.id
    assert client.cell_spec.create_or_get({"name": name}).id == first.id
    assert (
        _status(lambda: client.cell_spec.update(client.cell_spec.create({"name": unique("x")}).id, {"name": name}))
        == 409
    )


def test_spec_names_are_unique_per_project_not_per_organization(small_sandbox):
    client = Ionworks(api_url=small_sandbox.url, api_key="small-key", project_id=small_sandbox.project_id)
    first = client.cell_spec.create({"name": "shared"})
    other_project = client.project.create({"name": "second project"})
    elsewhere = client.cell_spec.create({"name": "shared", "project_id": other_project.id})
    assert elsewhere.id != first.id and elsewhere.project_id == other_project.id
    assert [s.id for s in client.cell_spec.list(name_exact="shared", project_id=other_project.id)] == [elsewhere.id]
    assert client.cell_spec.create_or_get({"name": "shared"}).id == first.id


def test_related_specs_share_a_component_material(client):
    material = unique("graphite")
    base = client.cell_spec.create({"name": unique("rel"), "anode": {"material_id": material}})
    sibling = client.cell_spec.create({"name": unique("rel"), "anode": {"material_id": material}})
    client.cell_spec.create({"name": unique("rel"), "cathode": {"material_id": material}})
    assert [s.id for s in client.cell_spec.related_specs(base.id, slots=["anode"])] == [sibling.id]
    assert len(client.cell_spec.related_specs(base.id)) == 2


def test_instance_crud_duplicates_and_batch_rules(client):
    spec = client.cell_spec.create({"name": unique("inst-spec")})
    name = unique("cell")
    instance = client.cell_instance.create(spec.id, {"name": name, "notes": "first"})
    assert (instance.cell_specification_id, instance.batch_id) == (spec.id, None)
    assert client.cell_instance.get(instance.id).notes == "first"

    with pytest.raises(IonworksError) as caught:
        client.cell_instance.create(spec.id, {"name": name})
    assert caught.value.data["detail"]["existing_id"] == instance.id
    assert client.cell_instance.create_or_get(spec.id, {"name": name}).id == instance.id
    assert [i.id for i in client.cell_instance.list(spec.id, name_exact=name)] == [instance.id]

    with pytest.raises(ValueError, match="batch"):
        client.cell_instance.create(spec.id, {"name": unique("cell"), "batch": "2025-Q1"})
    assert (
        _status(lambda: client.cell_instance.create(spec.id, {"name": unique("cell"), "batch_id": "no-such-batch"}))
        == 400
    )

    second = client.cell_instance.create(spec.id, {"name": unique("cell")})
    assert _status(lambda: client.cell_instance.update(second.id, {"name": name})) == 409
    assert client.cell_instance.update(instance.id, {"notes": "second"}).notes == "second"
    assert _status(lambda: client.cell_instance.update(instance.id, {"cell_specification_id": "elsewhere"})) == 400

    client.cell_instance.delete(second.id)
    assert [i.id for i in client.cell_instance.list(spec.id)] == [instance.id]


def test_deleting_a_spec_removes_instances_measurements_and_files(client, sandbox):
    spec_id, instance_id = new_instance(client, "cascade")
    measurement = client.cell_measurement.create(
        instance_id, {"measurement": {"name": "rpt"}, "time_series": discharge_frame()}
    )
    files = sandbox.data_dir / "objects" / measurement.id
    assert (files / "time_series.parquet").is_file() and (files / "steps.parquet").is_file()

    client.cell_spec.delete(spec_id)
    assert _status(lambda: client.cell_instance.get(instance_id)) == 404
    assert _status(lambda: client.cell_measurement.get(measurement.id)) == 404
    assert not files.exists()


def test_unknown_ids_and_other_organizations_get_404(client, other_org_client, sandbox):
    spec_id, instance_id = new_instance(client, "private")
    for call in (
        lambda: other_org_client.cell_spec.get(spec_id),
        lambda: other_org_client.cell_spec.update(spec_id, {"name": "stolen"}),
        lambda: other_org_client.cell_spec.delete(spec_id),
        lambda: other_org_client.cell_instance.get(instance_id),
        lambda: other_org_client.cell_instance.list(spec_id),
        lambda: other_org_client.cell_instance.create(spec_id, {"name": "intruder"}),
        lambda: other_org_client.cell_instance.delete(instance_id),
        lambda: other_org_client.cell_spec.create({"name": "x", "project_id": sandbox.project_id}),
        lambda: client.cell_spec.get("00000000-0000-0000-0000-000000000000"),
        lambda: client.cell_instance.get("no-such-instance"),
    ):
        assert _status(call) == 404
    assert spec_id not in {s.id for s in other_org_client.cell_spec.list()}
    assert client.cell_instance.get(instance_id).cell_specification_id == spec_id


def test_missing_or_wrong_key_is_401(sandbox):
    assert _status(lambda: Ionworks(api_url=sandbox.url, api_key="wrong-key").cell_spec.list()) == 401
    response = httpx.get(f"{sandbox.url}/cell_specifications")
    assert (response.status_code, response.json()["error_code"]) == (401, "UNAUTHORIZED")


def test_gzip_body_over_512_kib_is_accepted(client, sandbox):
    notes = "".join(f"{i:07d}" for i in range(90_000))  # 630 kB: the client gzips bodies of 512 KiB and more
    spec = client.cell_spec.create({"name": unique("big"), "notes": notes})
    assert client.cell_spec.get(spec.id).notes == notes
    assert client.cell_spec.update(spec.id, {"notes": notes[::-1]}).notes == notes[::-1]


def test_body_over_the_configured_limit_is_413(small_sandbox):
    limited = Ionworks(api_url=small_sandbox.url, api_key="small-key", project_id=small_sandbox.project_id)
    assert limited.cell_spec.create({"name": "fits", "notes": "x" * 600_000}).notes == "x" * 600_000
    with pytest.raises(IonworksError) as caught:
        limited.cell_spec.create({"name": "too big", "notes": "x" * 2_000_000})  # gzipped to a few kB
    assert (caught.value.status_code, caught.value.error_code) == (413, "PAYLOAD_TOO_LARGE")
    plain = json.dumps({"name": "plain", "notes": "y" * 1_500_000})
    response = httpx.post(
        f"{small_sandbox.url}/cell_specifications",
        content=plain,
        headers={"X-API-Key": "small-key", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert not {"too big", "plain"} & {s.name for s in limited.cell_spec.list()}
