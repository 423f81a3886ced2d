"""Cancelling a flow run in Prefect cancels the Ionworks pipeline it was waiting on (served flow, real runner)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelling

from ionworks_prefect import upload_measurement

from .measurement_frames import new_instance, unique
from .pipeline_configs import fit_pipeline, synthetic

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")


def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except ObjectNotFound:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_cancelling_the_flow_run_cancels_the_remote_pipeline(client, tmp_path):
    _, instance_id = new_instance(client)
    data = upload_measurement.fn(synthetic(), instance_id, "rpt-1C").db_ref
    pipeline = client.pipeline.create(fit_pipeline(data, optimizer="slow", name=unique("cancel")))
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    served = subprocess.Popen([sys.executable, str(Path(__file__).with_name("served_wait_flow.py"))], env=env,
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with get_client(sync_client=True) as prefect:
            _until(lambda: prefect.read_deployment_by_name("wait-on-pipeline/cancel-test"), 60, "the deployment")
            run = run_deployment("wait-on-pipeline/cancel-test", parameters={"pipeline_id": pipeline.id}, timeout=0)
            _until(lambda: prefect.read_flow_run(run.id).state.is_running(), 60, "the flow run to start")
            _until(lambda: client.pipeline.get(pipeline.id).status == "running", 60, "the pipeline to run")
            time.sleep(2.0)  # the wait is polling
            prefect.set_flow_run_state(run.id, Cancelling())
            assert _until(lambda: client.pipeline.get(pipeline.id).status == "canceled", 60, "the remote cancel")
            _until(lambda: prefect.read_flow_run(run.id).state.is_final(), 60, "the flow run to end")
            assert prefect.read_flow_run(run.id).state.type.value == "CANCELLED"
    finally:
        served.terminate()
        served.wait(30)
