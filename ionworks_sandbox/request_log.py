"""Optional request log: one tab-separated line per HTTP request, for counting and timing what clients send.

Each line is ``<start, Unix seconds>\t<method>\t<raw path and query>\t<status>\t<milliseconds to answer>``.
Enabled by ``--request-log FILE`` (or ``IONWORKS_SANDBOX_REQUEST_LOG``); off by default.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any


class RequestLogMiddleware:
    """Append one line per request to ``path`` as its answer's last part is sent."""

    def __init__(self, app: Any, path: Path) -> None:
        self.app = app
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - open for the app's lifetime
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, clock = time.time(), time.perf_counter()
        status = 0
        written = False

        def write() -> None:
            nonlocal written
            target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("latin-1")
            millis = (time.perf_counter() - clock) * 1e3
            with self._lock:
                self._file.write(f"{started:.6f}\t{scope['method']}\t{target}\t{status}\t{millis:.3f}\n")
            written = True

        async def recording_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                write()  # before the client has the whole answer, so a line is there once a call returns
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            if not written:
                write()


def read_request_log(path: Path) -> list[tuple[float, str, str, int, float]]:
    """The log's lines as ``(start, method, target, status, milliseconds)`` tuples.

    Example:
        >>> [r for r in read_request_log(Path("requests.tsv")) if r[1] == "GET"]
    """
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        started, method, target, status, millis = line.split("\t")
        rows.append((float(started), method, target, int(status), float(millis)))
    return rows
