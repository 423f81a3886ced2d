"""Multi-step operations leave nothing behind when a later step fails, and a lost answer never starts a second
upload or a second study; a re-run says it reattached. Live sandbox, real HTTP, faults from ``tests/fault_proxy``."""

from __future__ import annotations

import logging

import pytest
from prefect import flow

from ionworks_prefect import (
    IonworksRequestError,
    assign_to_study,
    submit_pipeline,
    upload_measurement,
)

from .measurement_frames import discharge_frame, new_instance, unique
from .pipeline_configs import DN, entry_pipeline, fit_pipeline, synthetic
from .sandbox_records import records

pytestmark = pytest.mark.usefixtures("prefect_server")
QUICK = {"retry_delay_seconds": [0.1, 0.2, 0.4], "retry_jitter_factor": 0}


@pytest.mark.parametrize("fault, path", [
    ("drop_after_forward", r"/confirm-upload$"),
    ("503", r"/confirm-upload$"),
    ("drop_before_forward", r"/initiate-upload$"),
])
def test_a_lost_answer_during_an_upload_resends_into_the_same_upload(client, sandbox, proxy, proxied, fault, path):
    _, instance_id = new_instance(client)
    before = records(sandbox)
    proxy.inject("POST", path, fault)
    task = upload_measurement.with_options(**QUICK)
    uploaded = flow(lambda: task(discharge_frame(), instance_id, "rpt-0", proxied))()
    initiated = proxy.hits_for("POST", r"/initiate-upload$")
    assert [m.id for m in client.cell_measurement.list(instance_id)] == [uploaded.id]
    after = records(sandbox)
    assert after["cell_measurement"] == before["cell_measurement"] + 1
    assert after["measurement_upload"] == before["measurement_upload"]  # no pending upload left
    if "confirm" in path:
        assert initiated[-1].outcome == "200" and len([h for h in initiated if h.at > proxy.hits_for(
            "POST", path)[-2].at]) == 0  # the confirm was resent; initiate was not repeated after it


def test_a_lost_answer_to_a_study_create_leaves_one_study(client, sandbox, proxy, proxied):
    name = unique("study")
    proxy.inject("POST", r"^/studies$", "drop_after_forward")
    task = assign_to_study.with_options(**QUICK)
    flow(lambda: task(name, by_name=True, credentials=proxied))()
    assert [s.name for s in client.study.list(name_exact=name) if s.name == name] == [name]


def test_a_refused_pipeline_removes_the_measurement_uploaded_for_it(client, sandbox, tmp_path):
    """A 3,600-row file is uploaded as a measurement, then Ionworks refuses the fit (an unknown parameter)."""
    synthetic(period_s=1.0).write_csv(tmp_path / "rpt.csv")
    config = fit_pipeline("file:rpt.csv", optimizer="dummy").to_config()
    fit = config["elements"]["fit"]
    fit["parameters"] = {DN.replace("diffusivity", "difusivity"): fit["parameters"][DN]}
    _, instance_id = new_instance(client)
    before = records(sandbox)
    with pytest.raises(IonworksRequestError, match="closest known names"):
        submit_pipeline.fn(config, base_dir=tmp_path, cell=instance_id)
    assert [m.id for m in client.cell_measurement.list(instance_id)] == []
    assert records(sandbox) == before


def test_a_refused_simulation_removes_the_template_it_saved(client, sandbox):
    from ionworks_prefect import run_simulation

    from .protocols import discharge

    before = records(sandbox)
    config = {"parameterized_model": "00000000-0000-0000-0000-000000000000",
              "protocol_experiment": {"protocol": discharge("1", 3.1), "name": unique("orphan")}}
    with pytest.raises(IonworksRequestError):
        flow(lambda: run_simulation(config))()
    assert records(sandbox) == before


def test_a_resubmission_logs_that_it_reattached(caplog):
    config = entry_pipeline(unique("again"))
    first = submit_pipeline.fn(config)
    with caplog.at_level(logging.INFO, logger="ionworks_prefect"):
        again = submit_pipeline.fn(config)
    assert again.id == first.id and again.reattached
    assert f"Reattached to Ionworks pipeline {first.id}" in caplog.text and "not submitting again" in caplog.text
