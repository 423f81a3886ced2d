"""A cell's fit history, kept in Ionworks: one pipeline per fitted test, found again by its marker.

Each per-test refit pipeline carries a marker in its description,
``[iwp-fit:<cell instance id> test=<label> at=<time> efc=<cycles> key=<fit key>]`` (label URL-quoted; the key
covers the test's data and the pipeline config, see :func:`fit_key`), so
the history can be rebuilt from Ionworks alone: a new Prefect database or a second Prefect server sees the same
trajectory. :func:`parameter_history` turns it into a polars frame, one row per fitted test.

Example:
    ```python
    from prefect import flow
    from ionworks_prefect import CellTarget, parameter_history

    @flow
    def trajectory():
        history = parameter_history(CellTarget(specification="NMC811 21700", instance="cell-7"))
        print(history.select("test", "tested_at", "rmse_mv"))
    ```
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Optional
from urllib.parse import quote, unquote

import polars as pl
from ionworks import Ionworks
from pydantic import BaseModel

from ._calls import call
from .cell_tests import CellTest, cell_label, find_cell_instance, parse_time
from .credentials import CredentialsArg, resolve_credentials
from .measurements import CellArg
from .parameter_sets import FittedParameterSet
from .pipelines import read_result
from .retries import ionworks_task

FIT_MARKER_PREFIX = "iwp-fit:"
_MARKER = re.compile(r"\[iwp-fit:(?P<cell>\S+) test=(?P<test>\S+) at=(?P<at>\S+) efc=(?P<efc>\S+) "
                     r"key=(?P<key>[0-9a-f]+)\]")
ALIAS_PREFIX = "iwp-alias:"
_ALIAS = re.compile(r"\[iwp-alias:([a-z0-9][a-z0-9-]*)\]")
PAGE_SIZE = 100
#: Columns every history frame has, before one column per fitted parameter.
HISTORY_COLUMNS = ("test", "tested_at", "equivalent_full_cycles", "pipeline_id", "fitted_at", "rmse_mv")


class FitRecord(BaseModel):
    """One per-test refit pipeline, as its marker and status describe it."""

    pipeline_id: str
    cell_instance_id: str
    test: str
    tested_at: Optional[datetime]
    equivalent_full_cycles: Optional[float]
    fit_key: str
    status: str
    is_failed: bool
    is_terminal: bool
    description: str = ""
    aliases: list[str] = []

    @property
    def succeeded(self) -> bool:
        """True once the pipeline finished without failing."""
        return self.is_terminal and not self.is_failed


def fit_key(test: CellTest, recipe: dict[str, Any]) -> str:
    """16 hex digits of sha256 over the test's data version and the recipe of its pipeline.

    A test counts as fitted when a successful pipeline carries its current key: new data in the test, or a
    different recipe (another pipeline file, other parameters, a new default refit), refits it.

    Example:
        >>> fit_key(test, {"default": "ageing refit 1", "model": "SPMe"})
        '5d41402abc4b2a76'
    """
    body = json.dumps({"data": test.data_version, "recipe": recipe}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def fit_marker(test: CellTest, key: str) -> str:
    """The description marker of a refit of ``test`` with fit key ``key``.

    Example:
        >>> fit_marker(test, fit_key(test, config))
        '[iwp-fit:1c4f... test=RPT%203 at=2026-11-03T09:00:00+00:00 efc=120 key=5d41402abc4b2a76]'
    """
    at = test.tested_at.isoformat() if test.tested_at else "-"
    efc = f"{test.equivalent_full_cycles:g}" if test.equivalent_full_cycles is not None else "-"
    return (f"[{FIT_MARKER_PREFIX}{test.cell_instance_id} test={quote(test.label, safe='')} at={at} efc={efc} "
            f"key={key}]")


def parse_fit_marker(description: str | None) -> dict[str, object] | None:
    """The fields of a fit marker in a pipeline description, or None when it has none.

    Example:
        >>> parse_fit_marker(fit_marker(test))["test"] == test.label
        True
    """
    found = _MARKER.search(description or "")
    if found is None:
        return None
    at, efc = found["at"], found["efc"]
    return {"cell_instance_id": found["cell"], "test": unquote(found["test"]),
            "tested_at": parse_time(None if at == "-" else at),
            "equivalent_full_cycles": None if efc == "-" else float(efc), "fit_key": found["key"]}


def _pages(client: Ionworks, cell_instance_id: str) -> Iterator[list]:
    """Pipelines with this cell's marker, newest first, page by page until the list ends.

    As the client's ``collect_all_pages`` does, the offset moves by what a page held and the list ends at an empty
    page or at its ``total``, so a server that caps pages smaller than asked skips nothing; the marker is checked
    on every record (:func:`list_fit_records`), so a server that ignores the ``description`` filter costs pages only.
    """
    offset = 0
    while True:
        page = call("list refit pipelines", client.pipeline.list,
                    description=f"ilike.%{FIT_MARKER_PREFIX}{cell_instance_id} %", order_by="created_at",
                    order="desc", limit=PAGE_SIZE, offset=offset)
        yield list(page)
        offset += len(page)
        if not page or offset >= page.total:
            return


def list_fit_records(client: Ionworks, cell_instance_id: str) -> list[FitRecord]:
    """Every refit pipeline of one cell, newest first (any status).

    Example:
        >>> [r.test for r in list_fit_records(client, instance_id) if r.succeeded]
    """
    records: dict[str, FitRecord] = {}
    for page in _pages(client, cell_instance_id):
        for pipeline in page:
            fields = parse_fit_marker(pipeline.description)
            if fields is not None and fields["cell_instance_id"] == cell_instance_id:
                records.setdefault(pipeline.id, FitRecord(
                    pipeline_id=pipeline.id, status=pipeline.status, is_failed=pipeline.is_failed,
                    is_terminal=pipeline.is_terminal, description=pipeline.description or "",
                    aliases=_ALIAS.findall(pipeline.description or ""), **fields))
    return list(records.values())


def latest_per_test(records: list[FitRecord]) -> list[FitRecord]:
    """The newest successful fit of each test, oldest test first (untimed tests last, by label)."""
    chosen: dict[str, FitRecord] = {}
    for record in records:  # newest first
        if record.succeeded:
            chosen.setdefault(record.test, record)
    return sorted(chosen.values(), key=lambda r: (r.tested_at is None, r.tested_at or datetime.min, r.test))


def read_fitted_sets(client: Ionworks, records: list[FitRecord], label: str,
                     known: dict[str, FittedParameterSet] | None = None) -> list[FittedParameterSet]:
    """The fitted parameter set of each record, in the records' order; ``known`` sets (by pipeline id) are not read.

    The results are read concurrently (a few threads), so a long history costs about one read's time.
    """
    known = known or {}

    def read(record: FitRecord) -> FittedParameterSet:
        return known.get(record.pipeline_id) or FittedParameterSet.from_pipeline_result(
            read_result(client, record.pipeline_id), cell=label, test=record.test, tested_at=record.tested_at,
            equivalent_full_cycles=record.equivalent_full_cycles)

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(records)))) as pool:
        return list(pool.map(read, records))


def history_frame(sets: list[FittedParameterSet]) -> pl.DataFrame:
    """One row per fitted test: ``HISTORY_COLUMNS`` (``rmse_mv`` is the worst objective's RMSE), then
    ``rmse_mv_by_objective`` and one column per fitted parameter, in the order they first appear.

    Example:
        >>> history_frame(sets).columns[:3]
        ['test', 'tested_at', 'equivalent_full_cycles']
    """
    names = list(dict.fromkeys(p.name for s in sets for p in s.parameters))  # knots too: the frame is for analysis
    schema = {"test": pl.String, "tested_at": pl.Datetime("us", "UTC"), "equivalent_full_cycles": pl.Float64,
              "pipeline_id": pl.String, "fitted_at": pl.Datetime("us", "UTC"), "rmse_mv": pl.Float64,
              "rmse_mv_by_objective": pl.List(pl.Struct({"objective": pl.String, "rmse_mv": pl.Float64})),
              **{name: pl.Float64 for name in names}}
    rows = [{"test": s.test, "tested_at": s.tested_at, "equivalent_full_cycles": s.equivalent_full_cycles,
             "pipeline_id": s.pipeline_id, "fitted_at": s.created_at,
             "rmse_mv": max(s.rmse_mv.values()) if s.rmse_mv else None,
             "rmse_mv_by_objective": [{"objective": k, "rmse_mv": v} for k, v in s.rmse_mv.items()],
             **{name: s.values.get(name) for name in names}} for s in sets]
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


@ionworks_task(
    name="Read parameter history",
    description="Rebuild a cell's fitted-parameter trajectory from its per-test refit pipelines in Ionworks.",
)
def parameter_history(cell: CellArg, credentials: CredentialsArg = None) -> pl.DataFrame:
    """A cell's parameter trajectory: one row per fitted test, oldest first, rebuilt from Ionworks alone.

    Args:
        cell: A cell instance id or a ``CellTarget`` (specification and instance names).
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the environment.

    Returns:
        A polars frame with ``test``, ``tested_at``, ``equivalent_full_cycles``, ``pipeline_id``, ``fitted_at``,
        ``rmse_mv`` (worst objective, mV), ``rmse_mv_by_objective`` (list of ``{objective, rmse_mv}``) and one
        column per fitted parameter. Empty (with those columns) for a cell never refitted.

    Raises:
        IonworksRequestError: Ionworks refused a request.
        IonworksTransientError: Ionworks could not be reached; retried by the task's retry policy.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import CellTarget, parameter_history

        @flow
        def diffusivity_trend():
            history = parameter_history(CellTarget(specification="NMC811 21700", instance="cell-7"))
            print(history.select("test", "Negative particle diffusivity [m2.s-1]"))
        ```
    """
    client = resolve_credentials(credentials).get_client()
    instance_id = find_cell_instance(client, cell)
    records = latest_per_test(list_fit_records(client, instance_id)) if instance_id else []
    return history_frame(read_fitted_sets(client, records, cell_label(cell)))
