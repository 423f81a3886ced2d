"""Batched status reads of Ionworks resources, as the status poller (``status_poller.py``) makes them each tick.

- pipelines and simple pipelines: the project's ``pending``/``running`` ones through the list filter the
  official client documents (``status=in.(pending,running)``, one page of up to 1,000 pipelines or 100 simple
  pipelines); the watched pipelines that left that set (they finished, or live elsewhere) are listed by id in
  one more request (``id=in.(...)``, up to 50 ids a request; simple pipelines have no ``id`` filter), and any
  still missing is read on its own;
- simulations: ``POST /simulations/statuses`` chunked at its 1,000-id limit, then one read of each simulation
  whose job completed (a simulation is done only once its record has results, ``storage_folder``).

Every read returns, per id, a :class:`~ionworks_prefect.waiting.Snapshot` or the typed error of that id's read.
Records are checked against the official client's pydantic models; ids are checked and path-escaped
(:mod:`ionworks_prefect.resource_ids`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Union
from urllib.parse import urlencode

import httpx
from ionworks.pipeline import PipelineSubmissionResponse
from ionworks.simple_pipeline import SimplePipelineSubmissionResponse
from pydantic import BaseModel, ValidationError

from ._calls import error_from_http_response
from .exceptions import IonworksPrefectError, IonworksRequestError, IonworksTransientError
from .resource_ids import resource_path
from .waiting import Snapshot

Outcome = Union[Snapshot, Exception]
#: Statuses of a pipeline (and simple pipeline) that is not finished, from the public API reference. Only a
#: shortcut: a watched id missing from the listed set is read on its own and its ``is_terminal`` decides.
OPEN_STATUSES = ("pending", "running")
#: Job statuses that end a simulation without results (the client's ``get_statuses`` docstring lists them).
FAILED_JOB_STATUSES = frozenset({"failed", "canceled"})
#: The most ids ``POST /simulations/statuses`` answers per request (``ionworks.simulation._STATUSES_PAGE_SIZE``).
STATUSES_CHUNK = 1000
#: Ids per ``id=in.(...)`` list read: ~2 kB of query for UUIDs, well inside common URL limits.
IDS_PER_LIST = 50
#: Ids that can stand in an ``in.(...)`` list as they are (no commas, parentheses or quotes); others are read alone.
_LISTABLE_ID = re.compile(r"[A-Za-z0-9_-]+")


#: One TLS context for every reader of the process: httpx builds one per client from certifi's bundle (about
#: 40 ms of CPU).
_tls_context = cache(httpx.create_ssl_context)


class StatusReader:
    """Async JSON requests with the official client's base URL, auth headers and timeout; follows redirects.

    Example:
        >>> await StatusReader(credentials.get_client()).get_json("/pipelines/abc", "get pipeline")
    """

    def __init__(self, client: Any) -> None:
        self.api_url: str = client.api_url
        self._headers = {str(k): str(v) for k, v in client.session.headers.items()}
        self._timeout = float(getattr(client, "request_timeout", None) or 10)
        self.key = (self.api_url, tuple(sorted(self._headers.items())), self._timeout)
        self._http: httpx.AsyncClient | None = None

    async def get_json(self, path: str, action: str) -> Any:
        """GET ``path`` and return its JSON, raising the same typed errors as the client wrapper."""
        return await self._request("GET", path, action)

    async def post_json(self, path: str, body: Any, action: str) -> Any:
        """POST a JSON body (only for read-only queries such as batch status) and return the JSON answer."""
        return await self._request("POST", path, action, json=body)

    async def _request(self, method: str, path: str, action: str, **kwargs: Any) -> Any:
        if self._http is None:
            self._http = httpx.AsyncClient(headers=self._headers, timeout=httpx.Timeout(self._timeout),
                                           follow_redirects=True, verify=_tls_context())
        try:
            response = await self._http.request(method, f"{self.api_url}{path}", **kwargs)
        except httpx.TransportError as exc:
            raise IonworksTransientError(f"{type(exc).__name__}: {exc}", action=action) from exc
        if response.status_code >= 400:
            raise error_from_http_response(response, action)
        try:
            return response.json()
        except ValueError as exc:
            raise IonworksRequestError(f"The answer was not JSON ({response.headers.get('content-type')})",
                                       status_code=response.status_code, action=action) from exc


def _page(answer: Any, envelope: str, action: str) -> tuple[list[Any], int]:
    """Items and total of a list answer: ``{envelope: [...], "total": N}`` or a bare array, as the client reads."""
    if isinstance(answer, dict) and isinstance(answer.get(envelope), list):
        items = answer[envelope]
        total = answer.get("total")
        return items, total if isinstance(total, int) else len(items)
    if isinstance(answer, list):
        return answer, len(answer)
    raise IonworksRequestError(f"Unexpected list answer: expected '{envelope}' or an array", action=action)


async def _gather(calls: Iterable[Any]) -> list[Any]:
    return await asyncio.gather(*calls, return_exceptions=True)


@dataclass(frozen=True)
class ListedResource:
    """Pipelines or simple pipelines: a project's unfinished ones are listed in one page, the rest read by id."""

    collection: str
    noun: str
    #: The client's model of one record; a record it would reject is an error, not a status.
    model: type[BaseModel]
    envelope: str
    offset_param: str
    page_size: int
    #: Whether the client's ``list`` documents an ``id`` filter for this resource.
    id_filter: bool

    def snapshot(self, record: Any) -> Snapshot:
        """The snapshot of one record, checked against the client's model first."""
        try:
            self.model.model_validate(record)
        except ValidationError as exc:
            raise IonworksRequestError(f"Unexpected {self.noun} record: {exc.errors()[0]['msg']} "
                                       f"at {'.'.join(map(str, exc.errors()[0]['loc']))}",
                                       action=f"get {self.noun}") from exc
        return Snapshot.from_record(record)

    async def _list(self, reader: StatusReader, project_id: str, limit: int, **filters: Any) -> dict[str, Any]:
        """The project's records matching ``filters`` (all pages), by id, with the client's parameter names."""
        found: dict[str, Any] = {}
        offset = 0
        while True:
            query = urlencode({"project_id": project_id, "limit": limit, self.offset_param: offset, **filters,
                               "order_by": "created_at", "order": "asc"})
            answer = await reader.get_json(f"{self.collection}?{query}", f"list {self.noun}s")
            items, total = _page(answer, self.envelope, f"list {self.noun}s")
            found.update((item["id"], item) for item in items if isinstance(item, dict) and isinstance(item.get("id"), str))
            offset += len(items)
            if not items or offset >= total:
                return found

    async def read(self, reader: StatusReader, scope: str | None, ids: list[str], *, batched: bool) -> dict[str, Outcome]:
        found: dict[str, Any] = {}
        if batched and scope:
            found = await self._list(reader, scope, self.page_size, status=f"in.({','.join(OPEN_STATUSES)})")
            left = [i for i in ids if i not in found and _LISTABLE_ID.fullmatch(i)] if self.id_filter else []
            for start in range(0, len(left), IDS_PER_LIST):
                chunk = left[start:start + IDS_PER_LIST]
                found.update(await self._list(reader, scope, len(chunk), id=f"in.({','.join(chunk)})"))
        outcomes = {i: self._outcome(found[i]) for i in ids if i in found}
        rest = [i for i in ids if i not in found]
        records = await _gather(reader.get_json(resource_path(self.collection, i), f"get {self.noun}") for i in rest)
        outcomes.update((i, r if isinstance(r, Exception) else self._outcome(r)) for i, r in zip(rest, records))
        return outcomes

    def _outcome(self, record: Any) -> Outcome:
        try:
            return self.snapshot(record)
        except IonworksRequestError as exc:
            return exc


