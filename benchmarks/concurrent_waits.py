"""Waiting at scale: 200 concurrent waits in one Prefect flow against 200 threads running the official client's wait.

One sandbox (2 compute workers, at its lower CPU priority; request log on) and one Prefect test server serve both
sides, one after the other, in the same run. Each side waits on its own 200 pipelines of the same work: a
differential-evolution fit of ``--evaluations`` model evaluations (SPMe, one synthetic 1C discharge), all
submitted before the waits start, so the two busy workers finish them one after another, spread over ~30 s.

- baseline: 200 threads, each with its own client, each running
  ``client.pipeline.wait_for_completion(pipeline_id, poll_interval=1)``;
- plugin: one async flow gathering 200 ``wait_for_pipeline`` tasks (default poll schedule) on the shared
  status poller.

Printed per side: status requests (counted by the sandbox's request log over the waiting window), how late each
completion was noticed (the wait returned, against the job's ``finished_at``, or the start of the waits for jobs
that finished before it), threads added while waiting (peak minus the count just before; the plugin's count
includes its status-read thread, which the warm-up started), the p99 end-to-end
status-read latency (timed around each HTTP send to the sandbox, pool queueing included; the sandbox's own time
per request is printed next to it), and peak RSS while waiting. Goals: requests <= 0.1x the baseline, every
completion noticed within one poll ceiling (<= 2 s), <= 2 extra threads.

Usage:
    python benchmarks/concurrent_waits.py [--waits 200] [--evaluations 20] [--plugin-first] [--prefect-db postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")  # run logs still reach the API

import httpx  # noqa: E402
import ionworks_schema as iws  # noqa: E402
import requests  # noqa: E402
from ionworks import Ionworks  # noqa: E402
from prefect import flow  # noqa: E402

from ionworks_prefect import IonworksCredentials, upload_measurement, wait_for_pipeline  # noqa: E402
from ionworks_prefect.local_sandbox import LocalSandbox  # noqa: E402
from ionworks_prefect.status_poller import READ_THREAD_NAME, StatusPoller  # noqa: E402
from ionworks_sandbox.compute.synthetic import synthetic_discharge  # noqa: E402
from ionworks_sandbox.request_log import read_request_log  # noqa: E402

DN = "Negative particle diffusivity [m2.s-1]"
DP = "Positive particle diffusivity [m2.s-1]"
REQUEST_RATIO_GOAL = 0.1
LATENESS_GOAL_S = 2.0
THREADS_GOAL = 2


def fit_config(data: str, label: str, evaluations: int) -> iws.Pipeline:
    """A fit that stops after exactly ``evaluations`` model evaluations (no tolerance can end it sooner)."""
    optimizer = iws.optimizers.DifferentialEvolution(min_iterations=10**6, absolute_tolerance=0.0,
                                                     relative_tolerance=0.0, max_evaluations=evaluations)
    objective = iws.objectives.CurrentDriven(data_input=data, options={"model": {"type": "SPMe"}})
    return iws.Pipeline(
        {
            "known": iws.direct_entries.DirectEntry(parameters={"Ambient temperature [K]": 298.15, DP: 8e-15}),
            "fit": iws.DataFit(objectives={"1C": objective}, cost=iws.costs.RMSE(), optimizer=optimizer,
                               parameters={DN: iws.Parameter(DN, initial_value=2e-14, bounds=(1e-14, 1e-13))}),
        },
        name=label,
    )


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler:
    """Peak thread count and RSS of this process, sampled every 20 ms in a background thread."""

    def __init__(self) -> None:
        self.threads = threading.active_count()
        self.rss = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.threads = max(self.threads, threading.active_count())
            self.rss = max(self.rss, rss_mb())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def registrations() -> Iterator[dict[str, float]]:
    """When each wait registered with the poller, i.e. began to wait (its task run had started)."""
    registered: dict[str, float] = {}
    watch = StatusPoller.watch

    def recording_watch(self, resource, ids, **kwargs):
        registered.update(dict.fromkeys(ids, time.time()))
        return watch(self, resource, ids, **kwargs)

    StatusPoller.watch = recording_watch
    try:
        yield registered
    finally:
        StatusPoller.watch = watch


@contextmanager
def timed_sends(base_url: str) -> Iterator[list[float]]:
    """Time every HTTP send to the sandbox, sync (requests) and async (httpx); yields the durations list."""
    durations: list[float] = []
    sync_send, async_send = requests.Session.send, httpx.AsyncClient.send

    def timed_sync(self, request, **kwargs):
        started = time.perf_counter()
        try:
            return sync_send(self, request, **kwargs)
        finally:
            if request.url.startswith(base_url):
                durations.append(time.perf_counter() - started)

    async def timed_async(self, request, **kwargs):
        started = time.perf_counter()
        try:
            return await async_send(self, request, **kwargs)
        finally:
            if str(request.url).startswith(base_url):
                durations.append(time.perf_counter() - started)

    requests.Session.send, httpx.AsyncClient.send = timed_sync, timed_async
    try:
        yield durations
    finally:
        requests.Session.send, httpx.AsyncClient.send = sync_send, async_send


@dataclass
class Side:
    name: str
    ids: list[str]
    started: float = 0.0
    ended: float = 0.0
    noticed: dict[str, float] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    waiting_since: dict[str, float] = field(default_factory=dict)
    threads_before: int = 0
    threads_peak: int = 0
    rss_peak: float = 0.0
    read_seconds: list[float] = field(default_factory=list)
    requests: list[tuple] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    seen_late: list[float] = field(default_factory=list)
    tick_gap: float = 0.0
    start_up: float = 0.0
    first_tick: float = 0.0
    span: float = 0.0

    def p99(self) -> float:
        ordered = sorted(self.read_seconds)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")

    def describe(self) -> str:
        lists = sum(1 for r in self.requests if "status=in." in r[2])
        by_id = sum(1 for r in self.requests if "id=in." in r[2])
        server = sorted(r[4] for r in self.requests)
        returned = sorted(self.noticed[i] - self.seen[i] for i in self.seen)
        seen = (f" (seen by the poller: max {max(self.seen_late):.2f} s / median "
                f"{statistics.median(self.seen_late):.2f} s after the job finished or the wait began; the task "
                f"returned max {returned[-1]:.2f} s / median {statistics.median(returned):.2f} s after that; all "
                f"{len(self.waiting_since)} waits began within {self.start_up:.1f} s; the first tick came "
                f"{self.first_tick:.2f} s after the first wait began; longest gap between ticks {self.tick_gap:.2f} s)"
                ) if self.seen_late else ""
        kinds = f"{lists} lists of unfinished pipelines, {by_id} lists by id, {len(self.requests) - lists - by_id} single reads"
        return (f"{self.name}: {len(self.requests)} status requests ({kinds}), completions noticed "
                f"max {max(self.late):.2f} s / median {statistics.median(self.late):.2f} s late{seen}, "
                f"+{self.threads_peak - self.threads_before} threads, p99 status read {self.p99():.3f} s "
                f"(max {max(self.read_seconds):.3f} s; sandbox median {statistics.median(server):.1f} ms, "
                f"max {server[-1]:.0f} ms), peak RSS {self.rss_peak:.0f} MB, waits took {self.ended - self.started:.1f} s, "
                f"jobs' span {self.span:.1f} s")


def submit(clients: list[Ionworks], data: str, label: str, count: int, evaluations: int) -> list[str]:
    with ThreadPoolExecutor(len(clients)) as pool:
        futures = [pool.submit(clients[i % len(clients)].pipeline.create, fit_config(data, f"{label}-{i}", evaluations))
                   for i in range(count)]
        return [f.result().id for f in futures]


def run_baseline(side: Side, sandbox: LocalSandbox) -> None:
    def wait(pipeline_id: str) -> None:
        client = Ionworks(api_url=sandbox.url, api_key=sandbox.api_key, project_id=sandbox.project_id, timeout=60)
        client.pipeline.wait_for_completion(pipeline_id, timeout=1800, poll_interval=1, verbose=False)
        side.noticed[pipeline_id] = time.time()

    threads = [threading.Thread(target=wait, args=(i,)) for i in side.ids]
    side.threads_before = threading.active_count()
    with Sampler() as sampler, timed_sends(sandbox.url) as durations:
        side.started = time.time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        side.ended = time.time()
    side.threads_before += 1  # the sampler's own thread
    side.threads_peak, side.rss_peak, side.read_seconds = sampler.threads, sampler.rss, durations


class SeenLog(logging.Handler):
    """When each wait logged its pipeline as finished: the poller's notice, before Prefect ends the task run."""

    PATTERN = re.compile(r"Ionworks pipeline (\S+) is (completed|failed|canceled)")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if match := self.PATTERN.search(record.getMessage()):
            self.seen.setdefault(match[1], record.created)


