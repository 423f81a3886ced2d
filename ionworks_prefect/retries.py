"""The one retry policy and the shared task options for every Ionworks task.

Retried: connection errors, timeouts, HTTP 408/425/429 and 5xx (as :class:`IonworksTransientError`), with
exponential backoff and jitter. Failing at once: 4xx, validation errors, failed or canceled remote jobs.
A 429's Retry-After is slept by the call wrapper (``_calls.call``) before the error reaches Prefect.

Tuning: :class:`ionworks_prefect.settings.IonworksSettings` (``PREFECT_INTEGRATIONS_IONWORKS_RETRIES``, default 3;
``..._RETRY_BACKOFF_SECONDS``, 2.0: delays 2, 4, 8 s; ``..._RETRY_JITTER_FACTOR``, 0.5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import exponential_backoff

from .exceptions import IonworksTransientError
from .settings import IonworksSettings

F = TypeVar("F", bound=Callable[..., Any])


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
    return task(name=name, description=description, **options)  # type: ignore[return-value]
