"""Ionworks protocol simulations: submit, wait (on the shared, batched status poller), fetch typed results.

Resubmitting an identical simulation is safe: Ionworks returns the existing run (``already_existed``).
An inline ``protocol_experiment`` is saved by the client as an experiment template before the simulations are
created; if Ionworks then refuses them (an unknown model, a bad DOE), the template this submission created is
deleted again, unless a simulation already uses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ionworks import Ionworks
from prefect.cache_policies import INPUTS

from ._calls import acall, call, json_answer, run_logger
from .credentials import CredentialsArg, resolve_credentials
from .exceptions import (
    InvalidSimulationConfig,
    IonworksPrefectError,
    IonworksTransientError,
    ResultNotReady,
    SimulationFailed,
)
from .measurement_data import as_polars
from .resource_ids import path_segment
from .results import SimulationResult, SimulationRun
from .retries import ionworks_task
from .status_poller import StatusPoller, Summarize
from .status_reads import SIMULATIONS
from .waiting import PollSchedule, Snapshot, wait_until_terminal


def _template_name(config: dict[str, Any]) -> str | None:
    experiment = config.get("protocol_experiment")
    name = experiment.get("name") if isinstance(experiment, Mapping) else None
    return name if isinstance(name, str) and name else None


def _templates(client: Ionworks, config: dict[str, Any], name: str) -> set[str]:
    """Ids of the project's saved protocols (experiment templates) named ``name``."""
    project = config.get("project_id") or client.project_id
    listed = call("list protocols", client.protocol.list, project_id=project, name_exact=name, limit=100)
    return {p.id for p in listed if p.name == name}


def _discard_new_templates(client: Ionworks, config: dict[str, Any], name: str, before: set[str]) -> None:
    """Delete templates named ``name`` that appeared since ``before`` and that no simulation uses."""
    try:
        for template_id in _templates(client, config, name) - before:
            if not call("list simulations", client.simulation.list, protocol_id=path_segment(template_id), limit=1):
                call("delete protocol", client.protocol.delete, path_segment(template_id))
    except IonworksPrefectError as exc:  # the refusal is the error to raise
        run_logger().warning("Could not remove the protocol template saved for a refused simulation: %s", exc)


def submit_simulations(client: Ionworks, config: dict[str, Any], batch: bool) -> list[SimulationRun]:
    """Submit one simulation, or a DOE batch (``batch``); a template saved for a refused submission is removed."""
    if not isinstance(config, Mapping):
        raise InvalidSimulationConfig(f"A simulation config must be a dict, not {type(config).__name__}")
    name = _template_name(config)
    before = _templates(client, config, name) if name else set()
    try:
        if batch:
            responses = call("submit simulations", client.simulation.protocol_batch, config,
                             invalid=InvalidSimulationConfig)
        else:
            responses = [call("submit simulation", client.simulation.protocol, config,
                              invalid=InvalidSimulationConfig)]
    except IonworksTransientError:
        raise
    except IonworksPrefectError:
        if name:
            _discard_new_templates(client, config, name, before)
        raise
    return [SimulationRun(**r.model_dump()) for r in responses]


def _batch_summary(total: int) -> Summarize:
    """Summarise per-simulation snapshots: terminal once all have results or any has failed."""

    def summarize(latest: Mapping[str, Snapshot]) -> Snapshot:
        failed = {sid: f"{s.status}: {s.raw.get('error') or 'unknown error'}" for sid, s in latest.items() if s.is_failed}
        done = sum(s.is_terminal and not s.is_failed for s in latest.values())
        status = "failed" if failed else "completed" if done == total else "running"
        return Snapshot(status=status, is_terminal=bool(failed) or done == total, is_failed=bool(failed),
                        completed=done, total=total, raw={"failed": failed})

    return summarize


