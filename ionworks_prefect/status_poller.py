"""One status poller per event loop and credentials: every wait registers with it, each tick reads them all.

A tick reads the status of every outstanding resource in as few requests as the API allows
(``status_reads.py``: one list of a project's unfinished pipelines and one list by id of the watched ones that
left it, one batch status request per 1,000 simulations plus one read of each that completed), so N waits cost
O(1) requests per tick. A tick is due when the most urgent wait's :class:`~ionworks_prefect.waiting.PollSchedule` says
so (never sooner after the last tick than the smallest ``first`` delay among the waits), and every registered
wait gets the fresh status. A transient error on a read reaches only the waits that read was for; they log it
and keep waiting. A batch read the service refuses outright (4xx) makes that project's resources be read one
by one for the next five minutes, so it ends no wait.

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
from collections.abc import Callable, Mapping
from typing import Any

from .exceptions import InvalidResourceId, IonworksPrefectError, IonworksTransientError
from .resource_ids import check_resource_id
from .status_reads import Outcome, Resource, StatusReader
from .waiting import PollSchedule, Snapshot

_log = logging.getLogger(__name__)

#: After a refused batch read, how long the resources it covered are read one by one before batching again.
UNBATCHED_SECONDS = 300.0
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

    def receive(self, outcomes: Mapping[str, Outcome], tick_started: float) -> None:
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
        self.due = tick_started + pause
        if fresh:
            self._fresh.set()

    def fail(self, error: Exception) -> None:
        """Make the next :meth:`next` raise ``error``."""
        self._error = error
        self._fresh.set()

    async def next(self, timeout: float) -> Snapshot:
        """The summary after the next tick that brought news; raises that tick's error, or ``TimeoutError``."""
        self.poller.ensure_running()
        if not self._fresh.is_set():
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
        >>> poller = StatusPoller.for_client(client)
        >>> with poller.watch(PIPELINES, [pipeline_id], schedule=PollSchedule(), scope=project_id) as watch:
        ...     snapshot = await watch.next(timeout=60)
    """

    def __init__(self, reader: StatusReader) -> None:
        self.reader = reader
        self._watches: set[Watch] = set()
        self._unbatched: dict[tuple[Resource, str | None], float] = {}  # until when, loop time
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
            self._task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task) -> None:
        """If the polling task died, hand its error to every wait rather than leave them waiting for nothing."""
        if task.cancelled() or task.exception() is None:
            return
        _log.error("The Ionworks status poller stopped: %r", task.exception())
        for watch in self._watches:
            watch.fail(IonworksPrefectError(f"The status poller stopped: {task.exception()!r}"))

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
        for watch in watches:  # next reads count from this tick's start, so slow answers do not stretch ticks
            watch.receive(outcomes[(watch.resource, watch.scope)], self._last_tick)

    async def _read(self, resource: Resource, scope: str | None, ids: list[str]) -> dict[str, Outcome]:
        now = asyncio.get_running_loop().time()
        batched = self._unbatched.get((resource, scope), -math.inf) <= now
        try:
            return await resource.read(self.reader, scope, ids, batched=batched)
        except IonworksTransientError as exc:
            return dict.fromkeys(ids, exc)
        except IonworksPrefectError as exc:
            if not batched:
                return dict.fromkeys(ids, exc)
            _log.warning("The batch status read of %ss failed (%s); reading them one by one for %g s.",
                         resource.noun, exc, UNBATCHED_SECONDS)
            self._unbatched[(resource, scope)] = now + UNBATCHED_SECONDS
            return await self._read(resource, scope, ids)
        except Exception as exc:  # noqa: BLE001 - an unexpected answer: the waits raise it instead of hanging
            return dict.fromkeys(ids, exc)
