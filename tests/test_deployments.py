"""Deployments: the configuration checked without a Docker engine (prefect.yaml steps, templates, Dockerfile,
entrypoints, schedules, triggers, a dry registration with a Docker pool), and (slow) the process deployments
run by a real ``prefect server start`` and ``prefect worker start`` against the sandbox."""

from __future__ import annotations

import fnmatch
import inspect
import json
import re
import sys
import tomllib
from datetime import datetime
from datetime import time as dt_time
from pathlib import Path
from typing import get_type_hints
from zoneinfo import ZoneInfo

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.importtools import import_object
from prefect.utilities.templating import apply_values, find_placeholders

from deployments.deploy import (
    DOCKERFILE,
    deploy_docker,
    deployment_specs,
    docker_deployment_specs,
    process_deployment_specs,
    runner_deployments,
    schedules,
    triggers,
)
from ionworks_prefect import CellTarget, upload_measurement
from ionworks_prefect.flows.cycler_watcher import FILE_ARRIVED, file_resource

from .live_prefect import LivePrefect
from .measurement_frames import unique
from .pipeline_configs import DN, synthetic

ROOT = Path(__file__).resolve().parents[1]
PROJECT = yaml.safe_load((ROOT / "prefect.yaml").read_text())
SPECS = {spec["name"]: spec for spec in deployment_specs()}
DOCKER = [spec["name"] for spec in docker_deployment_specs()]
TEMPLATE = re.compile(r"{{\s*([\w-]+)\.(\w+)\s*}}")


def _steps(spec: dict, section: str) -> list[tuple[str, dict]]:
    entries = spec[section] if section in spec else PROJECT.get(section)
    return [next(iter(entry.items())) for entry in entries or []]


def _dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / DOCKERFILE).read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _docker_ignored(path: str) -> bool:
    rules = [r.strip() for r in (ROOT / ".dockerignore").read_text().splitlines() if r.strip() and r[0] != "#"]
    ignored = False
    for rule in rules:
        negate = rule.startswith("!")
        if fnmatch.fnmatch(path, rule.lstrip("!")):
            ignored = not negate
    return ignored


def test_every_flow_module_has_its_deployment():
    assert set(SPECS) == {"nightly-refit", "refit-cell", "ingest-cycler-data", "cycler-watcher",
                          "nightly-refit-docker", "refit-cell-docker", "ingest-cycler-data-docker"}
    assert {SPECS[n]["work_pool"]["name"] for n in DOCKER} == {"ionworks-docker"}
    assert {spec["work_pool"]["name"] for spec in process_deployment_specs()} == {"ionworks-process"}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_entrypoint_loads_and_parameters_fit_the_flow(name):
    spec = SPECS[name]
    flow = load_flow_from_entrypoint(spec["entrypoint"], use_placeholder_flow=False)
    schema = parameter_schema(flow)
    given = set(spec.get("parameters") or {})
    templated = {p for trigger in spec.get("triggers") or [] for p in trigger.get("parameters") or {}}
    assert given | templated <= set(schema.properties), "parameters the flow does not take"
    assert set(schema.required or []) <= given | templated, "required parameters left unset"
    event_values = {"files": "/lab/cycler-drop/rpt-7.mpt", "cell": {"specification": "NMC811", "instance": "cell-7"}}
    flow.validate_parameters({**(spec.get("parameters") or {}), **{p: event_values[p] for p in templated}})


@pytest.mark.parametrize("name", DOCKER)
def test_docker_steps_resolve_to_callables_with_matching_signatures(name):
    spec = SPECS[name]
    produced: dict[str, set[str]] = {}
    for section in ("build", "push", "pull"):
        for step, inputs in _steps(spec, section):
            fn = import_object(step)
            assert callable(fn), step
            if "requires" in inputs:
                package = Requirement(inputs["requires"])
                installed = Version(import_object(f"{package.name.replace('-', '_')}.__version__"))
                assert package.specifier.contains(installed), f"{step} requires {package}, {installed} installed"
            arguments = {k: v for k, v in inputs.items() if k not in ("id", "requires")}
            inspect.signature(fn).bind(**arguments)  # raises TypeError on an unknown or missing argument
            for placeholder, field in TEMPLATE.findall(yaml.safe_dump(arguments)):
                assert field in produced.get(placeholder, set()), f"{step}: {{{{ {placeholder}.{field} }}}} unknown"
            if "id" in inputs:
                produced[inputs["id"]] = set(get_type_hints(fn)["return"].__annotations__)
    for placeholder, field in TEMPLATE.findall(yaml.safe_dump(spec["work_pool"])):
        assert field in produced.get(placeholder, set())


