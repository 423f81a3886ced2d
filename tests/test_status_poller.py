"""The shared status poller against a live sandbox over HTTP: requests per tick counted on the server side.

A sandbox of its own (one worker, request log on) holds a slow fit on its worker so the waited pipelines stay
pending; the request log then shows what the waits cost while nothing changes and when each finishes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from ionworks import Ionworks
from prefect import flow

from ionworks_prefect import (
    InvalidResourceId,
    IonworksCredentials,
    IonworksNotFound,
    IonworksPrefectError,
    PollSchedule,
    WaitTimedOut,
    run_simulation,
    upload_measurement,
    wait_for_pipeline,
)
from ionworks_prefect.local_sandbox import LocalSandbox
from ionworks_prefect.pipelines import await_pipeline
from ionworks_prefect.resource_ids import check_resource_id, resource_path
from ionworks_prefect.status_poller import StatusPoller
from ionworks_prefect.status_reads import StatusReader
from ionworks_prefect.waiting import Snapshot, wait_until_terminal
from ionworks_sandbox.request_log import read_request_log

from .fault_proxy import FaultProxy
from .measurement_frames import new_instance, unique
from .pipeline_configs import entry_pipeline, fit_pipeline, synthetic
from .protocols import discharge

pytestmark = pytest.mark.usefixtures("prefect_server")
WAITS = 40
SCHEDULE = PollSchedule(first=0.1, factor=1.5, ceiling=0.5)


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """A sandbox of its own with one worker and a request log; yields (sandbox, client, credentials, log path)."""
    root = tmp_path_factory.mktemp("counted")
    log = root / "requests.tsv"
    with LocalSandbox(root / "data", ["poller-key"], workers=1, extra_args=["--request-log", str(log)]) as sandbox:
        client = Ionworks(api_url=sandbox.url, api_key=sandbox.api_key, project_id=sandbox.project_id, timeout=60)
        credentials = IonworksCredentials(api_key=sandbox.api_key, api_url=sandbox.url, project_id=sandbox.project_id)
        yield sandbox, client, credentials, log


def _until(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


async def test_many_waits_cost_one_request_per_tick_and_completions_are_read_together(counted):
    sandbox, client, credentials, log = counted
    data = upload_measurement.fn(synthetic(), new_instance(client)[1], "rpt", credentials).db_ref
    blocker = client.pipeline.create(fit_pipeline(data, optimizer="slow", name=unique("blocker")))
    _until(lambda: client.pipeline.get(blocker.id).status == "running")
    ids = [client.pipeline.create(entry_pipeline(unique(f"queued-{i}"))).id for i in range(WAITS)]
    assert {client.pipeline.get(i).status for i in ids} == {"pending"}  # queued behind the blocker

    @flow
    async def wait_for_all():
        waits = [asyncio.ensure_future(wait_for_pipeline(i, credentials, poll_schedule=SCHEDULE)) for i in ids]
        await asyncio.sleep(4.0)  # all waits polling, nothing changes
        released = time.time()
        await asyncio.to_thread(client.pipeline.cancel, blocker.id)
        return released, await asyncio.gather(*waits)

    started = time.time()
    released, finals = await wait_for_all()
    assert {f.status for f in finals} == {"completed"}

    rows = [r for r in read_request_log(log) if r[0] >= started and r[1] == "GET"]
    lists = [r for r in rows if "status=in.%28pending%2Crunning%29" in r[2]]
    assert lists and all(r[2].startswith(f"/pipelines?project_id={sandbox.project_id}&") for r in lists)
    # While nothing changed, every request was the one list read of a tick, and ticks follow the schedule
    # (at most one per `first` seconds), not the number of waits.
    quiet = [r for r in rows if r[0] < released]
    assert quiet and [r for r in quiet if r not in lists] == []
    assert len(quiet) <= (released - quiet[0][0]) / SCHEDULE.first + 2
    # Then each pipeline was read once more after it left the pending/running set: listed by id with others
    # that left in the same tick (never one request per pipeline), and in the first tick after its job finished.
    read_at: dict[str, list[float]] = {}
    by_id = [r for r in rows if "id=in." in r[2]]
    for r in by_id:
        for pipeline_id in parse_qs(urlsplit(r[2]).query)["id"][0].removeprefix("in.(").removesuffix(")").split(","):
            read_at.setdefault(pipeline_id, []).append(r[0])
    assert len(rows) == len(lists) + len(by_id) and len(by_id) < WAITS  # no read of a single pipeline
    assert sorted(read_at) == sorted(ids) and all(len(times) == 1 for times in read_at.values())
    jobs = {j["job_id"]: j for j in client.get("/jobs/")}
    for pipeline_id in ids:
        finished = _seconds(jobs[client.get(f"/pipelines/{pipeline_id}")["job_id"]]["finished_at"])
        ticks_between = [r for r in lists if finished < r[0] < read_at[pipeline_id][0]]
        assert len(ticks_between) <= 1, (pipeline_id, finished, read_at[pipeline_id], ticks_between)


async def test_a_refused_batch_read_falls_back_to_reading_each(counted):
    sandbox, client, credentials, log = counted
    pipeline_id = client.pipeline.create(entry_pipeline(unique("fallback"))).id
    elsewhere = str(uuid.uuid4())  # a project this key cannot list: the list read answers 404

    @flow
    async def wait_listing_another_project():
        return await await_pipeline(client, pipeline_id, max_wait_seconds=60, schedule=SCHEDULE, project_id=elsewhere)

    started = time.time()
    final = await wait_listing_another_project()
    assert final.status == "completed"
    rows = [r for r in read_request_log(log) if r[0] >= started]
    assert [r[3] for r in rows if f"project_id={elsewhere}" in r[2]] == [404]  # refused once, not asked again
    assert [r[3] for r in rows if r[2] == f"/pipelines/{pipeline_id}"][-1] == 200


async def test_ids_are_checked_and_escaped_before_any_request(counted):
    sandbox, client, credentials, log = counted
    for bad in ("", "  ", ".", "..", None):
        with pytest.raises(InvalidResourceId):
            check_resource_id(bad)
    assert resource_path("/pipelines", "a/b?c#d") == "/pipelines/a%2Fb%3Fc%23d"

    before = len(read_request_log(log))
    with pytest.raises(InvalidResourceId):
        await wait_for_pipeline.fn("", credentials)
    assert len(read_request_log(log)) == before  # nothing was sent

    with pytest.raises(IonworksNotFound):
        await wait_for_pipeline.fn("../jobs", credentials, max_wait_seconds=30, poll_schedule=SCHEDULE)
    assert [r[2] for r in read_request_log(log)[before:] if not r[2].startswith("/pipelines?")] == ["/pipelines/..%2Fjobs"]
    # (an id that cannot stand in an `id=in.(...)` list as it is, is read on its own, escaped)


@pytest.fixture(scope="module")
def proxied(sandbox):
    with FaultProxy(sandbox.url) as proxy:
        yield proxy, IonworksCredentials(api_key=sandbox.api_key, api_url=proxy.url, project_id=sandbox.project_id)


async def test_failing_batch_reads_are_ridden_out_by_every_wait(client, proxied):
    proxy, credentials = proxied
    ids = [client.pipeline.create(entry_pipeline(unique(f"flaky-{i}"))).id for i in range(10)]
    seen = len(proxy.hits)
    proxy.inject("GET", r"^/pipelines$", "503", times=3)
    proxy.inject("GET", r"^/pipelines$", "drop_before_forward", times=1)

    @flow
    async def wait_through_faults():
        return await asyncio.gather(*(wait_for_pipeline(i, credentials, poll_schedule=SCHEDULE) for i in ids))

    finals = await wait_through_faults()
    assert [f.id for f in finals] == ids and {f.status for f in finals} == {"completed"}
    outcomes = [h.outcome for h in proxy.hits[seen:] if h.method == "GET" and h.path == "/pipelines"]
    assert outcomes[:5] == ["503", "503", "503", "drop_before_forward", "200"]


async def test_failing_simulation_status_reads_are_ridden_out(proxied):
    proxy, credentials = proxied
    seen = len(proxy.hits)
    proxy.inject("POST", r"^/simulations/statuses$", "503", times=2)
    config = {"parameterized_model": "spm-chen2020", "experiment_parameters": {"C-rate": 1.0},
              "protocol_experiment": {"protocol": discharge('input["C-rate"]', 3.2), "name": unique("flaky")}}

    @flow
    async def simulate():
        return await run_simulation(config, credentials, poll_schedule=SCHEDULE)

    result = await simulate()
    assert result.metrics and result.time_series.height > 0
    outcomes = [h.outcome for h in proxy.hits[seen:] if h.path == "/simulations/statuses"]
    assert outcomes[:2] == ["503", "503"] and "200" in outcomes


class _Broken:
    """A resource whose answer the poller cannot use (not a mapping): the poller's own task fails."""

    noun = "broken thing"

    async def read(self, reader, scope, ids, *, batched):
        return None


