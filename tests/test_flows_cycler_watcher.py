"""The cycler_watcher flow: one ionworks.cycler.file_arrived event per new or rewritten settled file, state kept."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.worker import EventsWorker

from ionworks_prefect.flows.cycler_watcher import FILE_ARRIVED, STATE_FILE_NAME, cycler_watcher, file_resource

pytestmark = pytest.mark.usefixtures("prefect_server")


def _arrivals(path: Path, count: int, timeout: float = 15.0) -> list:
    """file_arrived events of one file, once ``count`` are stored or the timeout passes (blocking)."""
    EventsWorker.drain_all()
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as prefect:
        while True:
            page = prefect.read_events(EventFilter(
                event=EventNameFilter(name=[FILE_ARRIVED]),
                resource=EventResourceFilter(id=[file_resource(path)["prefect.resource.id"]])), limit=10)
            if len(page.events) >= count or time.monotonic() > deadline:
                return page.events
            time.sleep(0.3)


async def test_new_and_rewritten_files_are_announced_once(tmp_path):
    cell = {"specification": "NMC811", "instance": "cell-7"}
    first, second = tmp_path / "rpt-0.mpt", tmp_path / "rpt-1.csv"
    first.write_text("a")
    second.write_text("b")
    (tmp_path / ".in-progress.csv").write_text("hidden")

    assert sorted(await cycler_watcher(str(tmp_path), cell=cell, settle_seconds=0)) == sorted(map(str, (first, second)))
    assert await cycler_watcher(str(tmp_path), cell=cell, settle_seconds=0) == []
    (event,) = await asyncio.to_thread(_arrivals, first, 1)
    assert event.payload == {"path": str(first), "size": 1, "cell": cell}
    assert event.resource["prefect.resource.name"] == "rpt-0.mpt" and event.resource["ionworks.path"] == str(first)
    assert set(json.loads((tmp_path / STATE_FILE_NAME).read_text())) == {"rpt-0.mpt", "rpt-1.csv"}

    first.write_text("a longer file")
    assert await cycler_watcher(str(tmp_path), cell=cell, settle_seconds=0) == [str(first)]
    assert len(await asyncio.to_thread(_arrivals, first, 2)) == 2


async def test_files_still_being_written_wait_and_state_can_live_elsewhere(tmp_path):
    drop, state = tmp_path / "drop", tmp_path / "state" / "seen.json"
    drop.mkdir()
    state.parent.mkdir()
    fresh = drop / "rpt.csv"
    fresh.write_text("x")
    assert await cycler_watcher(str(drop), pattern="*.csv", state_file=str(state), settle_seconds=60) == []
    old = time.time() - 120
    os.utime(fresh, (old, old))
    assert await cycler_watcher(str(drop), pattern="*.csv", state_file=str(state), settle_seconds=60) == [str(fresh)]
    assert state.exists() and not (drop / STATE_FILE_NAME).exists()