@pytest.mark.parametrize("name", DOCKER)
def test_docker_templates_resolve_to_a_valid_image_and_worker_variables(name):
    from prefect_docker.deployments.steps import _validate_image_name, build_docker_image
    from prefect_docker.worker import DockerWorker

    spec = SPECS[name]
    build_inputs = dict(_steps(spec, "build"))["prefect_docker.deployments.steps.build_docker_image"]
    _validate_image_name(build_inputs["image_name"])
    assert inspect.signature(build_docker_image).parameters["tag"].default is None  # a fresh tag per build
    outputs = {"build_image": {"image_name": build_inputs["image_name"], "tag": "2026-11-23t02-00",
                               "image": f"{build_inputs['image_name']}:2026-11-23t02-00"}}
    resolved = apply_values({"push": spec["push"], "work_pool": spec["work_pool"]}, outputs)
    assert not find_placeholders(resolved)
    assert resolved["work_pool"]["job_variables"]["image"] == "ionworks-prefect:2026-11-23t02-00"
    variables = DockerWorker.get_default_base_job_template()["variables"]["properties"]
    assert set(resolved["work_pool"]["job_variables"]) <= set(variables)


def test_dockerfile_builds_the_code_the_docker_deployments_run():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    instructions = _dockerfile()
    base = dict(instructions)["FROM"]
    match = re.fullmatch(r"prefecthq/prefect:(\d+\.\d+\.\d+)-python(\d+\.\d+)", base)
    assert match, f"base image {base!r} is not a pinned Prefect image"
    prefect_pin = next(Requirement(d) for d in pyproject["dependencies"] if d.startswith("prefect"))
    assert prefect_pin.specifier.contains(match[1])
    assert SpecifierSet(pyproject["requires-python"]).contains(match[2] + ".0")
    assert match[2] == f"{sys.version_info.major}.{sys.version_info.minor}"

    workdir = dict(instructions)["WORKDIR"]
    copied = []
    for instruction, argument in instructions:
        if instruction == "COPY":
            *sources, _ = argument.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not _docker_ignored(source), f"COPY {source}: excluded by .dockerignore"
                copied.append(source)
    assert {"pyproject.toml", pyproject["readme"], "ionworks_prefect"} <= set(copied)
    install = [i for i, (k, a) in enumerate(instructions) if k == "RUN" and re.search(r"pip install .*\.", a)]
    assert install and install[0] > max(i for i, (k, a) in enumerate(instructions) if "ionworks_prefect" in a)
    assert not any(k == "ENV" and "IONWORKS_API_KEY" in a for k, a in instructions), "no secrets in the image"
    for name in DOCKER:
        assert _steps(SPECS[name], "pull") == [("prefect.deployments.steps.set_working_directory",
                                                {"directory": workdir})]
        assert SPECS[name]["entrypoint"].split("/")[0] in copied


def test_schedules_and_triggers_are_valid_and_match_the_watcher_events():
    nightly = schedules(SPECS["nightly-refit"])
    assert len(nightly) == 1
    assert (nightly[0].cron, nightly[0].timezone) == ("0 2 * * *", "Europe/London")
    CronSchedule(cron=nightly[0].cron, timezone=nightly[0].timezone)  # validates the cron string and zone
    assert SPECS["nightly-refit-docker"]["schedules"] == SPECS["nightly-refit"]["schedules"]
    assert SPECS["nightly-refit"]["concurrency_limit"] == 1

    for name in ("ingest-cycler-data", "ingest-cycler-data-docker"):
        (trigger,) = triggers(SPECS[name])
        assert trigger.expect == {FILE_ARRIVED} and trigger.enabled
        resource = file_resource(Path("/lab/cycler-drop/rpt-7.mpt"))
        pattern = trigger.match.root["prefect.resource.id"]
        assert fnmatch.fnmatch(resource["prefect.resource.id"], pattern)
        assert trigger.parameters == {"files": "{{ event.payload.path }}", "cell": "{{ event.payload.cell }}"}


def test_serve_builds_the_process_deployments(monkeypatch):
    monkeypatch.chdir(ROOT)
    overrides = {"nightly-refit": {"drift_threshold": 0.1}}
    built = {d.name: d for d in runner_deployments(process_deployment_specs(), overrides)}
    assert set(built) == {"nightly-refit", "refit-cell", "ingest-cycler-data", "cycler-watcher"}
    assert built["nightly-refit"].parameters["drift_threshold"] == 0.1
    assert built["nightly-refit"].entrypoint == "ionworks_prefect/flows/fleet_refit.py:fleet_refit"  # where served
    assert len(built["ingest-cycler-data"].triggers) == 1