class _Stuck:
    """A resource that is always running."""

    noun = "stuck thing"

    async def read(self, reader, scope, ids, *, batched):
        return {i: Snapshot(status="running", is_terminal=False, is_failed=False) for i in ids}


def _poller() -> StatusPoller:
    return StatusPoller(StatusReader(Ionworks(api_url="http://127.0.0.1:9", api_key="unused")))


async def test_a_failed_poller_hands_its_error_to_every_wait():
    poller = _poller()
    with poller.watch(_Broken(), ["a"], schedule=SCHEDULE) as one, poller.watch(_Broken(), ["b"], schedule=SCHEDULE) as two:
        for watch in (one, two):
            with pytest.raises(IonworksPrefectError, match="status poller stopped"):
                await watch.next(timeout=5)


async def test_a_timed_out_wait_carries_the_last_status_and_leaves_the_poller():
    poller = _poller()
    with poller.watch(_Stuck(), ["slow-1"], schedule=SCHEDULE) as watch:
        with pytest.raises(WaitTimedOut) as caught:
            await wait_until_terminal("stuck thing slow-1", watch, max_wait_seconds=0.5)
    assert (caught.value.resource_id, caught.value.last_status) == ("slow-1", "running")
    await asyncio.sleep(0.3)
    assert poller._task.done()  # no wait left: the polling task ended


