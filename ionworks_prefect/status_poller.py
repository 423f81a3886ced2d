"""One status poller per event loop and credentials: every wait registers with it, each tick reads them all.

A tick reads the status of every outstanding resource in as few requests as the API allows:

- pipelines and simple pipelines: the project's ``pending``/``running`` ones through the list filter the
  official client documents (``status=in.(pending,running)``, one page of up to 1,000 pipelines or 100 simple
  pipelines), then one read of each watched id that is not in that set (it finished, or lives elsewhere);
- simulations: ``POST /simulations/statuses`` chunked at its 1,000-id limit, then one read of each simulation
  whose job completed (a simulation is done only once its record has results, ``storage_folder``).

So N waits cost O(1) requests per tick plus one read per completion. A tick is due when the most urgent wait's
:class:`~ionworks_prefect.waiting.PollSchedule` says so (never sooner after the last tick than the smallest
``first`` delay among the waits), and every registered wait gets the fresh status. A transient error on a read
reaches only the waits that read was for; they log it and keep waiting. A batch read the service refuses
outright (4xx) makes that project's resources be read one by one from then on, so it does not end any wait.

The poller's own task starts with the first wait and ends with the last; it runs in an empty context, so it
never logs into, or reports progress for, a task run (each wait does that itself from what it is handed).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union
from urllib.parse import quote, urlencode

import httpx
from ionworks.pipeline import PipelineSubmissionResponse
from ionworks.simple_pipeline import SimplePipelineSubmissionResponse
from pydantic import BaseModel, ValidationError

from ._calls import error_from_http_response
from .exceptions import InvalidResourceId, IonworksPrefectError, IonworksRequestError, IonworksTransientError
from .waiting import PollSchedule, Snapshot

_log = logging.getLogger(__name__)

Outcome = Union[Snapshot, Exception]
#: Statuses of a pipeline (and simple pipeline) that is not finished, from the public API reference. Only a
#: shortcut: a watched id missing from the listed set is read on its own and its ``is_terminal`` decides.
OPEN_STATUSES = ("pending", "running")
#: Job statuses that end a simulation without results (the client's ``get_statuses`` docstring lists them).
FAILED_JOB_STATUSES = frozenset({"failed", "canceled"})
#: The most ids ``POST /simulations/statuses`` answers per request (``ionworks.simulation._STATUSES_PAGE_SIZE``).
STATUSES_CHUNK = 1000


def check_resource_id(resource_id: Any) -> str:
    """Return ``resource_id`` if it can name exactly one resource in a URL, else raise :class:`InvalidResourceId`.

    Example:
        >>> check_resource_id("")
        Traceback (most recent call last):
        InvalidResourceId: ...
    """
    if not isinstance(resource_id, str) or not resource_id.strip():
        raise InvalidResourceId(f"An Ionworks id must be a non-empty string, got {resource_id!r}",
                                resource_id=resource_id)
    if resource_id in {".", ".."}:  # percent-escaping keeps dots, and URLs drop such path segments
        raise InvalidResourceId(f"{resource_id!r} is not an Ionworks id", resource_id=resource_id)
    return resource_id


def resource_path(collection: str, resource_id: str) -> str:
    """``collection/<id>`` with the id checked and path-escaped, so it cannot reach another URL.

    Example:
        >>> resource_path("/pipelines", "a/b")
        '/pipelines/a%2Fb'
    """
    return f"{collection}/{quote(check_resource_id(resource_id), safe='')}"


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
                                           follow_redirects=True)
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

    def snapshot(self, record: Any) -> Snapshot:
        """The snapshot of one record, checked against the client's model first."""
        try:
            self.model.model_validate(record)
        except ValidationError as exc:
            raise IonworksRequestError(f"Unexpected {self.noun} record: {exc.errors()[0]['msg']} "
                                       f"at {'.'.join(map(str, exc.errors()[0]['loc']))}",
                                       action=f"get {self.noun}") from exc
        return Snapshot.from_record(record)

    async def open_records(self, reader: StatusReader, project_id: str) -> dict[str, Any]:
        """Every pending or running record of the project, by id (all pages), with the client's parameter names."""
        found: dict[str, Any] = {}
        offset = 0
        while True:
            query = urlencode({"project_id": project_id, "limit": self.page_size, self.offset_param: offset,
                               "status": f"in.({','.join(OPEN_STATUSES)})", "order_by": "created_at", "order": "asc"})
            answer = await reader.get_json(f"{self.collection}?{query}", f"list {self.noun}s")
            items, total = _page(answer, self.envelope, f"list {self.noun}s")
            found.update((item["id"], item) for item in items if isinstance(item, dict) and isinstance(item.get("id"), str))
            offset += len(items)
            if not items or offset >= total:
                return found

    async def read(self, reader: StatusReader, scope: str | None, ids: list[str], *, batched: bool) -> dict[str, Outcome]:
        listed = await self.open_records(reader, scope) if batched and scope else {}
        outcomes: dict[str, Outcome] = {}
        for resource_id in ids:
            if resource_id in listed:
                outcomes[resource_id] = self._outcome(listed[resource_id])
        rest = [i for i in ids if i not in listed]
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


PIPELINES = ListedResource("/pipelines", "pipeline", PipelineSubmissionResponse, "pipelines", "skip", 1000)
#: ``limit`` is at most 100 for simple pipelines (the client's ``list`` docstring).
SIMPLE_PIPELINES = ListedResource("/simple_pipelines", "simple pipeline", SimplePipelineSubmissionResponse, "items",
                                  "offset", 100)
SIMULATIONS = SimulationResource()
Resource = Union[ListedResource, SimulationResource]
Summarize = Callable[[Mapping[str, Snapshot]], Snapshot]


