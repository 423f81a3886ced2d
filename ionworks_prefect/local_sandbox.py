"""Run the local Ionworks sandbox as a child process on a loopback port.

The sandbox is started with ``python -m ionworks_sandbox``; this module never imports it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalSandbox:
    """A sandbox child process; ``start()``/``stop()``/``restart()`` keep its data dir.

    Example:
        >>> with LocalSandbox(Path(".sandbox-data"), ["dev-key"]) as sandbox: print(sandbox.url)
    """

    data_dir: Path
    api_keys: list[str]
    workers: int = 2
    extra_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    project_id: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def api_key(self) -> str:
        return self.api_keys[0].rpartition(":")[2]

    def start(self, timeout: float = 60.0) -> LocalSandbox:
        command = [sys.executable, "-m", "ionworks_sandbox", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        command += [arg for key in self.api_keys for arg in ("--api-key", key)]
        command += ["--workers", str(self.workers), *self.extra_args]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=os.environ.copy())
        for line in iter(self.process.stdout.readline, b""):
            name, _, value = line.decode().strip().partition("=")
            if name == "IONWORKS_PROJECT_ID":
                self.project_id = value
                break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sandbox exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"sandbox did not answer /healthz within {timeout} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> LocalSandbox:
        self.stop()
        return self.start()

    def client_env(self) -> dict[str, str]:
        """The variables the official client reads; links it builds (``client.urls``) open the sandbox's pages."""
        return {"IONWORKS_API_URL": self.url, "IONWORKS_API_KEY": self.api_key, "IONWORKS_PROJECT_ID": self.project_id or "",
                "IONWORKS_APP_URL": f"{self.url}/app"}

    def __enter__(self) -> LocalSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
