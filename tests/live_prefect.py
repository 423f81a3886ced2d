"""A real ``prefect server start`` (with the UI when asked) on a free loopback port, workers and flows in their own
processes, for the tests that run Prefect the way users do (test_deployments, test_dashboards)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ionworks_prefect.local_sandbox import free_port

ROOT = Path(__file__).resolve().parents[1]


def send_queued_logs_and_events() -> None:
    """Send this process's queued Prefect logs and events now, as ``prefect_test_harness`` does before it stops its
    server. Call it before stopping a server this process ran flows against: at exit, Prefect would otherwise wait
    on them while they retry a server that is gone."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    EventsWorker.drain_all(timeout=30)


class LivePrefect:
    """``prefect server start`` on a free loopback port with its own PREFECT_HOME, plus workers; all stopped on exit.

    With ``ui=True`` the server also serves the UI at :attr:`ui` and tells it where the API is
    (``PREFECT_UI_API_URL``): on a port other than 4200 the UI otherwise shows "Can't connect to Server API".
    """

    def __init__(self, home: Path, extra_env: dict[str, str], *, ui: bool = False) -> None:
        port = free_port()
        self.ui = f"http://127.0.0.1:{port}"
        self.api = f"{self.ui}/api"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env.update(extra_env, PREFECT_HOME=str(home), PREFECT_API_URL=self.api, DO_NOT_TRACK="1",
                        PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED=str(ui).lower(),
                        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2", PREFECT_WORKER_QUERY_SECONDS="1")
        if ui:
            self.env.update(PREFECT_UI_API_URL=self.api, PREFECT_UI_URL=self.ui,
                            PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false")
        self.log = home / "processes.log"
        home.mkdir(parents=True, exist_ok=True)
        self.processes: list[subprocess.Popen] = []
        self._spawn("-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port))
        self.http = httpx.Client(base_url=self.api, timeout=30)
        self._until(lambda: self._healthy(), 120, "the Prefect server to answer /health")

    def _spawn(self, *args: str) -> None:
        with open(self.log, "ab") as log:
            self.processes.append(subprocess.Popen([sys.executable, *args], cwd=ROOT, env=self.env,
                                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def _until(self, condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := condition():
                return value
            time.sleep(0.5)
        raise TimeoutError(f"waited {timeout:g} s for {what}; see {self.log}")

    def python(self, *args: str, timeout: float = 300) -> str:
        """``python ARGS`` with this server as PREFECT_API_URL (a flow run from a script, say); returns stdout."""
        done = subprocess.run([sys.executable, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"python {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def cli(self, *args: str) -> str:
        return self.python("-m", "prefect", *args)

    def start_worker(self, pool: str) -> None:
        self._spawn("-m", "prefect", "worker", "start", "--pool", pool)

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One API call, retried as Prefect's own client does when the server is busy (503/429)."""
        for _ in range(9):
            response = self.http.request(method, path, **kwargs)
            if response.status_code not in (429, 503):
                return response.raise_for_status()
            time.sleep(float(response.headers.get("Retry-After") or 1))
        return self.http.request(method, path, **kwargs).raise_for_status()

    def deployment_id(self, name: str) -> str:
        return self.request("GET", f"/deployments/name/{name}").json()["id"]

    def run_deployment(self, name: str) -> str:
        return self.request("POST", f"/deployments/{self.deployment_id(name)}/create_flow_run", json={}).json()["id"]

    def runs(self, deployment: str, states: list[str] | None = None) -> list[dict]:
        body: dict = {"deployments": {"id": {"any_": [self.deployment_id(deployment)]}}}
        if states:
            body["flow_runs"] = {"state": {"type": {"any_": states}}}
        return self.request("POST", "/flow_runs/filter", json=body).json()

    def wait_for_run(self, run_id: str, timeout: float = 240) -> dict:
        def finished() -> dict | None:
            run = self.request("GET", f"/flow_runs/{run_id}").json()
            return run if run["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None

        return self._until(finished, timeout, f"flow run {run_id}")

    def close(self) -> None:
        self.http.close()
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def __enter__(self) -> LivePrefect:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
