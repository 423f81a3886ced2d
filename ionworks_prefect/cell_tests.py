"""A cell's reference performance tests (RPTs), as the refit sees them: measurements grouped into tests.

A test is one time-series measurement, or the measurements that carry the same ``rpt:<label>`` tag (for
example the 0.5C and 1C discharges of one check-up). Its time is the earliest ``start_time`` of its
measurements; its throughput, where known, is an ``efc:<equivalent full cycles>`` tag. Each measurement has a
``version`` (its content digest tag) so a test whose data changed counts as new.

Example:
    ```python
    from prefect import flow
    from ionworks_prefect import CellTarget, gather_cell_tests

    @flow
    def list_tests():
        for test in gather_cell_tests(CellTarget(specification="NMC811 21700", instance="cell-7")):
            print(test.label, test.tested_at, [m.name for m in test.measurements])
    ```
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, Optional

from ionworks import Ionworks
from pydantic import BaseModel, Field

from ._calls import call
from .credentials import CredentialsArg, resolve_credentials
from .measurement_upload import DIGEST_TAG_PREFIX
from .measurements import CellArg, CellTarget
from .resource_ids import check_resource_id, path_segment
from .retries import ionworks_task

RPT_TAG_PREFIX = "rpt:"
PAGE_SIZE = 100
EFC_TAG_PREFIX = "efc:"


class MeasurementRef(BaseModel):
    """A measurement a refit uses; ``version`` changes whenever its data does."""

    id: str
    name: str
    cell_instance_id: str
    version: str = Field(description="Content digest tag, else the measurement id.")
    start_time: Optional[datetime] = None


class CellTest(BaseModel):
    """One reference performance test of one cell: the measurements fitted together.

    Example:
        >>> test.label, test.tested_at, test.data_version[:12]
        ('RPT 3', datetime.datetime(2026, 11, 3, 9, 0, tzinfo=...), '5d41402abc4b')
    """

    cell_instance_id: str
    label: str = Field(description="The rpt:<label> tag, or the measurement name for an untagged measurement.")
    measurements: list[MeasurementRef]
    tested_at: Optional[datetime] = Field(default=None, description="Earliest start_time of its measurements.")
    equivalent_full_cycles: Optional[float] = Field(default=None, description="Throughput from an efc:<n> tag.")

    @property
    def data_version(self) -> str:
        """sha256 over the measurement ids and versions: changes when any of its data does."""
        body = sorted((m.id, m.version) for m in self.measurements)
        return hashlib.sha256(json.dumps(body).encode()).hexdigest()


def _tag_value(tags: Iterable[str], prefix: str) -> str | None:
    return next((t[len(prefix):] for t in tags if t.lower().startswith(prefix) and len(t) > len(prefix)), None)


def _version(tags: Iterable[str], measurement_id: str) -> str:
    digest = [t for t in tags if t.lower().startswith(DIGEST_TAG_PREFIX)]
    return digest[0] if digest else f"id:{measurement_id}"


def parse_time(value: str | None) -> datetime | None:
    """An ISO time as an aware datetime (naive times are taken as UTC); None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _efc(tags: Iterable[str]) -> float | None:
    raw = _tag_value(tags, EFC_TAG_PREFIX)
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def group_tests(cell_instance_id: str, measurements: Iterable[Any]) -> list[CellTest]:
    """Group measurement records (the client's ``CellMeasurement``) into tests, oldest first.

    Untimed tests keep the order the measurements were given in, after the timed ones.

    Example:
        >>> [t.label for t in group_tests("c1", client.cell_measurement.list("c1"))]
        ['RPT 0', 'RPT 1']
    """
    groups: dict[str, list[Any]] = {}
    for m in measurements:
        tags = list(m.tags or [])
        groups.setdefault(_tag_value(tags, RPT_TAG_PREFIX) or m.name, []).append(m)
    tests = []
    for label, members in groups.items():
        refs = [MeasurementRef(id=m.id, name=m.name, cell_instance_id=cell_instance_id,
                               version=_version(m.tags or [], m.id), start_time=parse_time(m.start_time))
                for m in members]
        times = [r.start_time for r in refs if r.start_time is not None]
        cycles = [c for m in members if (c := _efc(m.tags or [])) is not None]
        tests.append(CellTest(cell_instance_id=cell_instance_id, label=label, measurements=refs,
                              tested_at=min(times) if times else None,
                              equivalent_full_cycles=max(cycles) if cycles else None))
    order = {id(t): i for i, t in enumerate(tests)}
    return sorted(tests, key=lambda t: (t.tested_at is None, t.tested_at or datetime.min, order[id(t)]))


class CellIdentity(BaseModel):
    """A cell instance and its specification, by id and by name."""

    instance_id: str
    instance_name: str
    specification_id: str
    specification_name: str

    @property
    def label(self) -> str:
        """``specification/instance``: the name the cell's artifacts, runs and tags use."""
        return f"{self.specification_name}/{self.instance_name}"


def cell_label(cell: CellArg) -> str:
    """The label of a cell as given: ``specification/instance`` for a ``CellTarget``, else the instance id.

    Example:
        >>> cell_label(CellTarget(specification="NMC811 21700", instance="cell-7"))
        'NMC811 21700/cell-7'
    """
    if isinstance(cell, CellTarget):
        spec = cell.specification if isinstance(cell.specification, str) else cell.specification["name"]
        return f"{spec}/{cell.instance}"
    return cell


