"""Many concurrent waits in one flow run share one event loop: no thread per wait."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from prefect import flow

from ionworks_prefect import PipelineRun, PollSchedule, wait_for_pipeline

from .measurement_frames import unique
from .pipeline_configs import entry_pipeline

pytestmark = pytest.mark.usefixtures("prefect_server", "sandbox")
WAITS = 200


class ThreadSampler:
    """Samples ``threading.active_count()`` in the background and keeps the maximum."""

    def __init__(self) -> None:
        self.peak = threading.active_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, threading.active_count())

    def __enter__(self) -> "ThreadSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def test_200_concurrent_waits_finish_without_a_thread_per_wait(client):
    ids = [client.pipeline.create(entry_pipeline(unique(f"many-{i}"))).id for i in range(WAITS)]

    @flow
    async def wait_for_all(pipeline_ids: list[str]) -> list[PipelineRun]:
        schedule = PollSchedule(first=0.2, factor=1.5, ceiling=2.0)
        return await asyncio.gather(*(wait_for_pipeline(i, poll_schedule=schedule) for i in pipeline_ids))

    before = threading.active_count()
    with ThreadSampler() as sampler:
        started = time.monotonic()
        finals = await wait_for_all(ids)
        elapsed = time.monotonic() - started
    assert [f.id for f in finals] == ids and {f.status for f in finals} == {"completed"}
    print(f"{WAITS} waits: {elapsed:.1f} s, threads {before} -> peak {sampler.peak}")
    assert sampler.peak - before < 40  # Prefect's own workers plus a small pool, never one per wait