async def await_simulations(client: Ionworks, runs: list[SimulationRun], max_wait_seconds: float,
                             schedule: PollSchedule) -> None:
    """Wait until every simulation has results or any has failed; raises :class:`SimulationFailed`."""
    ids = list(dict.fromkeys(r.simulation_id for r in runs))
    poller = StatusPoller.for_client(client)
    with poller.watch(SIMULATIONS, ids, schedule=schedule, summarize=_batch_summary(len(ids))) as watch:

        def cancel() -> None:
            for run in runs:
                seen = watch.latest.get(run.simulation_id)
                if not (seen and seen.is_terminal):
                    call("cancel simulation job", client.job.cancel, path_segment(run.job_id))

        label = f"Ionworks simulation {ids[0]}" if len(ids) == 1 else f"{len(ids)} Ionworks simulations"
        final = await wait_until_terminal(label, watch, cancel=cancel, max_wait_seconds=max_wait_seconds)
    failed: dict[str, str] = final.raw["failed"]
    if failed:
        listed = "; ".join(f"{sid} {reason}" for sid, reason in failed.items())
        first = next(iter(failed))
        raise SimulationFailed(f"{len(failed)} of {len(ids)} simulation(s) failed: {listed}",
                               resource_id=first, status=failed[first].split(":")[0], error=listed)


def read_simulation_result(client: Ionworks, simulation_id: str) -> SimulationResult:
    """Download a finished simulation's time series, steps and metrics (raises :class:`ResultNotReady`)."""
    segment = path_segment(simulation_id, "Ionworks simulation id")
    record = json_answer(call("get simulation", client.simulation.get, segment), "get simulation")
    if not (record.get("storage_folder") or record.get("simulation_data")):
        raise ResultNotReady(f"Simulation {simulation_id} has no results yet")
    result = call("get simulation result", client.simulation.get_result, segment)
    return SimulationResult(simulation_id=simulation_id, time_series=as_polars(result.time_series),
                            steps=as_polars(result.steps), metrics=result.metrics or {})


@ionworks_task(
    name="Fetch Ionworks simulation result",
    description="Download the time series, steps and metrics of a finished simulation.",
    cache_policy=INPUTS - "credentials",
)
def fetch_simulation_result(simulation_id: str, credentials: CredentialsArg = None) -> SimulationResult:
    """Fetch a finished simulation's result (cached by ``simulation_id``: finished results never change).

    Args:
        simulation_id: The Ionworks simulation id.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.

    Returns:
        The :class:`SimulationResult`: ``time_series`` and ``steps`` as polars frames, and ``metrics``.

    Raises:
        ResultNotReady: The simulation has no results yet.
        InvalidResourceId: ``simulation_id`` is empty or ``.``/``..``; nothing was sent.
        IonworksNotFound: No simulation has that id.
        IonworksRequestError: Ionworks refused a request (4xx) or answered in a way that cannot be used.
        IonworksTransientError: A request still failed after its retries.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import fetch_simulation_result

        @flow
        def lowest_voltage(simulation_id: str) -> float:
            result = fetch_simulation_result(simulation_id)
            return result.time_series["Voltage [V]"].min()
        ```
    """
    return read_simulation_result(resolve_credentials(credentials).get_client(), simulation_id)


async def _run(config: dict[str, Any], credentials: CredentialsArg, batch: bool, max_wait_seconds: float,
               schedule: PollSchedule) -> list[SimulationResult]:
    client = resolve_credentials(credentials).get_client()
    runs = await asyncio.to_thread(submit_simulations, client, config, batch)
    if not runs:
        return []
    await await_simulations(client, runs, max_wait_seconds, schedule)
    return list(await asyncio.gather(*(acall("fetch simulation", read_simulation_result, client, r.simulation_id)
                                       for r in runs)))


