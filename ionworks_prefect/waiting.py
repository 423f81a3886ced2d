"""Waiting for remote Ionworks jobs: poll schedule, snapshots, progress artifact, timeout, remote cancel.

A wait is a coroutine registered with the process's status poller for its credentials
(``ionworks_prefect.status_poller``), which reads every registered wait's status in a few batched requests per
tick, on a thread of its own; so any number of waits share one loop, hold no thread of their own, and cost O(1)
requests per tick. Only remote cancel uses the blocking client, in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional
from uuid import UUID

import anyio
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.context import TaskRunContext
from prefect.exceptions import TerminationSignal

from ._calls import run_logger
from .exceptions import IonworksTransientError, WaitTimedOut

if TYPE_CHECKING:
    from .status_poller import Watch

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollSchedule:
    """Delays between polls: ``first``, then ×``factor`` each poll, never above ``ceiling`` seconds.

    Waits share batched reads, so a low ceiling costs no more requests per wait: a finished job is seen
    within ``ceiling`` seconds.

    Example:
        >>> list(itertools.islice(PollSchedule().delays(), 4))
        [0.2, 0.3, 0.45, 0.5]
    """

    first: float = 0.2
    factor: float = 1.5
    ceiling: float = 0.5

    def delays(self) -> Iterator[float]:
        """Yield the delay before each successive poll, forever."""
        delay = self.first
        while True:
            yield min(delay, self.ceiling)
            delay = min(delay * self.factor, self.ceiling)


@dataclass
class Snapshot:
    """One observation of a remote job (or a batch of them): its status plus optional progress figures."""

    status: str
    is_terminal: bool
    is_failed: bool
    completed: Optional[int] = None
    total: Optional[int] = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Snapshot:
        """The snapshot of a pipeline-like record carrying ``status``, ``is_terminal`` and ``is_failed``."""
        return cls(status=record["status"], is_terminal=record["is_terminal"], is_failed=record["is_failed"], raw=record)

    def progress_percent(self) -> float:
        """Progress in percent: jobs done over total, 100 when finished."""
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
        return text


_write_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


class _Progress:
    """A Prefect progress artifact, created on first report and updated on change; a no-op outside a task.

    A wait that finds its job already finished at its first read has no progress to show, and writes none.

    Reports never hold up the wait: the artifact is written by a background task in the wait's context that
    sends only the latest state, so a slow Prefect API delays the artifact, not noticing the next status. The
    writes of one event loop go ``CONCURRENT_WRITES`` at a time, except a finished wait's last one, which goes
    ahead of them: 200 waits starting together queue their first writes without holding up those that end.
    A finished wait gives the final write ``FLUSH_SECONDS`` before it returns; a slower write lands afterwards.
    """

    FLUSH_SECONDS = 1.0
    CONCURRENT_WRITES = 4

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = TaskRunContext.get() is not None
        self.artifact_id: UUID | None = None
        self.wanted: tuple[float, str] | None = None
        self.sent: tuple[float, str] | None = None
        self.final = False
        self._sender: asyncio.Task | None = None
        self._queued = False

    def report(self, snapshot: Snapshot) -> None:
        """Ask for the artifact to show ``snapshot``; returns at once."""
        if not self.enabled or (snapshot.is_terminal and self._sender is None):
            return
        self.wanted = (snapshot.progress_percent(), f"{self.label}: {snapshot.describe()}")
        self.final = snapshot.is_terminal
        if self.wanted == self.sent:
            return
        if self._sender is not None and not self._sender.done():
            if not (self.final and self._queued):
                return  # the running sender sends the latest state when its write is done
            self._sender.cancel()  # waiting for a slot: the final state goes ahead instead
        self._sender = asyncio.get_running_loop().create_task(self._send())

    async def flush(self) -> None:
        """Wait (at most ``FLUSH_SECONDS``) until the latest state is written or failed to be."""
        if self._sender is not None:
            await asyncio.wait([self._sender], timeout=self.FLUSH_SECONDS)

    async def _send(self) -> None:
        while self.wanted != self.sent:
            state = self.wanted
            try:
                if self.final:
                    await self._write(state)
                    continue
                self._queued = True
                async with self._slots():
                    self._queued = False
                    await self._write(state)
            except Exception as exc:  # noqa: BLE001 - progress reporting never fails a wait
                _log.warning("Could not update the progress artifact for %s: %s", self.label, exc)
                return
            finally:
                self._queued = False

    def _slots(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in _write_slots:
            _write_slots[loop] = asyncio.Semaphore(self.CONCURRENT_WRITES)
        return _write_slots[loop]

    async def _write(self, state: tuple[float, str]) -> None:
        if self.artifact_id is None:
            self.artifact_id = await acreate_progress_artifact(progress=state[0], description=state[1])
        else:
            await aupdate_progress_artifact(self.artifact_id, progress=state[0], description=state[1])
        self.sent = state


async def _cancel_remote(label: str, cancel: Callable[[], Any]) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(30):
        try:
            await asyncio.to_thread(cancel)
            run_logger().warning("Wait for %s was cancelled; asked Ionworks to cancel it.", label)
        except Exception as exc:  # noqa: BLE001 - best effort while cancelling
            run_logger().error("Could not cancel %s remotely: %s", label, exc)


async def wait_until_terminal(
    label: str,
    watch: Watch,
    *,
    cancel: Callable[[], Any] | None = None,
    max_wait_seconds: float = 3600.0,
) -> Snapshot:
    """Take the poller's snapshots for ``watch`` until the job is terminal; return the last one.

    Transient read errors are logged and ridden out. On timeout raises :class:`WaitTimedOut` carrying the last
    status (the remote job keeps running). If the wait is cancelled (flow run cancelled, task timeout, Ctrl-C)
    the remote job is cancelled with ``cancel`` before the cancellation propagates.

    Example:
        >>> with StatusPoller.for_client(client).watch(PIPELINES, [pid], schedule=PollSchedule()) as watch:
        ...     final = await wait_until_terminal(f"pipeline {pid}", watch, cancel=cancel, max_wait_seconds=600)
    """
    logger = run_logger()
    progress = _Progress(label)
    deadline = time.monotonic() + max_wait_seconds
    last: Snapshot | None = None
    try:
        while True:
            try:
                snapshot = await watch.next(deadline - time.monotonic())
            except TimeoutError:
                status = last.status if last else None
                raise WaitTimedOut(
                    f"{label} did not finish within {max_wait_seconds:g} s (last status: {status}); "
                    "it keeps running in Ionworks.",
                    resource_id=watch.ids[0], last_status=status,
                ) from None
            except IonworksTransientError as exc:
                logger.warning("Polling %s hit a transient error, will poll again: %s", label, exc)
                continue
            if last is None or snapshot.status != last.status:
                logger.info("%s is %s", label, snapshot.describe())
            last = snapshot
            progress.report(snapshot)
            if snapshot.is_terminal:
                await progress.flush()
                return snapshot
    except (asyncio.CancelledError, TerminationSignal, KeyboardInterrupt):
        if cancel is not None and not (last and last.is_terminal):
            await _cancel_remote(label, cancel)
        raise