def _simulation_done(record: Any) -> bool:
    """Results exist: the record has a ``storage_folder`` (or legacy ``simulation_data``), as the client checks."""
    return isinstance(record, dict) and bool(record.get("storage_folder") or record.get("simulation_data"))


@dataclass(frozen=True)
class SimulationResource:
    """Simulations: job statuses of up to 1,000 per request; each completed one's record read once for results."""

    noun: str = "simulation"

    async def read(self, reader: StatusReader, scope: str | None, ids: list[str], *, batched: bool) -> dict[str, Outcome]:
        if not batched:
            return await self._read_each(reader, ids)
        wanted = set(ids)
        statuses: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), STATUSES_CHUNK):
            chunk = ids[start:start + STATUSES_CHUNK]
            answer = await reader.post_json("/simulations/statuses", {"simulation_ids": chunk, "limit": len(chunk)},
                                            "get simulation statuses")
            if not isinstance(answer, list):
                raise IonworksRequestError("Unexpected simulation statuses: expected an array",
                                           action="get simulation statuses")
            # Items are {"simulation_id", "status", "error", "error_code", "updated_at"} per the client's
            # get_statuses docstring (it has no model); ids the service does not know are left out.
            statuses.update((item["simulation_id"], item) for item in answer
                            if isinstance(item, dict) and item.get("simulation_id") in wanted)
        outcomes: dict[str, Outcome] = {}
        for simulation_id, item in statuses.items():
            status = str(item.get("status"))
            if status != "completed":
                failed = status in FAILED_JOB_STATUSES
                outcomes[simulation_id] = Snapshot(status=status, is_terminal=failed, is_failed=failed, raw=item)
        completed = [s for s, item in statuses.items() if item.get("status") == "completed"]
        records = await _gather(reader.get_json(resource_path("/simulations", s), "get simulation") for s in completed)
        for simulation_id, record in zip(completed, records):
            outcomes[simulation_id] = record if isinstance(record, Exception) else Snapshot(
                status="completed", is_terminal=_simulation_done(record), is_failed=False, raw=statuses[simulation_id])
        return outcomes

    async def _read_each(self, reader: StatusReader, ids: list[str]) -> dict[str, Outcome]:
        """The client's own algorithm, one simulation at a time: its record, then its job unless it has results."""
        records = await _gather(reader.get_json(resource_path("/simulations", s), "get simulation") for s in ids)
        outcomes: dict[str, Outcome] = {}
        for simulation_id, record in zip(ids, records):
            if isinstance(record, Exception) or _simulation_done(record):
                outcomes[simulation_id] = record if isinstance(record, Exception) else Snapshot(
                    status="completed", is_terminal=True, is_failed=False, raw={})
                continue
            job_id = record.get("job_id") if isinstance(record, dict) else None
            if not job_id:
                continue
            try:
                job = await reader.get_json(resource_path("/jobs", job_id), "get simulation job")
                failed = bool(job["is_failed"])  # JobResponse: is_failed and status are required fields
                outcomes[simulation_id] = Snapshot(status=str(job["status"]), is_terminal=failed, is_failed=failed,
                                                   raw={"status": job["status"], "error": job.get("error")})
            except (IonworksPrefectError, KeyError, TypeError) as exc:
                outcomes[simulation_id] = exc if isinstance(exc, IonworksPrefectError) else IonworksRequestError(
                    f"Unexpected job record: {exc!r}", action="get simulation job")
        return outcomes


PIPELINES = ListedResource("/pipelines", "pipeline", PipelineSubmissionResponse, "pipelines", "skip", 1000, True)
#: ``limit`` is at most 100 for simple pipelines, and there is no ``id`` filter (the client's ``list`` docstring).
SIMPLE_PIPELINES = ListedResource("/simple_pipelines", "simple pipeline", SimplePipelineSubmissionResponse, "items",
                                  "offset", 100, False)
SIMULATIONS = SimulationResource()
Resource = Union[ListedResource, SimulationResource]
