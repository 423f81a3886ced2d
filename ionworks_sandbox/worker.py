"""The compute worker process: runs one job at a time and reports progress back over a pipe.

Workers run at a lower CPU priority (``nice`` 10) than the API server and the flows it serves. Ionworks computes
on machines of its own, so its fits never take CPU from the flows waiting for them; here they share the
machine, and two workers at full priority slow down a flow that starts hundreds of task runs at once. When
nothing else wants the CPU, a fit runs as fast as before.
"""

from __future__ import annotations

import importlib
import os
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

Handler = Callable[[dict[str, Any], "JobContext"], dict[str, Any]]
#: How much lower than the server the workers' CPU priority is.
WORKER_NICENESS = 10


@dataclass
class JobContext:
    """What a job handler gets besides its payload.

    Example:
        >>> def run(payload, ctx): ctx.report({"done": 1, "total": 2}); return {"ok": True}
    """

    job_id: str
    data_dir: Path
    _send: Callable[[tuple], None]
    _last_sent: float = 0.0
    _pending: dict[str, Any] | None = field(default=None)
    min_interval: float = 0.2

    @property
    def objects_dir(self) -> Path:
        """Root of the sandbox's object storage (files served behind signed URLs)."""
        return self.data_dir / "objects"

    def report(self, progress: dict[str, Any], *, force: bool = False) -> None:
        """Publish the job's progress; updates are coalesced to a few per second."""
        self._pending = progress
        now = time.monotonic()
        if force or now - self._last_sent >= self.min_interval:
            self.flush()

    def flush(self) -> None:
        if self._pending is not None:
            self._send(("progress", self.job_id, self._pending))
            self._pending = None
            self._last_sent = time.monotonic()


def resolve(path: str) -> Handler:
    """Import ``"package.module:function"``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def worker_main(conn: Connection, data_dir: str, warm_imports: tuple[str, ...]) -> None:
    """Loop: receive ``(job_id, handler, payload)``, run it, send ``done`` or ``failed``; ``None`` stops."""
    os.nice(WORKER_NICENESS)
    for module in warm_imports:
        importlib.import_module(module)
    conn.send(("ready", None, None))
    while True:
        message = conn.recv()
        if message is None:
            return
        job_id, handler_path, payload = message
        ctx = JobContext(job_id=job_id, data_dir=Path(data_dir), _send=conn.send)
        try:
            result = resolve(handler_path)(payload, ctx)
            ctx.flush()
            conn.send(("done", job_id, result or {}))
        except Exception as exc:  # every failure is reported to the job record, never lost
            ctx.flush()
            conn.send(
                (
                    "failed",
                    job_id,
                    {
                        "error": f"{type(exc).__name__}: {exc}" if not getattr(exc, "error_code", None) else str(exc),
                        "error_code": getattr(exc, "error_code", None) or "INTERNAL_ERROR",
                        "traceback": traceback.format_exc(limit=8),
                    },
                )
            )