class Watch:
    """One wait's registration: the resources it waits on, their latest snapshots, when it next wants a read.

    Use as a context manager so the poller forgets it however the wait ends.
    """

    def __init__(self, poller: StatusPoller, resource: Resource, ids: list[str], scope: str | None,
                 schedule: PollSchedule, summarize: Summarize | None) -> None:
        self.poller = poller
        self.resource = resource
        self.ids = list(dict.fromkeys(check_resource_id(i) for i in ids))
        if not self.ids:
            raise InvalidResourceId("Nothing to wait for: no ids were given", resource_id=ids)
        self.scope = scope
        self.latest: dict[str, Snapshot] = {}
        self.first = schedule.first
        self.due = -math.inf  # read at the next tick
        self._delays = schedule.delays()
        self._summarize = summarize or (lambda latest: latest[self.ids[0]])
        self._error: Exception | None = None
        self._fresh = asyncio.Event()

    @property
    def open_ids(self) -> list[str]:
        """Ids not yet seen in a terminal state."""
        return [i for i in self.ids if i not in self.latest or not self.latest[i].is_terminal]

    def receive(self, outcomes: Mapping[str, Outcome], observed_at: float) -> None:
        """Take one tick's outcomes for this watch's open ids and schedule its next read."""
        pause = next(self._delays)
        fresh = False
        for resource_id in self.open_ids:
            outcome = outcomes.get(resource_id)
            if isinstance(outcome, Exception):
                self._error = outcome
                pause = max(pause, getattr(outcome, "retry_after", None) or 0.0)
            elif outcome is not None:
                self.latest[resource_id] = outcome
            fresh = fresh or outcome is not None
        self.due = observed_at + pause
        if fresh:
            self._fresh.set()

    async def next(self, timeout: float) -> Snapshot:
        """The summary after the next tick that brought news; raises that tick's error, or ``TimeoutError``."""
        self.poller.ensure_running()
        await asyncio.wait_for(self._fresh.wait(), max(timeout, 0.0))
        self._fresh.clear()
        error, self._error = self._error, None
        if error is not None:
            raise error
        return self._summarize(self.latest)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.poller.forget(self)


_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, StatusPoller]] = (
    weakref.WeakKeyDictionary()
)


class StatusPoller:
    """Reads the status of every registered wait's resources, batched, on the event loop it was made for.

    Example:
        >>> with StatusPoller.for_client(client).watch(PIPELINES, [pipeline_id], scope=project_id) as watch:
        ...     snapshot = await watch.next(timeout=60)
    """

    def __init__(self, reader: StatusReader) -> None:
        self.reader = reader
        self._watches: set[Watch] = set()
        self._unbatched: set[tuple[Resource, str | None]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._last_tick = -math.inf

    @classmethod
    def for_client(cls, client: Any) -> StatusPoller:
        """The poller of the running event loop for this client's URL, credentials and timeout."""
        reader = StatusReader(client)
        per_loop = _pollers.setdefault(asyncio.get_running_loop(), {})
        if reader.key not in per_loop:
            per_loop[reader.key] = cls(reader)
        return per_loop[reader.key]

    def watch(self, resource: Resource, ids: list[str], *, schedule: PollSchedule, scope: str | None = None,
              summarize: Summarize | None = None) -> Watch:
        """Register a wait on ``ids``; ``scope`` is the project for (simple) pipelines; raises :class:`InvalidResourceId`."""
        watch = Watch(self, resource, ids, scope, schedule, summarize)
        self._watches.add(watch)
        self._wake.set()
        self.ensure_running()
        return watch

    def forget(self, watch: Watch) -> None:
        """Stop reading for ``watch``."""
        self._watches.discard(watch)
        self._wake.set()

    def ensure_running(self) -> None:
        """Start the polling task if it is not running (it ends by itself when no wait is registered)."""
        if self._watches and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._run(), context=contextvars.Context())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._watches:
            self._wake.clear()
            waiting = [w for w in self._watches if w.open_ids]
            if not waiting:
                await self._wake.wait()
                continue
            at = max(min(w.due for w in waiting), self._last_tick + min(w.first for w in waiting))
            if at > loop.time():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), at - loop.time())
                continue
            self._last_tick = loop.time()
            await self._tick(waiting)

    async def _tick(self, watches: list[Watch]) -> None:
        groups: dict[tuple[Resource, str | None], set[str]] = {}
        for watch in watches:
            groups.setdefault((watch.resource, watch.scope), set()).update(watch.open_ids)
        results = await asyncio.gather(*(self._read(resource, scope, sorted(ids))
                                         for (resource, scope), ids in groups.items()))
        outcomes = dict(zip(groups, results))
        observed_at = asyncio.get_running_loop().time()
        for watch in watches:
            watch.receive(outcomes[(watch.resource, watch.scope)], observed_at)

    async def _read(self, resource: Resource, scope: str | None, ids: list[str]) -> dict[str, Outcome]:
        batched = (resource, scope) not in self._unbatched
        try:
            return await resource.read(self.reader, scope, ids, batched=batched)
        except IonworksTransientError as exc:
            return dict.fromkeys(ids, exc)
        except IonworksPrefectError as exc:
            if not batched:
                return dict.fromkeys(ids, exc)
            _log.warning("The batch status read of %ss failed (%s); reading them one by one from now on.",
                         resource.noun, exc)
            self._unbatched.add((resource, scope))
            return await self._read(resource, scope, ids)
        except Exception as exc:  # noqa: BLE001 - an unexpected answer: the waits raise it instead of hanging
            return dict.fromkeys(ids, exc)
