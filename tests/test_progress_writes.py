"""Progress artifact writes of many waits: a few at a time, and a finished wait's last write ahead of the queue.

Pure logic: Prefect's artifact calls are replaced by slow recorders, so no server is involved.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from ionworks_prefect import waiting
from ionworks_prefect.waiting import Snapshot, _Progress

RUNNING = Snapshot(status="running", is_terminal=False, is_failed=False)
DONE = Snapshot(status="completed", is_terminal=True, is_failed=False)
WRITE_SECONDS = 0.1


class SlowArtifacts:
    """Stands in for Prefect's progress artifact calls: each write takes ``WRITE_SECONDS``; records what ran when."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.written: dict[uuid.UUID, list[tuple[float, str, float]]] = {}

    async def _write(self, artifact_id: uuid.UUID, progress: float, description: str) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(WRITE_SECONDS)
        self.in_flight -= 1
        self.written.setdefault(artifact_id, []).append((progress, description, time.monotonic()))

    async def create(self, progress: float, description: str) -> uuid.UUID:
        artifact_id = uuid.uuid4()
        await self._write(artifact_id, progress, description)
        return artifact_id

    async def update(self, artifact_id: uuid.UUID, progress: float, description: str) -> None:
        await self._write(artifact_id, progress, description)


def _progress(label: str) -> _Progress:
    progress = _Progress(label)
    progress.enabled = True  # as inside a task run
    return progress


async def test_a_finished_waits_last_write_goes_ahead_of_the_queued_ones(monkeypatch):
    artifacts = SlowArtifacts()
    monkeypatch.setattr(waiting, "acreate_progress_artifact", artifacts.create)
    monkeypatch.setattr(waiting, "aupdate_progress_artifact", artifacts.update)
    waits = [_progress(f"wait {i}") for i in range(40)]
    for progress in waits:
        progress.report(RUNNING)  # 40 first writes at once: 4 at a time, 1 s to write them all
    await asyncio.sleep(0.01)
    last = waits[-1]  # its first write is queued behind 36 others
    started = time.monotonic()
    last.report(DONE)
    await last.flush()
    assert time.monotonic() - started < 5 * WRITE_SECONDS  # well before the queue's 1 s
    assert last.sent == (100.0, "wait 39: completed") and last.artifact_id in artifacts.written
    for progress in waits[:-1]:
        await progress.flush()
    assert artifacts.most_in_flight <= _Progress.CONCURRENT_WRITES + 1
    assert all(p.sent == (0.0, f"{p.label}: running") for p in waits[:-1])
    assert len(artifacts.written) == len(waits)  # one artifact each; the queued first write of the last never ran


async def test_a_wait_that_finds_its_job_finished_writes_nothing(monkeypatch):
    artifacts = SlowArtifacts()
    monkeypatch.setattr(waiting, "acreate_progress_artifact", artifacts.create)
    progress = _progress("wait done")
    progress.report(DONE)
    await progress.flush()
    assert artifacts.written == {} and progress.sent is None
