"""What Ionworks holds for a cell's refit: its tests, its refit pipelines, and their fitted sets.

The nightly refit reads these first (``read_refit_state``), and the fitted sets of the cell's history after
fitting (``list_fitted_tests``, ``fitted_history``). A finished fit's set is kept in Prefect's result store
(``FinishedFit``), so an unchanged night reads none of them from Ionworks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional, Union

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel, Field

from ionworks_prefect import CellTarget, FittedParameterSet, IonworksPrefectError
from ionworks_prefect._calls import acall
from ionworks_prefect.cell_tests import CellIdentity, CellTest, cell_label, find_cell, read_cell_tests
from ionworks_prefect.credentials import resolve_credentials
from ionworks_prefect.history import FitRecord, latest_per_test, list_fit_records
from ionworks_prefect.pipelines import read_result
from ionworks_prefect.retries import ionworks_task


class NoMeasurements(IonworksPrefectError):
    """The cell has no time-series measurement to fit."""


class RefitState(BaseModel):
    """What decides a night's refit: the cell, its tests, and the refit pipelines Ionworks holds for it."""

    cell: CellIdentity
    tests: list[CellTest]
    records: list[FitRecord] = Field(description="The cell's refit pipelines, newest first.")

    @property
    def done(self) -> dict[str, str]:
        """Fit key -> pipeline id of every successful refit (the tests already fitted)."""
        return {r.fit_key: r.pipeline_id for r in self.records if r.succeeded}


# The flow's own tasks are async, their blocking client calls in a worker thread: in an async flow an async task
# costs a few ms of orchestration where a sync one costs 50-100 ms, and a fleet's cells share one event loop.


@ionworks_task(name="Read refit state", description="The cell, its tests and the refit pipelines Ionworks holds.")
async def read_refit_state(cell: Union[str, CellTarget], credentials: Optional[str] = None) -> RefitState:
    """The cell's identity, its reference performance tests and its refit pipelines, in one task.

    Raises :class:`NoMeasurements` when the cell does not exist or has no processed time series.
    """
    return await asyncio.to_thread(_read_refit_state, cell, credentials)


def _read_refit_state(cell: Union[str, CellTarget], credentials: Optional[str]) -> RefitState:
    client = resolve_credentials(credentials).get_client()
    identity = find_cell(client, cell)
    if identity is None:
        raise NoMeasurements(f"No cell {cell_label(cell)!r} in Ionworks, so no measurement to fit")
    tests = read_cell_tests(client, identity.instance_id)
    if not tests:
        raise NoMeasurements(f"No processed time-series measurement found for {identity.label!r}")
    return RefitState(cell=identity, tests=tests, records=list_fit_records(client, identity.instance_id))


@ionworks_task(name="List fitted tests", description="The newest successful refit of each test of the cell.")
async def list_fitted_tests(cell_instance_id: str, credentials: Optional[str] = None) -> list[FitRecord]:
    """The newest successful refit pipeline of each test of the cell, oldest test first."""
    client = resolve_credentials(credentials).get_client()
    return latest_per_test(await acall("list refit pipelines", list_fit_records, client, cell_instance_id))


@dataclass
class FinishedFit(CachePolicy):
    """Cache key of a finished refit's fitted set: server, project, pipeline and the test it is labelled with.

    A finished pipeline's result never changes, so an unchanged night reads its history from the result store
    instead of from Ionworks; the night that fitted a set stores it (``fitted`` given).
    """

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> Optional[str]:
        block = resolve_credentials(inputs.get("credentials"))
        return hash_objects(block.api_url, block.project_id,
                            *(inputs.get(k) for k in ("pipeline_id", "label", "test", "tested_at",
                                                      "equivalent_full_cycles")))


@ionworks_task(name="Read fitted set", description="One finished refit pipeline's fitted parameter set.",
               cache_policy=FinishedFit(), persist_result=True)
async def read_fitted_set(pipeline_id: str, label: str, test: Optional[str] = None,
                          tested_at: Optional[datetime] = None, equivalent_full_cycles: Optional[float] = None,
                          credentials: Optional[str] = None, fitted: Optional[FittedParameterSet] = None
                          ) -> FittedParameterSet:
    """The fitted set of one finished refit pipeline, read from Ionworks; ``fitted``, the set of a fit that has
    just finished, is stored as it is (a task input is walked by Prefect, so it is the set, not its result)."""
    if fitted is not None:
        return fitted
    client = resolve_credentials(credentials).get_client()
    result = await acall("fetch pipeline result", read_result, client, pipeline_id)
    return FittedParameterSet.from_pipeline_result(result, cell=label, test=test, tested_at=tested_at,
                                                   equivalent_full_cycles=equivalent_full_cycles)


async def fitted_history(records: list[FitRecord], label: str, known: dict[str, FittedParameterSet],
                          credentials: Optional[str]) -> list[FittedParameterSet]:
    """The fitted set of each record, oldest test first; ``known`` sets by pipeline id are not read again."""
    async def one(record: FitRecord) -> FittedParameterSet:
        return known.get(record.pipeline_id) or await read_fitted_set(
            record.pipeline_id, label, record.test, record.tested_at, record.equivalent_full_cycles, credentials)

    return list(await asyncio.gather(*(one(r) for r in records)))
