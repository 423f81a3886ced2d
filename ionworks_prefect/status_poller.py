"""One status poller per process and credentials: every wait registers with it, each tick reads them all.

A tick reads the status of every outstanding resource in as few requests as the API allows
(``status_reads.py``: one list of a project's unfinished pipelines and one list by id of the watched ones that
left it, one batch status request per 1,000 simulations plus one read of each that completed), so N waits cost
O(1) requests per tick. A tick is due when the most urgent wait's :class:`~ionworks_prefect.waiting.PollSchedule` says
so (never sooner after the last tick than the smallest ``first`` delay among the waits), and every registered
wait gets the fresh status. A transient error on a read reaches only the waits that read was for; they log it
and keep waiting. A batch read the service refuses outright (4xx) makes that project's resources be read one
by one for the next five minutes, so it ends no wait.

The pollers tick on one event loop of their own, on a daemon thread the process starts with the first wait
(``ionworks-status-reads``). A flow that starts hundreds of task runs at once holds its own loop for seconds
(Prefect starts each without yielding); ticks made there would wait for all of them. On their own loop the
reads go out within a wait's first delay of its registering, and each wait's loop is handed the answer as soon
as it turns.
Each tick's task runs in an empty context, so it never logs into, or reports progress for, a task run (each
wait does that itself, on its own loop, from what it is handed).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from .exceptions import InvalidResourceId, IonworksPrefectError, IonworksTransientError
from .resource_ids import check_resource_id
from .status_reads import Outcome, Resource, StatusReader
from .waiting import PollSchedule, Snapshot

_log = logging.getLogger(__name__)

#: After a refused batch read, how long the resources it covered are read one by one before batching again.
UNBATCHED_SECONDS = 300.0
Summarize = Callable[[Mapping[str, Snapshot]], Snapshot]
#: The name of the thread the pollers tick on.
READ_THREAD_NAME = "ionworks-status-reads"
_read_loop_lock = threading.Lock()


class _Mailbox:
    """Calls posted from any thread to run on one event loop, with one wake-up of the loop per batch.

    A wake-up (``call_soon_threadsafe``) writes to the loop's self-pipe: a system call, during which another thread
    takes the GIL. Posted one by one, a flow registering 200 waits in a row handed the GIL to the read thread 200
    times and started its task runs more slowly than Prefect alone starts them; batched, it is handed over once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def post(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop soon; dropped if the loop is gone or closed."""
        with self._lock:
            self._calls.append((callback, args))
            if len(self._calls) > 1:
                return  # the batch's wake-up is on its way
        loop = self._loop()
        try:
            if loop is None:
                raise RuntimeError("the loop is gone")
            loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # closed: nobody waits there any more
            with self._lock:
                self._calls.clear()

    def _run(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
        for callback, args in calls:
            try:
                callback(*args)
            except Exception:  # noqa: BLE001 - one bad call must not drop the rest of the batch
                _log.exception("A status poller call failed")


_read_loop: asyncio.AbstractEventLoop | None = None  # lives as long as the process
_read_mailbox: _Mailbox | None = None
_mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = weakref.WeakKeyDictionary()


def _on_read_loop(callback: Callable[..., Any], *args: Any) -> None:
    """Run ``callback(*args)`` on the status-read loop, starting its thread on first use."""
    global _read_loop, _read_mailbox
    with _read_loop_lock:
        if _read_loop is None:
            _read_loop = asyncio.new_event_loop()
            threading.Thread(target=_read_loop.run_forever, name=READ_THREAD_NAME, daemon=True).start()
            _read_mailbox = _Mailbox(_read_loop)
        mailbox = _read_mailbox
    mailbox.post(callback, *args)


def _mailbox_of(loop: asyncio.AbstractEventLoop) -> _Mailbox:
    with _read_loop_lock:
        if loop not in _mailboxes:
            _mailboxes[loop] = _Mailbox(loop)
        return _mailboxes[loop]


def _forget_read_loop() -> None:
    """A forked child has no read thread: its first wait starts one, with pollers of its own."""
    global _read_loop, _read_mailbox
    _read_loop = _read_mailbox = None
    StatusPoller.shared.clear()


os.register_at_fork(after_in_child=_forget_read_loop)


class Watch:
    """One wait's registration: the resources it waits on, their latest snapshots, when it next wants a read.

    Made on the waiting event loop, which alone reads ``latest`` and awaits :meth:`next`; the poller's loop keeps
    the open ids and the schedule, and hands each tick's news over. Use as a context manager so the poller forgets
    it however the wait ends.
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
        self.open_ids = list(self.ids)  # not yet seen in a terminal state; the poller's loop's
        self.first = schedule.first
        self.due = -math.inf  # read at the next tick
        self._delays = schedule.delays()
        self._summarize = summarize or (lambda latest: latest[self.ids[0]])
        self._error: Exception | None = None
        self._mailbox = _mailbox_of(asyncio.get_running_loop())
        self._fresh = asyncio.Event()

    def receive(self, outcomes: Mapping[str, Outcome], tick_started: float) -> None:
        """On the poller's loop: take one tick's outcomes for the open ids, schedule the next read, hand them over."""
        pause = next(self._delays)
        news = {i: outcomes[i] for i in self.open_ids if outcomes.get(i) is not None}
        for outcome in news.values():
            if isinstance(outcome, Exception):
                pause = max(pause, getattr(outcome, "retry_after", None) or 0.0)
        self.open_ids = [i for i in self.open_ids
                         if not (isinstance(news.get(i), Snapshot) and news[i].is_terminal)]
        self.due = tick_started + pause
        if news:
            self._mailbox.post(self._take, news)

    def fail(self, error: Exception) -> None:
        """Make the next :meth:`next` raise ``error`` (from any thread)."""
        self._mailbox.post(self._take, {}, error)

    def _take(self, news: Mapping[str, Outcome], error: Exception | None = None) -> None:
        if error is not None:
            self._error = error
        for resource_id, outcome in news.items():
            if isinstance(outcome, Exception):
                self._error = outcome
            else:
                self.latest[resource_id] = outcome
        self._fresh.set()

    async def next(self, timeout: float) -> Snapshot:
        """The summary after the next tick that brought news; raises that tick's error, or ``TimeoutError``."""
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


class StatusPoller:
    """Reads the status of every registered wait's resources, batched, on the process's status-read loop.

    Example:
        >>> poller = StatusPoller.for_client(client)
        >>> with poller.watch(PIPELINES, [pipeline_id], schedule=PollSchedule(), scope=project_id) as watch:
        ...     snapshot = await watch.next(timeout=60)
    """

    #: The process's pollers, by URL, credentials and timeout.
    shared: ClassVar[dict[tuple, StatusPoller]] = {}

    def __init__(self, reader: StatusReader) -> None:
        self.reader = reader
        self._watches: set[Watch] = set()  # the read loop's
        self._unbatched: dict[tuple[Resource, str | None], float] = {}  # until when, read-loop time
        self._wake = asyncio.Event()  # bound to the read loop when it first waits on it
        self._task: asyncio.Task | None = None
        self._last_tick = -math.inf
        self._lock = threading.Lock()
        self._arrivals: list[Watch] = []  # registered, not yet taken in by the polling task
        self._looks_at = math.inf  # when the polling task next takes arrivals in by itself (monotonic clock)

    @classmethod
    def for_client(cls, client: Any) -> StatusPoller:
        """The process's poller for this client's URL, credentials and timeout."""
        reader = StatusReader(client)
        with _read_loop_lock:
            if reader.key not in cls.shared:
                cls.shared[reader.key] = cls(reader)
            return cls.shared[reader.key]

    def watch(self, resource: Resource, ids: list[str], *, schedule: PollSchedule, scope: str | None = None,
              summarize: Summarize | None = None) -> Watch:
        """Register a wait on ``ids`` (``scope``: the project of (simple) pipelines); raises :class:`InvalidResourceId`.

        The polling task is woken only if it would not look at new waits within the wait's ``first`` delay by
        itself: a flow registering 200 waits in a row wakes it once, not 200 times (see :class:`_Mailbox`).
        """
        watch = Watch(self, resource, ids, scope, schedule, summarize)
        with self._lock:
            self._arrivals.append(watch)
            now = time.monotonic()
            soon = self._looks_at <= now + watch.first
            if not soon:
                self._looks_at = now  # woken now, it takes in whatever arrives until it runs
        if not soon:
            _on_read_loop(self._start)
        return watch

    def forget(self, watch: Watch) -> None:
        """Stop reading for ``watch``."""
        _on_read_loop(self._discard, watch)

    def _start(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), context=contextvars.Context())
            self._task.add_done_callback(self._stopped)

    def _discard(self, watch: Watch) -> None:
        with self._lock:
            if watch in self._arrivals:
                self._arrivals.remove(watch)
        self._watches.discard(watch)
        self._wake.set()

    def _stopped(self, task: asyncio.Task) -> None:
        """If the polling task died, hand its error to every wait rather than leave them waiting for nothing."""
        with self._lock:
            self._looks_at = math.inf
            self._watches.update(self._arrivals)
            self._arrivals.clear()
        if task.cancelled() or task.exception() is None:
            return
        _log.error("The Ionworks status poller stopped: %r", task.exception())
        for watch in self._watches:
            watch.fail(IonworksPrefectError(f"The status poller stopped: {task.exception()!r}"))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            with self._lock:
                self._watches.update(self._arrivals)
                self._arrivals.clear()
            waiting = [w for w in self._watches if w.open_ids]
            at = math.inf
            if waiting:
                at = max(min(w.due for w in waiting), self._last_tick + min(w.first for w in waiting))
            with self._lock:
                if self._arrivals:
                    continue  # registered meanwhile: take them in first
                if not self._watches:
                    self._looks_at = math.inf
                    return
                self._looks_at = at
            if at > loop.time():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), None if at == math.inf else at - loop.time())
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