@flow(name="concurrent-waits")
async def wait_for_all(pipeline_ids: list[str], credentials: IonworksCredentials) -> dict[str, float]:
    async def one(pipeline_id: str) -> float:
        await wait_for_pipeline(pipeline_id, credentials)
        return time.time()

    return dict(zip(pipeline_ids, await asyncio.gather(*(one(i) for i in pipeline_ids))))


def run_plugin(side: Side, sandbox: LocalSandbox, credentials: IonworksCredentials) -> None:
    seen = SeenLog()
    logging.getLogger("prefect.task_runs").addHandler(seen)
    reading = sum(t.name == READ_THREAD_NAME for t in threading.enumerate())  # the poller's, kept per process
    side.threads_before = threading.active_count() - reading
    with Sampler() as sampler, timed_sends(sandbox.url) as durations, registrations() as registered:
        side.started = time.time()
        side.noticed = asyncio.run(wait_for_all(side.ids, credentials))
        side.ended = time.time()
    logging.getLogger("prefect.task_runs").removeHandler(seen)
    side.seen, side.waiting_since = seen.seen, registered
    side.threads_before += 1
    side.threads_peak, side.rss_peak, side.read_seconds = sampler.threads, sampler.rss, durations


def settle(side: Side, client: Ionworks, log: Path) -> None:
    """Requests in the waiting window, and how late each completion was noticed (read after the window)."""
    side.requests = [r for r in read_request_log(log) if side.started <= r[0] <= side.ended]
    page = client.get(f"/pipelines?project_id={client.project_id}&limit=1000")["pipelines"]
    job_of = {p["id"]: p["job_id"] for p in page}  # job_id: a sandbox field, read here to time the jobs only
    jobs = {j["job_id"]: j for j in client.get("/jobs/")}
    finished = {i: seconds(jobs[job_of[i]]["finished_at"]) for i in side.ids}
    started = [seconds(jobs[job_of[i]]["started_at"]) for i in side.ids]
    side.late = [side.noticed[i] - max(finished[i], side.started) for i in side.ids]
    side.seen_late = [side.seen[i] - max(finished[i], side.waiting_since[i]) for i in side.ids if i in side.seen]
    ticks = sorted(r[0] for r in side.requests if "status=in." in r[2])
    side.tick_gap = max((b - a for a, b in zip(ticks, ticks[1:])), default=0.0)
    if side.waiting_since:
        side.start_up = max(side.waiting_since.values()) - side.started
        side.first_tick = min(ticks, default=side.started) - min(side.waiting_since.values())
    side.span = max(finished.values()) - min(started)


