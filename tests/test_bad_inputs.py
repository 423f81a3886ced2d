"""Every row of the bad-input catalog (``tests/bad_inputs.py``) against the live sandbox over HTTP.

Each row must raise its typed error naming what is wrong, leave nothing on the server (the sandbox's records are
counted by kind before and after), and fail in under a second without a retry (every catalogued error is
permanent).
"""

from __future__ import annotations

import logging
import time

import pytest

from ionworks_prefect import IonworksCredentials, IonworksPrefectError

from . import bad_inputs
from .bad_inputs import CATALOG, DOC, Env, render, write_files
from .conftest import OTHER_ORG_KEY
from .measurement_frames import new_instance
from .pipeline_configs import entry_pipeline
from .sandbox_records import records

pytestmark = pytest.mark.usefixtures("prefect_server")
@pytest.fixture(scope="module")
def env(sandbox, client, tmp_path_factory) -> Env:
    folder = tmp_path_factory.mktemp("bad-inputs")
    write_files(folder)
    _, instance_id = new_instance(client, "catalog")
    pipeline = client.pipeline.create(entry_pipeline().to_config())
    credentials = IonworksCredentials(api_key=sandbox.api_key, api_url=sandbox.url, project_id=sandbox.project_id)
    other = IonworksCredentials(api_key=OTHER_ORG_KEY.rpartition(":")[2], api_url=sandbox.url)
    bad_inputs.synthetic(period_s=1.0)  # build the cached synthetic data before any row is timed
    return Env(credentials=credentials, instance_id=instance_id, files=folder, other_org_credentials=other,
               pipeline_id=pipeline.id)


def test_the_catalog_is_large_and_its_ids_are_unique():
    assert len(CATALOG) >= 100
    assert len({row.id for row in CATALOG}) == len(CATALOG)
    assert {row.area for row in CATALOG} >= {"frame", "cycler file", "pipeline", "protocol", "simulation", "id",
                                             "credentials"}


def test_the_rendered_catalog_is_current():
    assert DOC.read_text() == render(), "run: python -m tests.bad_inputs"


@pytest.mark.parametrize("row", CATALOG, ids=[row.id for row in CATALOG])
def test_bad_input(row, env, sandbox, caplog):
    before = records(sandbox)
    with caplog.at_level(logging.WARNING, logger="ionworks_prefect"):
        started = time.perf_counter()
        with pytest.raises(row.error) as caught:
            row.run(env)
        elapsed = time.perf_counter() - started
    assert isinstance(caught.value, IonworksPrefectError)
    assert row.says in str(caught.value), f"{type(caught.value).__name__}: {caught.value}"
    assert [r.getMessage() for r in caplog.records if "; retry " in r.getMessage()] == []
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    assert records(sandbox) == before
