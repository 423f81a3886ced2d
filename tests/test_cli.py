"""``ionworks-prefect sandbox`` starts a sandbox and prints the three variables a client needs."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from ionworks_prefect.local_sandbox import free_port


def test_sandbox_command_prints_client_settings_and_serves(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "ionworks_prefect.cli", "sandbox", "--port", str(port), "--data-dir", str(tmp_path),
               "--api-key", "cli-key", "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = dict(process.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert lines["IONWORKS_API_URL"] == f"http://127.0.0.1:{port}"
        assert lines["IONWORKS_API_KEY"] == "cli-key"
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"{lines['IONWORKS_API_URL']}/projects/{lines['IONWORKS_PROJECT_ID']}",
                                     headers={"X-API-Key": "cli-key"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert response.status_code == 200 and response.json()["id"] == lines["IONWORKS_PROJECT_ID"]
    finally:
        process.terminate()
        process.wait(timeout=20)