@contextmanager
def prefect_api(database: str, home: Path) -> Iterator[None]:
    """Prefect's test server (SQLite), or a ``prefect server start`` on a throwaway PostgreSQL database.

    SQLite runs one write at a time: with 200 task runs' state changes and progress artifacts landing at once, a
    write that first reads (an artifact or Variable update) often fails with "database is locked", and Prefect's
    client retries it after about 2 s. PostgreSQL, which Prefect recommends for servers under such load, has no
    such limit.
    """
    if database == "sqlite":
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.live_prefect import LivePrefect, send_queued_logs_and_events
    from tests.postgres_server import PostgresServer, postgres_bindir

    bindir = postgres_bindir()
    if bindir is None:
        raise SystemExit("--prefect-db postgres needs PostgreSQL's initdb and pg_ctl (Debian: apt-get install postgresql)")
    with PostgresServer(bindir) as postgres, \
            LivePrefect(home, {"PREFECT_SERVER_DATABASE_CONNECTION_URL": postgres.url}) as server, \
            temporary_settings({PREFECT_API_URL: server.api}):
        try:
            yield
        finally:
            send_queued_logs_and_events()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=200)
    parser.add_argument("--evaluations", type=int, default=20, help="model evaluations per fit (~15 ms each)")
    parser.add_argument("--plugin-first", action="store_true", help="run the plugin side before the baseline")
    parser.add_argument("--prefect-db", choices=("sqlite", "postgres"), default="sqlite",
                        help="the Prefect server's database: the test server's SQLite, or a PostgreSQL server")
    args = parser.parse_args()

    print(f"Prefect server database: {args.prefect_db}")
    print(f"machine: {os.cpu_count()} cores, load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())} at start")
    with tempfile.TemporaryDirectory() as tmp, prefect_api(args.prefect_db, Path(tmp) / "prefect"):
        log = Path(tmp) / "requests.tsv"
        with LocalSandbox(Path(tmp) / "data", ["bench-key"], workers=2, extra_args=["--request-log", str(log)]) as sandbox:
            client = Ionworks(api_url=sandbox.url, api_key=sandbox.api_key, project_id=sandbox.project_id, timeout=120)
            credentials = IonworksCredentials(api_key=sandbox.api_key, api_url=sandbox.url,
                                              project_id=sandbox.project_id)
            spec = client.cell_spec.create({"name": "bench-spec"})
            instance = client.cell_instance.create(spec.id, {"name": "bench-cell"})
            frame = synthetic_discharge({DN: 5e-14, DP: 8e-15}, c_rates=(1.0,), model="SPMe", noise_v=0.001,
                                        seed=1, period_s=10.0)
            data = upload_measurement.fn(frame, instance.id, "rpt", credentials).db_ref
            submitters = [Ionworks(api_url=sandbox.url, api_key=sandbox.api_key, project_id=sandbox.project_id,
                                   timeout=120) for _ in range(4)]
            warm = submit(submitters, data, "warm-up", 4, args.evaluations)  # both workers build the model
            asyncio.run(wait_for_all(warm, credentials))  # and Prefect starts its services
            sides = [Side("baseline", []), Side("plugin", [])]
            for side in (reversed(sides) if args.plugin_first else sides):
                side.ids = submit(submitters, data, side.name, args.waits, args.evaluations)
                if side.name == "baseline":
                    run_baseline(side, sandbox)
                else:
                    run_plugin(side, sandbox, credentials)
                settle(side, client, log)
    baseline, plugin = sides
    print(f"work per side: {args.waits} pipelines, a {args.evaluations}-evaluation SPMe fit each, 2 sandbox workers")
    print(f"baseline ({args.waits} threads, wait_for_completion(poll_interval=1)): {baseline.describe()}")
    print(f"plugin (one flow, {args.waits} wait_for_pipeline tasks): {plugin.describe()}")
    ratio = len(plugin.requests) / len(baseline.requests)
    print(f"ratio status requests plugin / baseline: {ratio:.3f}x (goal <= {REQUEST_RATIO_GOAL}x: "
          f"{'met' if ratio <= REQUEST_RATIO_GOAL else 'missed'})")
    print(f"ratio p99 status read plugin / baseline: {plugin.p99() / baseline.p99():.2f}x")
    latest, seen = max(plugin.late), max(plugin.seen_late)
    over = sum(late > LATENESS_GOAL_S for late in plugin.late)
    print(f"goal every completion noticed within {LATENESS_GOAL_S:g} s: {'met' if latest <= LATENESS_GOAL_S else 'missed'}"
          f" (task returned: max {latest:.2f} s, {over} of {len(plugin.late)} later than {LATENESS_GOAL_S:g} s; "
          f"seen by the poller: max {seen:.2f} s)")
    extra = plugin.threads_peak - plugin.threads_before
    print(f"goal <= {THREADS_GOAL} extra threads while waiting: {'met' if extra <= THREADS_GOAL else 'missed'} (+{extra})")


if __name__ == "__main__":
    main()