@pytest.mark.usefixtures("prefect_server")
async def test_docker_deployments_register_with_a_docker_pool_without_building(monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect_docker.worker import DockerWorker

    monkeypatch.chdir(ROOT)
    async with get_client() as client:
        await client.create_work_pool(WorkPoolCreate(name="ionworks-docker", type="docker",
                                                     base_job_template=DockerWorker.get_default_base_job_template()),
                                      overwrite=True)
    import asyncio

    ids = await asyncio.to_thread(deploy_docker, {}, tag="dry-run", build=False, push=False)
    assert len(ids) == len(DOCKER)
    async with get_client() as client:
        found = {d.name: d for d in await client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=DOCKER)))}
    assert set(found) == set(DOCKER)
    for name, deployment in found.items():
        assert deployment.work_pool_name == "ionworks-docker"
        assert deployment.job_variables["image"] == "ionworks-prefect:dry-run"
        assert deployment.entrypoint == SPECS[name]["entrypoint"]
        assert deployment.parameters["credentials"] == "ionworks"
    assert found["ingest-cycler-data-docker"].job_variables["volumes"] == ["/lab/cycler-drop:/lab/cycler-drop:ro"]
    assert found["nightly-refit-docker"].schedules[0].schedule.cron == "0 2 * * *"


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")  # the upload's events go to the test server, not a new ephemeral one
def test_process_worker_runs_the_nightly_refit_and_the_event_triggered_ingest(sandbox, client, prefect_database,
                                                                              tmp_path):
    cell = {"specification": unique("live-spec"), "instance": unique("live-cell")}
    upload_measurement.fn(synthetic(), CellTarget(**cell), "rpt-1C")
    drop = tmp_path / "drop"
    drop.mkdir()
    synthetic(c_rate=0.5).write_csv(drop / "rpt-0.5C.csv")
    refit = {"specification": cell["specification"],
             "parameters": {DN: {"initial_value": 2e-14, "bounds": [1e-14, 1e-13]}}}

    prefect = LivePrefect(tmp_path / "prefect-home", {**sandbox.client_env(), **prefect_database})
    try:
        prefect.cli("work-pool", "create", "ionworks-process", "--type", "process")
        prefect.cli("--no-prompt", "deploy", "--name", "nightly-refit", "--params", json.dumps(refit))
        prefect.cli("--no-prompt", "deploy", "--name", "ingest-cycler-data")
        prefect.cli("--no-prompt", "deploy", "--name", "cycler-watcher", "--params",
                    json.dumps({"directory": str(drop), "cell": cell, "settle_seconds": 0}))
        london = ZoneInfo("Europe/London")
        scheduled = prefect._until(lambda: prefect.runs("fleet-refit/nightly-refit", ["SCHEDULED"]), 60,
                                   "the scheduler to plan nightly runs")
        starts = {datetime.fromisoformat(r["expected_start_time"]).astimezone(london).time() for r in scheduled}
        assert starts == {dt_time(2, 0)}

        prefect.start_worker("ionworks-process")
        nightly = prefect.wait_for_run(prefect.run_deployment("fleet-refit/nightly-refit"))
        assert nightly["state"]["type"] == "COMPLETED", nightly["state"]
        fitted = client.pipeline.list(description=f"ilike.%Refit of {cell['specification']}/%", limit=10)
        assert len(fitted) == 1 and fitted[0].status == "completed"

        watcher = prefect.wait_for_run(prefect.run_deployment("cycler-watcher/cycler-watcher"))
        assert watcher["state"]["type"] == "COMPLETED", watcher["state"]
        triggered = prefect._until(lambda: prefect.runs("ingest-cycler-data/ingest-cycler-data"), 120,
                                   "the file_arrived event to trigger an ingest run")
        ingest = prefect.wait_for_run(triggered[0]["id"])
        assert ingest["state"]["type"] == "COMPLETED", ingest["state"]
        assert ingest["parameters"]["files"] == str(drop / "rpt-0.5C.csv")
        assert ingest["parameters"]["cell"] == cell
        spec = client.cell_spec.list(name_exact=cell["specification"])[0]
        instance = client.cell_instance.list(spec.id, name_exact=cell["instance"])[0]
        assert {m.name for m in client.cell_measurement.list(instance.id)} == {"rpt-1C", "rpt-0.5C"}
    finally:
        prefect.close()


def test_work_pools_run_flows_with_heartbeats_and_the_crash_automation_applies_once(prefect_server):
    from prefect.automations import Automation
    from prefect.events.actions import ChangeFlowRunState

    from deployments.deploy import apply_crash_automation, deployment_specs, heartbeat_environment

    assert heartbeat_environment() == {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    for spec in deployment_specs():
        assert spec["work_pool"]["job_variables"]["env"] == heartbeat_environment(), spec["name"]
    first, again = apply_crash_automation(), apply_crash_automation()
    saved = Automation.read(name="ionworks-crashed-flow-runs")
    assert first.id == again.id == saved.id
    assert saved.trigger.posture == "Proactive" and saved.trigger.within.total_seconds() == 90
    assert saved.trigger.after == {"prefect.flow-run.heartbeat"} and "prefect.flow-run.heartbeat" in saved.trigger.expect
    assert [type(a) for a in saved.actions] == [ChangeFlowRunState] and saved.actions[0].state == "CRASHED"