class _Counted(_Stuck):
    """Always running; counts its reads."""

    def __init__(self) -> None:
        self.reads = 0

    async def read(self, reader, scope, ids, *, batched):
        self.reads += 1
        return await super().read(reader, scope, ids, batched=batched)


async def test_waits_registered_in_a_row_wake_the_polling_task_once(monkeypatch):
    poller, resource, starts = _poller(), _Counted(), []
    start = StatusPoller._start
    monkeypatch.setattr(StatusPoller, "_start", lambda self: (starts.append(1), start(self)))
    watches = [poller.watch(resource, [f"w-{i}"], schedule=SCHEDULE) for i in range(200)]  # no yield between them
    try:
        snapshots = await asyncio.gather(*(w.next(timeout=5) for w in watches))
        assert {s.status for s in snapshots} == {"running"} and resource.reads <= 2
        assert len(starts) == 1  # the others arrived while the task was about to look anyway
    finally:
        for watch in watches:
            poller.forget(watch)


async def test_a_wait_registered_while_the_poller_sleeps_long_is_read_at_once():
    poller, resource = _poller(), _Stuck()
    slow = PollSchedule(first=10.0, factor=1.0, ceiling=10.0)
    with poller.watch(resource, ["patient"], schedule=slow) as patient:
        await patient.next(timeout=5)  # its first read; the next is 10 s away
        started = time.monotonic()
        with poller.watch(resource, ["eager"], schedule=SCHEDULE) as eager:
            await eager.next(timeout=5)
        assert time.monotonic() - started < 1.0
