"""IonworksCredentials: environment fallback, client configuration, block registration, secrets kept secret."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from prefect import flow

from ionworks_prefect import IonworksCredentials, IonworksRequestError
from ionworks_prefect._calls import call
from ionworks_prefect.credentials import DEFAULT_API_URL, resolve_credentials

SECRET = "sk-live-0123456789abcdef"


def test_unset_fields_fall_back_to_the_client_environment(monkeypatch):
    monkeypatch.setenv("IONWORKS_API_KEY", "env-key")
    monkeypatch.setenv("IONWORKS_API_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("IONWORKS_PROJECT_ID", "env-project")
    monkeypatch.setenv("IONWORKS_ORGANIZATION_ID", "env-org")
    client = IonworksCredentials().get_client()
    assert (client.api_key, client.api_url, client.project_id, client.organization_id) == (
        "env-key", "http://127.0.0.1:9", "env-project", "env-org")
    assert client.session.headers["X-API-Key"] == "env-key"


def test_fields_beat_the_environment_and_a_token_is_sent_as_bearer(monkeypatch):
    monkeypatch.setenv("IONWORKS_API_KEY", "env-key")
    client = IonworksCredentials(token=SECRET, api_url="http://127.0.0.1:9", project_id="p", timeout=3).get_client()
    assert client.session.headers["Authorization"] == f"Bearer {SECRET}"
    assert "X-API-Key" not in client.session.headers
    assert (client.project_id, client.request_timeout) == ("p", 3)


def test_default_api_url_is_production_without_environment(monkeypatch):
    monkeypatch.delenv("IONWORKS_API_URL", raising=False)
    assert IonworksCredentials(api_key="k").api_url == DEFAULT_API_URL


def test_block_metadata_follows_prefect_conventions():
    assert IonworksCredentials._block_type_name == "Ionworks Credentials"
    assert IonworksCredentials._documentation_url and IonworksCredentials._logo_url
    assert 'IonworksCredentials.load("BLOCK_NAME")' in IonworksCredentials.__doc__
    for name, field in IonworksCredentials.model_fields.items():
        assert field.description and field.description.endswith("."), name
    schema = IonworksCredentials._to_block_schema()
    assert set(schema.fields["secret_fields"]) == {"api_key", "token"}


def test_secrets_stay_out_of_repr_logs_and_errors(sandbox, caplog):
    creds = IonworksCredentials(api_key=SECRET, api_url=sandbox.url)
    assert SECRET not in repr(creds) and SECRET not in str(creds)
    assert SECRET not in creds.model_dump_json()
    with caplog.at_level(logging.DEBUG):
        client = creds.get_client()
        with pytest.raises(IonworksRequestError) as caught:
            call("who am I", client.whoami)  # the sandbox does not know this key
    assert caught.value.status_code == 401
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    assert SECRET not in caplog.text


def test_saved_block_is_loaded_by_name(prefect_server, sandbox):
    IonworksCredentials(api_key=sandbox.api_key, api_url=sandbox.url, project_id=sandbox.project_id).save(
        "sandbox-test", overwrite=True)
    loaded = resolve_credentials("sandbox-test")
    assert loaded.api_key.get_secret_value() == sandbox.api_key
    assert loaded.get_client().whoami()["id"]

    @flow
    def whoami_from_block() -> str:
        return resolve_credentials("sandbox-test").get_client().whoami()["id"]

    assert whoami_from_block() == loaded.get_client().whoami()["id"]


def test_blocks_register_from_the_module(prefect_server):
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}  # the session's server, not a new one
    result = subprocess.run([sys.executable, "-m", "prefect", "block", "register", "-m", "ionworks_prefect"],
                            capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in ("Ionworks Credentials", "Ionworks Pipeline", "Ionworks Simulation"))


def test_an_api_key_and_a_token_together_are_refused_without_echoing_either():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="API key or a bearer token, not both") as caught:
        IonworksCredentials(api_key="key-secret-1", token="token-secret-2")
    assert "secret" not in str(caught.value)
