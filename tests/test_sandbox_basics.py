"""The sandbox answers health, identity and project calls the way the official client expects."""

import httpx
import pytest
from ionworks.errors import IonworksError


def test_healthz_needs_no_key(sandbox):
    assert httpx.get(f"{sandbox.url}/healthz").json()["status"] == "ok"


def test_whoami_and_default_project(client, sandbox):
    me = client.whoami()
    assert me["authorized_organization"]["id"]
    projects = httpx.get(f"{sandbox.url}/projects", headers={"X-API-Key": sandbox.api_key}).json()
    assert sandbox.project_id in [p["id"] for p in projects["items"]]  # other tests add projects of their own


def test_wrong_key_is_401_in_client_error_shape(sandbox):
    from ionworks import Ionworks

    with pytest.raises(IonworksError) as caught:
        Ionworks(api_url=sandbox.url, api_key="not-a-key").whoami()
    assert caught.value.status_code == 401
    assert "not-a-key" not in str(caught.value)


def test_other_org_cannot_see_project(sandbox):
    response = httpx.get(f"{sandbox.url}/projects/{sandbox.project_id}", headers={"X-API-Key": "other-key"})
    assert response.status_code == 404
    assert response.json()["error_code"] == "NOT_FOUND"


def test_bearer_token_is_accepted(sandbox):
    response = httpx.get(f"{sandbox.url}/users/me", headers={"Authorization": f"Bearer {sandbox.api_key}"})
    assert response.status_code == 200
