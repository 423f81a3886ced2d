"""A saved, triggerable Ionworks simulation: ``IonworksSimulation`` (a Prefect ``JobBlock``) and its run.

The shape of :mod:`ionworks_prefect.jobs`, for protocol simulations: the block holds the simulation config and
the credentials; ``trigger()`` submits it (an identical simulation already in Ionworks is reused) and returns an
:class:`IonworksSimulationRun`, whose ``wait_for_completion()`` and ``fetch_result()`` finish the job. A config
with ``design_parameters_doe`` or ``conditions`` is a design-of-experiments batch: one simulation per design,
waited on together. :func:`run_ionworks_simulation` runs the three steps as three visible tasks.

Example:
    ```python
    from prefect import flow
    from ionworks_prefect.simulation_jobs import IonworksSimulation

    @flow
    async def discharge_from_block():
        simulation = await IonworksSimulation.load("cell-7-1c-discharge")
        run = await simulation.trigger()
        await run.wait_for_completion()
        return await run.fetch_result()
    ```
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow
from prefect.blocks.abstract import JobBlock, JobRun
from pydantic import Field

from ._calls import acall
from .credentials import IonworksCredentials
from .results import SimulationResult, SimulationRun
from .retries import ionworks_task
from .simulations import await_simulations, read_simulation_result, submit_simulations
from .waiting import PollSchedule

#: Keys that make a simulation config a design-of-experiments batch (``client.simulation.protocol_batch``).
BATCH_KEYS = ("design_parameters_doe", "conditions")


class IonworksSimulationRun(JobRun[list[SimulationResult]]):
    """The simulations one trigger of an :class:`IonworksSimulation` submitted (not a block)."""

    def __init__(self, simulation: IonworksSimulation, runs: list[SimulationRun]) -> None:
        self.simulation = simulation
        self.runs = runs

    @property
    def simulation_ids(self) -> list[str]:
        """The Ionworks simulation ids of this run, in design order."""
        return [run.simulation_id for run in self.runs]

    async def wait_for_completion(self) -> None:
        """Wait until every simulation has its results (the block's ``max_wait_seconds`` at most).

        Raises:
            SimulationFailed: A simulation failed or was canceled (the server's error in the message).
            WaitTimedOut: They did not finish in time; they keep running in Ionworks.
        """
        if self.runs:
            await await_simulations(self.simulation.credentials.get_client(), self.runs,
                                    self.simulation.max_wait_seconds, PollSchedule())
        self.logger.info("Ionworks simulation(s) %s finished", ", ".join(self.simulation_ids))

    async def fetch_result(self) -> list[SimulationResult]:
        """Each simulation's time series, steps and metrics, in design order.

        Raises:
            ResultNotReady: A simulation has no results yet.
        """
        client = self.simulation.credentials.get_client()
        return list(await asyncio.gather(*(acall("fetch simulation", read_simulation_result, client, sid)
                                           for sid in self.simulation_ids)))


class IonworksSimulation(JobBlock[list[SimulationResult]]):
    """A protocol simulation saved with its credentials; ``trigger()`` runs it on Ionworks.

    Attributes:
        credentials: The Ionworks credentials block.
        simulation: The ``client.simulation.protocol`` config (``parameterized_model``, ``protocol_experiment``
            or ``protocol_id``, ...); with ``design_parameters_doe`` or ``conditions``, a DOE batch.
        max_wait_seconds: How long ``wait_for_completion()`` waits (seconds, above 0; 1800 by default).

    Raises:
        pydantic.ValidationError: ``simulation`` is missing or ``max_wait_seconds`` is not above 0.
        InvalidSimulationConfig: From :meth:`trigger`: the client refused the config; nothing was submitted.
        IonworksRequestError: From :meth:`trigger`: Ionworks refused the submission (e.g. an unknown model).
        IonworksTransientError: From :meth:`trigger`: the submission still failed after its retries; triggering
            again reuses a simulation that was created.

    Examples:
        Load a saved simulation block:
        ```python
        from ionworks_prefect.simulation_jobs import IonworksSimulation

        simulation = IonworksSimulation.load("BLOCK_NAME")
        ```

        Save a 1C discharge of a cell's model once, then run it from any flow:
        ```python
        from pathlib import Path
        from prefect import flow
        from ionworks_prefect import IonworksCredentials
        from ionworks_prefect.simulation_jobs import IonworksSimulation, run_ionworks_simulation

        IonworksSimulation(credentials=IonworksCredentials.load("ionworks"), simulation={
            "parameterized_model": "cell-7-model-id",
            "protocol_experiment": {"protocol": Path("protocols/1c-discharge.yaml").read_text(), "name": "1C"},
        }).save("cell-7-1c-discharge")

        @flow
        async def weekly_discharge():
            (result,) = await run_ionworks_simulation(await IonworksSimulation.load("cell-7-1c-discharge"))
            print(result.time_series["Voltage [V]"].min(), result.metrics)
        ```
    """

    _block_type_name = "Ionworks Simulation"
    _description = "A saved Ionworks protocol simulation (or DOE batch) that a flow can trigger, wait for and fetch."
    _logo_url = "https://app.ionworks.com/ionworks-logo-square.png"
    _documentation_url = "https://docs.ionworks.com"

    credentials: IonworksCredentials = Field(default_factory=IonworksCredentials,
                                             description="Credentials and endpoint of the Ionworks API.")
    simulation: dict[str, Any] = Field(description="Simulation config: parameterized_model, protocol_experiment "
                                                   "or protocol_id, and optionally a DOE (design_parameters_doe "
                                                   "or conditions).")
    max_wait_seconds: float = Field(default=1800.0, gt=0, description="How long to wait for the simulations.")

    async def trigger(self) -> IonworksSimulationRun:
        """Submit the simulation, or its batch (an identical simulation already in Ionworks is reused).

        Returns:
            The :class:`IonworksSimulationRun` to wait on and fetch.

        Raises:
            InvalidSimulationConfig: The client refused the config; nothing was submitted.
            IonworksRequestError: Ionworks refused the submission.
        """
        batch = any(self.simulation.get(key) is not None for key in BATCH_KEYS)
        runs = await asyncio.to_thread(submit_simulations, self.credentials.get_client(), self.simulation, batch)
        self.logger.info("Ionworks simulation(s) submitted: %s", ", ".join(r.simulation_id for r in runs))
        return IonworksSimulationRun(self, runs)


@ionworks_task(name="Trigger Ionworks simulation", description="Submit a saved Ionworks simulation.")
async def trigger_simulation(simulation: IonworksSimulation) -> IonworksSimulationRun:
    """Trigger ``simulation`` (see :meth:`IonworksSimulation.trigger`)."""
    return await simulation.trigger()


@ionworks_task(name="Wait for Ionworks simulation run", description="Wait until triggered simulations finish.")
async def wait_for_simulation_run(run: IonworksSimulationRun) -> None:
    """Wait for ``run`` (see :meth:`IonworksSimulationRun.wait_for_completion`)."""
    await run.wait_for_completion()


@ionworks_task(name="Fetch Ionworks simulation run results", description="Read finished simulations' results.")
async def fetch_simulation_run_results(run: IonworksSimulationRun) -> list[SimulationResult]:
    """Fetch ``run``'s results (see :meth:`IonworksSimulationRun.fetch_result`)."""
    return await run.fetch_result()


@flow(name="run-ionworks-simulation",
      description="Trigger a saved Ionworks simulation, wait for it, fetch its results.")
async def run_ionworks_simulation(simulation: IonworksSimulation) -> list[SimulationResult]:
    """Trigger, wait for and fetch a saved simulation as three tasks, each retried on transient faults only.

    A retried trigger reuses the simulations it submitted; a retried wait polls the same simulations.

    Args:
        simulation: The :class:`IonworksSimulation` block to run.

    Returns:
        One :class:`SimulationResult` per simulation (one, or one per design of a batch), in design order.

    Raises:
        InvalidSimulationConfig: The config is invalid; nothing was submitted.
        SimulationFailed: A simulation failed or was canceled.
        WaitTimedOut: They did not finish within the block's ``max_wait_seconds``.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect.simulation_jobs import IonworksSimulation, run_ionworks_simulation

        @flow
        async def thickness_sweep():
            results = await run_ionworks_simulation(await IonworksSimulation.load("cathode-thickness-doe"))
            return [r.time_series["Time [s]"].max() for r in results]
        ```
    """
    run = await trigger_simulation(simulation)
    await wait_for_simulation_run(run)
    return await fetch_simulation_run_results(run)
