"""The one retry policy and the shared task options for every Ionworks task.

One budget, counted per request: the official client is built with ``max_retries=0`` (it never retries on its
own), and every Ionworks request goes through ``_calls.call``, which retries a transient failure (connection
error, timeout, HTTP 408/425/429, 5xx other than 501/505) in place, up to the task's ``retries`` times, waiting
the task's ``retry_delay_seconds`` (exponential backoff) plus ``retry_jitter_factor`` of jitter, and at least a
429's Retry-After. A request that used up its retries fails the task, and Prefect does not retry the task on
top (:func:`retry_on_transient_error` only retries transient errors raised outside a request, so the budget
is never multiplied). Everything else fails at once: 4xx, malformed URLs, missing credentials, validation
errors, failed or canceled remote jobs.

Outside a task (or in a task without these options) the settings apply:
:class:`ionworks_prefect.settings.IonworksSettings` (``PREFECT_INTEGRATIONS_IONWORKS_RETRIES``, default 5;
``..._RETRY_BACKOFF_SECONDS``, 0.5: waits 0.5, 1, 2, 4, 8 s; ``..._RETRY_JITTER_FACTOR``, 0.5). An unreachable
host therefore fails after 6 tries in about 16-23 s; a permanent error after one request.

Every public task also turns any other exception that would leave it into a typed
:class:`~ionworks_prefect.exceptions.IonworksPrefectError` (the original as its ``__cause__``).

"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.states import State
from prefect.tasks import exponential_backoff

from .exceptions import IonworksPrefectError, IonworksRequestError, IonworksTransientError
from .settings import IonworksSettings

F = TypeVar("F", bound=Callable[..., Any])


def _typed(exc: Exception, fn: Callable[..., Any]) -> IonworksPrefectError:
    return IonworksRequestError(f"{type(exc).__name__}: {exc}", action=getattr(fn, "__name__", None))


def _guarded(fn: F) -> F:
    """``fn`` raising only typed errors.

    Same signature. An exception that is not an :class:`IonworksPrefectError` (a client ``ValueError``, a
    ``KeyError`` on an answer, a pydantic error of a client model) leaves as :class:`IonworksRequestError`
    with the original as its cause; Prefect's own signals and cancellations (``BaseException``) pass.
    """
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except IonworksPrefectError:
                raise
            except Exception as exc:
                raise _typed(exc, fn) from exc

        return run_async  # type: ignore[return-value]

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except IonworksPrefectError:
            raise
        except Exception as exc:
            raise _typed(exc, fn) from exc

    return run  # type: ignore[return-value]


@dataclass(frozen=True)
class RetryPolicy:
    """How one Ionworks request is retried: ``retries`` more tries, waiting ``delays[n]`` (+ jitter) before try n+2.

    Example:
        >>> RetryPolicy(retries=2, delays=(0.5, 1.0), jitter_factor=0.0).delay(1, retry_after=None)
        1.0
    """

    retries: int
    delays: tuple[float, ...]
    jitter_factor: float

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based): backoff plus jitter, at least Retry-After."""
        base = self.delays[min(retry, len(self.delays) - 1)] if self.delays else 0.0
        return max(base * (1.0 + random.uniform(0.0, self.jitter_factor)), retry_after or 0.0)


def _delays(value: Any, retries: int) -> tuple[float, ...]:
    if callable(value):
        value = value(retries)
    if value is None:
        return (0.0,)
    if isinstance(value, (int, float)):
        return (float(value),)
    return tuple(float(v) for v in value) or (0.0,)


def settings_policy() -> RetryPolicy:
    """The policy from :class:`IonworksSettings` (what every Ionworks task is decorated with)."""
    settings = IonworksSettings()
    return RetryPolicy(settings.retries, _delays(exponential_backoff(settings.retry_backoff_seconds),
                                                 settings.retries), settings.retry_jitter_factor)


def request_policy() -> RetryPolicy:
    """The retry policy of the Ionworks task run in progress (its own, possibly overridden, options), else the
    settings'.

    Example:
        >>> request_policy().retries
        5
    """
    context = TaskRunContext.get()
    task = context.task if context is not None else None
    if task is None or task.retry_condition_fn is not retry_on_transient_error:
        return settings_policy()
    return RetryPolicy(task.retries, _delays(task.retry_delay_seconds, task.retries), task.retry_jitter_factor or 0.0)


def is_retryable(exc: BaseException) -> bool:
    """True when ``exc`` is a transient failure whose request has not already spent its retries.

    Example:
        >>> is_retryable(IonworksTransientError("busy", status_code=503))
        True
    """
    return isinstance(exc, IonworksTransientError) and exc.attempts is None


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

    The task's ``retries``/``retry_delay_seconds``/``retry_jitter_factor`` are the per-request budget its
    Ionworks calls are retried with (see the module docstring); errors leaving it are typed.

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
    return lambda fn: task(name=name, description=description, **options)(_guarded(fn))  # type: ignore[return-value]
