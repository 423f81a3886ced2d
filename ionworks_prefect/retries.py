"""The one retry policy and the shared task options for every Ionworks task.

Retried: connection errors, timeouts, HTTP 408/425/429 and 5xx (as :class:`IonworksTransientError`), with
exponential backoff and jitter. Failing at once: 4xx, validation errors, failed or canceled remote jobs.
A 429's Retry-After is slept by the call wrapper (``_calls.call``) before the error reaches Prefect.

Inside :func:`rate_limited` (set by fleet refits), every Ionworks task run first takes a slot of a Prefect rate
limit, so many cells refitted at once never exceed the rate the Ionworks API is given.

Tuning: :class:`ionworks_prefect.settings.IonworksSettings` (``PREFECT_INTEGRATIONS_IONWORKS_RETRIES``, default 3;
``..._RETRY_BACKOFF_SECONDS``, 2.0: delays 2, 4, 8 s; ``..._RETRY_JITTER_FACTOR``, 0.5).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import exponential_backoff

from .exceptions import IonworksTransientError
from .settings import IonworksSettings

F = TypeVar("F", bound=Callable[..., Any])
_rate_limit: ContextVar[str | None] = ContextVar("ionworks_rate_limit", default=None)


@contextmanager
def rate_limited(limit: str | None) -> Iterator[None]:
    """Make every Ionworks task run in this context take one slot of the Prefect rate limit ``limit`` first.

    ``None`` leaves task runs unlimited. The limit must exist (a fleet refit creates it on first use).

    Example:
        >>> with rate_limited("ionworks-api"):
        ...     upload_measurement(...)
    """
    token = _rate_limit.set(limit)
    try:
        yield
    finally:
        _rate_limit.reset(token)


def take_rate_limit_slot() -> None:
    """Take a slot of the active :func:`rate_limited` limit, if any (blocking)."""
    if (limit := _rate_limit.get()) is not None:
        from prefect.concurrency.sync import rate_limit

        rate_limit(limit, strict=True)


async def atake_rate_limit_slot() -> None:
    """Take a slot of the active :func:`rate_limited` limit, if any."""
    if (limit := _rate_limit.get()) is not None:
        from prefect.concurrency.asyncio import rate_limit

        await rate_limit(limit, strict=True)


def _limited(fn: F) -> F:
    """``fn`` taking a rate-limit slot first when :func:`rate_limited` is active (same signature).

    The wrappers reach the context variable only through module-level functions, so a flow that uses the task
    still pickles (Prefect's runner sends the flow to its subprocess with cloudpickle).
    """
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            await atake_rate_limit_slot()
            return await fn(*args, **kwargs)

        return run_async  # type: ignore[return-value]

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        take_rate_limit_slot()
        return fn(*args, **kwargs)

    return run  # type: ignore[return-value]


def is_retryable(exc: BaseException) -> bool:
    """True when ``exc`` is a failure worth retrying (only :class:`IonworksTransientError`).

    Example:
        >>> is_retryable(IonworksTransientError("busy", status_code=503))
        True
    """
    return isinstance(exc, IonworksTransientError)


def retry_on_transient_error(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """``retry_condition_fn`` for Ionworks tasks; a plain ``def`` because Prefect ignores partials and callables.

    Example:
        >>> @task(retries=3, retry_condition_fn=retry_on_transient_error)
        ... def call_ionworks(): ...
    """
    try:
        state.result(_sync=True)  # sync even for async tasks: a coroutine here would silently mean "no retry"
    except BaseException as exc:  # noqa: BLE001 - classify whatever the task raised
        return is_retryable(exc)
    return False


def ionworks_task(
    *,
    name: str,
    description: str,
    cache_policy: CachePolicy = NO_CACHE,
    **task_options: Any,
) -> Callable[[F], F]:
    """Decorate an Ionworks task with the shared retry policy and a cache policy (``NO_CACHE`` unless given).

    Example:
        >>> @ionworks_task(name="Get Ionworks pipeline", description="Read one pipeline.")
        ... def get_pipeline(pipeline_id: str) -> dict: ...
    """
    settings = IonworksSettings()
    options: dict[str, Any] = {
        "retries": settings.retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=settings.retry_backoff_seconds),
        "retry_jitter_factor": settings.retry_jitter_factor,
        "retry_condition_fn": retry_on_transient_error,
        "cache_policy": cache_policy,
        **task_options,
    }
    return lambda fn: task(name=name, description=description, **options)(_limited(fn))  # type: ignore[return-value]