@ionworks_task(
    name="Run Ionworks simulation",
    description="Simulate one protocol on a parameterized model and return the time series, steps and metrics.",
)
async def run_simulation(
    config: dict[str, Any],
    credentials: CredentialsArg = None,
    *,
    max_wait_seconds: float = 600.0,
    poll_schedule: PollSchedule = PollSchedule(),
) -> SimulationResult:
    """Run one simulation (the ``client.simulation.protocol`` config) and wait for its result.

    Resubmitting an identical simulation reuses the existing run. An inline ``protocol_experiment`` saved as a
    template for a submission Ionworks then refuses is deleted again. If the wait is cancelled, the simulation's
    job is cancelled in Ionworks.

    Args:
        config: The simulation: ``parameterized_model`` (an id or a model config), ``protocol_experiment``
            (``{"protocol": <UCP YAML>, "name": ...}``) or ``protocol_id``, and optionally
            ``experiment_parameters``, ``design_parameters``, ``study_id``, ``extra_variables``.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.
        max_wait_seconds: How long to wait for the simulation before giving up (it keeps running).
        poll_schedule: Delays between status reads.

    Returns:
        The :class:`SimulationResult` (``time_series``, ``steps``, ``metrics``).

    Raises:
        InvalidSimulationConfig: ``config`` is not a dict, or the client refused it (unknown keys, conflicting
            protocol sources, a multi-row DOE).
        SimulationFailed: The simulation failed or was canceled (the server's error in the message).
        WaitTimedOut: It did not finish within ``max_wait_seconds``; it keeps running in Ionworks.
        IonworksRequestError: Ionworks refused a request (4xx, e.g. an unknown model) or answered in a way that
            cannot be used.
        IonworksTransientError: The submission or the result download still failed after its retries.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        from pathlib import Path
        from prefect import flow
        from ionworks_prefect import run_simulation

        @flow
        async def discharge_time(model_id: str, protocol_file: str = "protocols/1c-discharge.yaml") -> float:
            protocol = Path(protocol_file).read_text()  # UCP YAML
            result = await run_simulation({"parameterized_model": model_id,
                                           "protocol_experiment": {"protocol": protocol, "name": "1C discharge"}})
            return result.time_series["Time [s]"].max()
        ```
    """
    return (await _run(config, credentials, False, max_wait_seconds, poll_schedule))[0]


@ionworks_task(
    name="Run Ionworks simulation batch",
    description="Run a design-of-experiments batch of simulations and return every result in order.",
)
async def run_simulation_batch(
    config: dict[str, Any],
    credentials: CredentialsArg = None,
    *,
    max_wait_seconds: float = 1800.0,
    poll_schedule: PollSchedule = PollSchedule(),
) -> list[SimulationResult]:
    """Run a batch (``design_parameters_doe`` or ``conditions``) and wait for all results; fails if any fails.

    All the batch's simulations are waited on together (one batched status read per tick); the results are
    then downloaded in parallel. If the wait is cancelled, the unfinished simulations' jobs are cancelled.

    Args:
        config: The batch: ``parameterized_model``, ``protocol_experiment`` or ``protocol_id``, and either
            ``design_parameters_doe`` or ``conditions`` (one simulation per entry); optionally
            ``experiment_parameters``, ``study_id``, ``extra_variables``.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the ``IONWORKS_*``
            environment.
        max_wait_seconds: How long to wait for the whole batch before giving up (it keeps running).
        poll_schedule: Delays between status reads.

    Returns:
        One :class:`SimulationResult` per simulation, in the order Ionworks returned the submitted batch (an
        empty list when it holds none).

    Raises:
        InvalidSimulationConfig: ``config`` is not a dict, or the client refused it (``design_parameters`` in a
            batch, an empty ``conditions`` list, a malformed DOE).
        SimulationFailed: Any simulation failed or was canceled; the message lists every failed one.
        WaitTimedOut: The batch did not finish within ``max_wait_seconds``; it keeps running in Ionworks.
        IonworksRequestError: Ionworks refused a request (4xx) or answered in a way that cannot be used.
        IonworksTransientError: The submission or a result download still failed after its retries.
        InvalidCredentials: No API key or token, no saved block of that name, or a malformed API URL.

    Examples:
        ```python
        from pathlib import Path
        from prefect import flow
        from ionworks_prefect import run_simulation_batch

        @flow
        async def temperature_sweep(model_id: str, protocol_file: str = "protocols/1c-discharge.yaml") -> list[float]:
            results = await run_simulation_batch({
                "parameterized_model": model_id,
                "protocol_experiment": {"protocol": Path(protocol_file).read_text(), "name": "1C discharge"},
                "design_parameters_doe": {"sampling": "grid", "rows": [
                    {"type": "discrete", "name": "Ambient temperature [K]", "values": [273.15, 298.15, 318.15]},
                ]},
            })
            return [r.time_series["Time [s]"].max() for r in results]
        ```
    """
    return await _run(config, credentials, True, max_wait_seconds, poll_schedule)
