"""Waiting for remote Ionworks jobs: async adaptive polling, progress artifact, timeout, remote cancel.

The polling core is a coroutine, so any number of waits share one event loop. Status reads go through one
shared ``httpx.AsyncClient`` per event loop and credentials (same URL and auth headers as the official client),
so a wait holds no thread. Only remote cancel uses the blocking client, in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional
from uuid import UUID

import anyio
import httpx
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.context import TaskRunContext
from prefect.exceptions import TerminationSignal

from ._calls import error_from_http_response, run_logger
from .exceptions import IonworksTransientError, WaitTimedOut

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollSchedule:
    """Delays between polls: ``first``, then ×``factor`` each poll, never above ``ceiling`` seconds.

    Example:
        >>> list(itertools.islice(PollSchedule().delays(), 4))
        [0.2, 0.3, 0.45, 0.675]
    """

    first: float = 0.2
    factor: float = 1.5
    ceiling: float = 5.0

    def delays(self) -> Iterator[float]:
        """Yield the delay before each successive poll, forever."""
        delay = self.first
        while True:
            yield min(delay, self.ceiling)
            delay = min(delay * self.factor, self.ceiling)


@dataclass
class Snapshot:
    """One observation of a remote job: its status plus optional progress figures."""

    status: str
    is_terminal: bool
    is_failed: bool
    completed: Optional[int] = None
    total: Optional[int] = None
    best_cost: Optional[float] = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Snapshot:
        """The snapshot of a pipeline-like record carrying ``status``, ``is_terminal`` and ``is_failed``."""
        return cls(status=record["status"], is_terminal=record["is_terminal"], is_failed=record["is_failed"], raw=record)

    def progress_percent(self) -> float:
        """Progress in percent: elements done over total, 100 when finished."""
        if self.is_terminal:
            return 100.0
        if self.total:
            return round(100.0 * (self.completed or 0) / self.total, 1)
        return 0.0

    def describe(self) -> str:
        """A one-line human description of this snapshot."""
        text = self.status
        if self.total:
            text += f", {self.completed or 0}/{self.total} done"
        if self.best_cost is not None:
            text += f", best cost {self.best_cost:.4g}"
        return text


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


class StatusReader:
    """Async JSON GETs against the Ionworks API with the official client's URL and auth headers.

    Example:
        >>> reader = StatusReader(credentials.get_client())
        >>> await reader.get_json("/pipelines/abc", "get pipeline")
    """

    def __init__(self, client: Any) -> None:
        self.api_url = client.api_url
        self._headers = {str(k): str(v) for k, v in client.session.headers.items()}
        self._key = (self.api_url, tuple(sorted(self._headers.items())))

    def _http(self) -> httpx.AsyncClient:
        per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
        if self._key not in per_loop:
            per_loop[self._key] = httpx.AsyncClient(
                headers=self._headers,
                timeout=httpx.Timeout(30.0, pool=None),
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
            )
        return per_loop[self._key]

    async def get_json(self, path: str, action: str) -> Any:
        """GET ``path`` and return its JSON, raising the same typed errors as the client wrapper."""
        return await self._request("GET", path, action)

    async def post_json(self, path: str, body: Any, action: str) -> Any:
        """POST a JSON body (only for read-only queries such as batch status) and return the JSON answer."""
        return await self._request("POST", path, action, json=body)

    async def _request(self, method: str, path: str, action: str, **kwargs: Any) -> Any:
        try:
            response = await self._http().request(method, f"{self.api_url}{path}", **kwargs)
        except httpx.TransportError as exc:
            raise IonworksTransientError(f"{type(exc).__name__}: {exc}", action=action) from exc
        if response.status_code >= 400:
            raise error_from_http_response(response, action)
        return response.json()


class _Progress:
    """A Prefect progress artifact, created on first report and updated on change; a no-op outside a task."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = TaskRunContext.get() is not None
        self.artifact_id: UUID | None = None
        self.last: tuple[float, str] | None = None

    async def report(self, snapshot: Snapshot) -> None:
        if not self.enabled:
            return
        state = (snapshot.progress_percent(), f"{self.label}: {snapshot.describe()}")
        if state == self.last:
            return
        try:
            if self.artifact_id is None:
                self.artifact_id = await acreate_progress_artifact(progress=state[0], description=state[1])
            else:
                await aupdate_progress_artifact(self.artifact_id, progress=state[0], description=state[1])
            self.last = state
        except Exception as exc:  # noqa: BLE001 - progress reporting never fails a wait
            _log.warning("Could not update the progress artifact for %s: %s", self.label, exc)


async def _cancel_remote(label: str, cancel: Callable[[], Any]) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(30):
        try:
            await asyncio.to_thread(cancel)
            run_logger().warning("Wait for %s was cancelled; asked Ionworks to cancel it.", label)
        except Exception as exc:  # noqa: BLE001 - best effort while cancelling
            run_logger().error("Could not cancel %s remotely: %s", label, exc)


async def wait_until_terminal(
    label: str,
    resource_id: str,
    poll: Callable[[], Awaitable[Snapshot]],
    *,
    cancel: Callable[[], Any] | None = None,
    max_wait_seconds: float = 3600.0,
    schedule: PollSchedule = PollSchedule(),
) -> Snapshot:
    """Poll until the job is terminal and return the last snapshot.

    Transient poll errors are retried inside the wait. On timeout raises :class:`WaitTimedOut` carrying the
    last status (the remote job keeps running). If the wait is cancelled (flow run cancelled, task timeout,
    Ctrl-C) the remote job is cancelled with ``cancel`` before the cancellation propagates.

    Example:
        >>> final = await wait_until_terminal("pipeline p1", "p1", poll, cancel=cancel, max_wait_seconds=600)
    """
    logger = run_logger()
    progress = _Progress(label)
    deadline = time.monotonic() + max_wait_seconds
    delays = schedule.delays()
    last: Snapshot | None = None
    try:
        while True:
            try:
                snapshot = await poll()
            except IonworksTransientError as exc:
                logger.warning("Polling %s hit a transient error, will poll again: %s", label, exc)
                pause = max(next(delays), exc.retry_after or 0.0)
            else:
                if last is None or snapshot.status != last.status:
                    logger.info("%s is %s", label, snapshot.describe())
                last = snapshot
                await progress.report(snapshot)
                if snapshot.is_terminal:
                    return snapshot
                pause = next(delays)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                status = last.status if last else None
                raise WaitTimedOut(
                    f"{label} did not finish within {max_wait_seconds:g} s (last status: {status}); "
                    "it keeps running in Ionworks.",
                    resource_id=resource_id, last_status=status,
                )
            await asyncio.sleep(min(pause, remaining))
    except (asyncio.CancelledError, TerminationSignal, KeyboardInterrupt):
        if cancel is not None and not (last and last.is_terminal):
            await _cancel_remote(label, cancel)
        raise