def specification_id(client: Ionworks, specification: str) -> str:
    """The id of a cell specification given by name (or already by id); a typed 404 error when it is neither."""
    found = call("find cell specification", client.cell_spec.list, name_exact=specification, limit=2)
    if found:
        return found[0].id
    return call("get cell specification", client.cell_spec.get, path_segment(specification)).id


def find_cell(client: Ionworks, cell: CellArg) -> CellIdentity | None:
    """The identity of an existing cell; None when a ``CellTarget`` names no existing cell (an unknown id: 404)."""
    if isinstance(cell, str):
        instance = call("get cell instance", client.cell_instance.get, path_segment(cell, "Ionworks cell instance id"))
        spec = call("get cell specification", client.cell_spec.get, instance.cell_specification_id)
        return CellIdentity(instance_id=instance.id, instance_name=instance.name, specification_id=spec.id,
                            specification_name=spec.name)
    spec_name = cell.specification if isinstance(cell.specification, str) else cell.specification["name"]
    specs = call("find cell specification", client.cell_spec.list, name_exact=spec_name, limit=2)
    if not specs:
        return None
    instances = call("find cell instance", client.cell_instance.list, specs[0].id, name_exact=cell.instance, limit=2)
    if not instances:
        return None
    return CellIdentity(instance_id=instances[0].id, instance_name=instances[0].name,
                        specification_id=specs[0].id, specification_name=specs[0].name)


def find_cell_instance(client: Ionworks, cell: CellArg) -> str | None:
    """The instance id of an existing cell (None when a ``CellTarget`` names no existing instance)."""
    if isinstance(cell, str):
        return check_resource_id(cell, "Ionworks cell instance id")
    found = find_cell(client, cell)
    return found.instance_id if found else None


def read_cell_tests(client: Ionworks, cell_instance_id: str) -> list[CellTest]:
    """The processed time-series measurements of one cell instance, grouped into tests."""
    listed = call("list measurements", client.cell_measurement.list, path_segment(cell_instance_id),
                  measurement_type="time_series", limit=1000, order_by="created_at", order="asc")
    return group_tests(cell_instance_id, [m for m in listed if m.processing_status in (None, "ready")])


@ionworks_task(name="List cells", description="Every cell instance of a cell specification, by name.")
def list_cells(specification: str, credentials: CredentialsArg = None) -> list[CellIdentity]:
    """The cell instances of a specification (given by name or id), in name order.

    Args:
        specification: The cell specification's name or id.
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the environment.

    Returns:
        One :class:`CellIdentity` per instance.

    Raises:
        IonworksNotFound: No specification has that name or id.
        IonworksTransientError: Ionworks could not be reached; retried by the task's retry policy.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import list_cells

        @flow
        def cell_names() -> list[str]:
            return [c.instance_name for c in list_cells("NMC811 21700")]
        ```
    """
    client = resolve_credentials(credentials).get_client()
    spec_id = specification_id(client, specification)
    spec = call("get cell specification", client.cell_spec.get, spec_id)
    cells: list[CellIdentity] = []
    while True:
        page = call("list cell instances", client.cell_instance.list, spec_id, limit=PAGE_SIZE, offset=len(cells))
        cells += [CellIdentity(instance_id=i.id, instance_name=i.name, specification_id=spec_id,
                               specification_name=spec.name) for i in page]
        if len(page) < PAGE_SIZE:
            return sorted(cells, key=lambda c: c.instance_name)


@ionworks_task(name="Identify cell", description="The cell instance and specification, by id and by name.")
def identify_cell(cell: CellArg, credentials: CredentialsArg = None) -> CellIdentity | None:
    """Look a cell up: its instance and specification ids and names.

    Args:
        cell: A cell instance id or a :class:`CellTarget` (specification and instance names).
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the environment.

    Returns:
        The :class:`CellIdentity`, or None when a ``CellTarget`` names no existing cell.

    Raises:
        IonworksNotFound: An instance id that does not exist.
        IonworksTransientError: Ionworks could not be reached; retried by the task's retry policy.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import CellTarget, identify_cell

        @flow
        def label_of(instance_id: str) -> str:
            return identify_cell(instance_id).label
        ```
    """
    return find_cell(resolve_credentials(credentials).get_client(), cell)


@ionworks_task(
    name="Gather cell tests",
    description="List a cell's processed time-series measurements, grouped into reference performance tests.",
)
def gather_cell_tests(cell: CellArg, credentials: CredentialsArg = None) -> list[CellTest]:
    """The reference performance tests of one cell, oldest first.

    Args:
        cell: A cell instance id or a :class:`CellTarget` (specification and instance names).
        credentials: An ``IonworksCredentials`` block, a saved block's name, or None for the environment.

    Returns:
        One :class:`CellTest` per ``rpt:<label>`` tag or untagged measurement; empty when the cell has no
        processed time series, or a ``CellTarget`` names no existing cell.

    Raises:
        IonworksRequestError: Ionworks refused a request (for example an unknown instance id: 404).
        IonworksTransientError: Ionworks could not be reached; retried by the task's retry policy.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect import CellTarget, gather_cell_tests

        @flow
        def how_many_tests() -> int:
            return len(gather_cell_tests(CellTarget(specification="NMC811 21700", instance="cell-7")))
        ```
    """
    client = resolve_credentials(credentials).get_client()
    instance_id = find_cell_instance(client, cell)
    return read_cell_tests(client, instance_id) if instance_id else []
