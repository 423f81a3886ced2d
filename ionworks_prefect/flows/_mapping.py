"""Collecting mapped task runs where one failure must not hide the others."""

from __future__ import annotations

from typing import Any

from prefect.futures import PrefectFutureList, wait


def results_or_reasons(futures: PrefectFutureList) -> list[tuple[Any, str | None]]:
    """Wait for every run; each gives ``(result, None)`` or ``(None, reason it failed)``. Blocking.

    Example:
        >>> outcomes = await asyncio.to_thread(results_or_reasons, my_task.map(items))
    """
    wait(futures)
    collected = []
    for future in futures:
        result = future.result(raise_on_failure=False)
        if future.state.is_completed():
            collected.append((result, None))
        else:
            reason = str(result) if isinstance(result, BaseException) else future.state.message
            collected.append((None, reason or f"task run ended {future.state.name}"))
    return collected
