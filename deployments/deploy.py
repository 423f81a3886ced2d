"""Serve or deploy the flows from Python, using the deployments declared in prefect.yaml.

prefect.yaml stays the one description of schedules, triggers and default parameters; this module applies
it without the ``prefect deploy`` CLI:

    python -m deployments.deploy serve                  # this process runs the flows; no work pool
    python -m deployments.deploy process                # register with the ionworks-process pool
    python -m deployments.deploy docker --tag 0.1.0     # build, push, register with ionworks-docker
    ... --params '{"nightly-refit": {"specification": "LFP 26650"}}'   # per-deployment overrides

Run it from the repository root (entrypoints are relative to it). Each target also applies the crashed-run
automation (``deployments/crashed-flow-runs.yaml``) and runs flows with heartbeats every 30 s, so a flow run
whose process died is marked Crashed instead of staying Running.

Example:
    >>> deployments = runner_deployments(process_deployment_specs(), {})
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, deploy, serve
from prefect.automations import Automation
from prefect.deployments.runner import RunnerDeployment
from prefect.docker import DockerImage
from prefect.events import DeploymentEventTrigger
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron, Interval, Schedule

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "prefect.yaml"
DOCKERFILE = "deployments/Dockerfile"
IMAGE_NAME = "ionworks-prefect"
CRASH_AUTOMATION = ROOT / "deployments" / "crashed-flow-runs.yaml"


def heartbeat_environment(path: Path = PREFECT_YAML) -> dict[str, str]:
    """The flow-run heartbeat settings prefect.yaml gives every work pool (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``)."""
    return dict(yaml.safe_load(path.read_text())["definitions"]["heartbeats"])


def crash_automation(path: Path = CRASH_AUTOMATION) -> Automation:
    """The automation that marks a flow run Crashed when its heartbeats stop (not yet saved)."""
    return Automation.model_validate(yaml.safe_load(path.read_text()))


def apply_crash_automation(path: Path = CRASH_AUTOMATION) -> Automation:
    """Create the crashed-run automation on the Prefect server, or update the one of the same name."""
    wanted = crash_automation(path)
    try:
        existing = Automation.read(name=wanted.name)
    except ValueError:
        return wanted.create()
    updated = Automation(**{**wanted.model_dump(), "id": existing.id})
    updated.update()
    return updated


def deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The ``deployments`` entries of prefect.yaml (anchors and merge keys resolved)."""
    return yaml.safe_load(path.read_text())["deployments"]


def process_deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """Deployments that need no image (everything but the ``*-docker`` ones)."""
    return [s for s in deployment_specs(path) if "build" not in s]


def docker_deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """Deployments that run in the ionworks-prefect image."""
    return [s for s in deployment_specs(path) if "build" in s]


def schedules(spec: dict[str, Any]) -> list[Schedule]:
    """prefect.yaml ``schedules`` entries (cron or interval) as Prefect schedules."""
    built = []
    for entry in spec.get("schedules") or []:
        if "cron" in entry:
            built.append(Cron(entry["cron"], timezone=entry.get("timezone"), active=entry.get("active", True)))
        else:
            built.append(Interval(entry["interval"], active=entry.get("active", True)))
    return built


def triggers(spec: dict[str, Any]) -> list[DeploymentEventTrigger]:
    """prefect.yaml ``triggers`` entries (``type: event``) as deployment triggers."""
    return [DeploymentEventTrigger(**{k: v for k, v in entry.items() if k != "type"})
            for entry in spec.get("triggers") or []]


def _options(spec: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": spec["name"],
        "description": spec.get("description"),
        "schedules": schedules(spec),
        "triggers": triggers(spec),
        "concurrency_limit": spec.get("concurrency_limit"),
        "parameters": {**(spec.get("parameters") or {}), **overrides.get(spec["name"], {})},
    }


def runner_deployments(specs: list[dict[str, Any]], overrides: dict[str, dict[str, Any]]) -> list[RunnerDeployment]:
    """Deployments to serve from this process (``prefect.serve``)."""
    return [load_flow_from_entrypoint(spec["entrypoint"]).to_deployment(**_options(spec, overrides)) for spec in specs]


def deploy_process(overrides: dict[str, dict[str, Any]]) -> list[str]:
    """Register the process-pool deployments; a worker runs them from this checkout."""
    ids = []
    for spec in process_deployment_specs():
        flow = Flow.from_source(source=str(ROOT), entrypoint=spec["entrypoint"])
        ids.append(str(flow.deploy(work_pool_name=spec["work_pool"]["name"], print_next_steps=False,
                                   job_variables=spec["work_pool"].get("job_variables"),
                                   **_options(spec, overrides))))
    return ids


def deploy_docker(overrides: dict[str, dict[str, Any]], *, tag: str, build: bool = True,
                  push: bool = True) -> list[str]:
    """Build the image (deployments/Dockerfile), push it and register the Docker-pool deployments.

    The image is ``ionworks-prefect:<tag>`` under ``PREFECT_DEFAULT_DOCKER_BUILD_NAMESPACE`` when set.
    """
    namespace = os.environ.get("PREFECT_DEFAULT_DOCKER_BUILD_NAMESPACE")
    image = DockerImage(name=f"{namespace}/{IMAGE_NAME}" if namespace else IMAGE_NAME, tag=tag, dockerfile=DOCKERFILE)
    specs = docker_deployment_specs()
    built = []
    for spec in specs:
        variables = {k: v for k, v in (spec["work_pool"].get("job_variables") or {}).items() if k != "image"}
        deployment = load_flow_from_entrypoint(spec["entrypoint"]).to_deployment(job_variables=variables,
                                                                                 **_options(spec, overrides))
        deployment.entrypoint = spec["entrypoint"]  # the recipe inside the image, not where the flow is defined
        built.append(deployment)
    ids = deploy(*built, work_pool_name=specs[0]["work_pool"]["name"], image=image, build=build, push=push,
                 print_next_steps_message=False)
    return [str(i) for i in ids]

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deployments.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["serve", "process", "docker"])
    parser.add_argument("--params", default="{}", help="JSON: deployment name -> parameter overrides")
    parser.add_argument("--tag", default="latest", help="image tag (docker)")
    parser.add_argument("--no-build", action="store_true", help="use an image built before (docker)")
    parser.add_argument("--no-push", action="store_true", help="keep the image local (docker)")
    args = parser.parse_args(argv)
    overrides = json.loads(args.params)
    os.chdir(ROOT)
    apply_crash_automation()
    if args.target == "serve":
        os.environ.update(heartbeat_environment())  # served runs are subprocesses of this one
        serve(*runner_deployments(process_deployment_specs(), overrides))
    elif args.target == "process":
        print("\n".join(deploy_process(overrides)))
    else:
        print("\n".join(deploy_docker(overrides, tag=args.tag, build=not args.no_build, push=not args.no_push)))


if __name__ == "__main__":
    main()
