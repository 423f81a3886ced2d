"""Background jobs: a queue in the record store, run by a pool of worker processes.

Status moves ``pending -> running -> completed | failed | canceled``. Cancelling a running job stops its
worker process at once (a new one takes its place). After a restart no job is left ``running``: such jobs are
re-queued with a note saying why.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .errors import not_found
from .store import Store, now_iso
from .worker import worker_main

TERMINAL = frozenset({"completed", "failed", "canceled"})
FAILED = frozenset({"failed", "canceled"})
#: Finished jobs never change, so the newest of them are kept decoded: a fit's output is ~0.6 MB of JSON, read
#: again by every result, elements and series request.
FINISHED_KEPT = 32
WARM_IMPORTS = ("numpy", "polars", "pybamm")


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    job_id: str | None = None


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    """A job record in the ``JobResponse`` shape the client parses."""
    return {
        "job_id": job["id"],
        "status": job["status"],
        "job_type": job["job_type"],
        "priority": job.get("priority", 5),
        "created_at": job["created_at"],
        "updated_at": job["updated_at"],
        "started_at": job.get("started_at"),
        "finished_at": job.get("finished_at"),
        "is_terminal": job["status"] in TERMINAL,
        "is_failed": job["status"] in FAILED,
        "error": job.get("error"),
        "error_code": job.get("error_code"),
        "progress": job.get("progress"),
        "result": job.get("summary"),
    }


class JobRunner:
    """Runs handlers (``"module:function"`` taking ``(payload, ctx)``) in ``workers`` processes.

    Example:
        >>> runner = JobRunner(store, data_dir, workers=2); runner.start()
        >>> job = runner.submit("simulate", "pkg.mod:run", {"x": 1}, org_id=org)
    """

    def __init__(self, store: Store, data_dir: Path, workers: int = 2) -> None:
        self.store = store
        self.data_dir = data_dir
        self.size = max(1, workers)
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.RLock()
        self._queue: list[str] = []
        self._workers: list[_Worker] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished: OrderedDict[tuple[str, str | None], dict[str, Any]] = OrderedDict()

    # lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        for job in self.store.list("job"):
            if job["status"] == "running":
                self.store.update(
                    "job",
                    job["id"],
                    {"status": "pending", "note": "Re-queued: the sandbox restarted while this job was running."},
                )
                job["status"] = "pending"
            if job["status"] == "pending":
                self._queue.append(job["id"])
        self._workers = [self._spawn() for _ in range(self.size)]
        self._thread = threading.Thread(target=self._loop, name="job-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)
        with self._lock:
            for worker in self._workers:
                _terminate(worker)
            self._workers = []

    # API -------------------------------------------------------------------------------------------------
    def submit(
        self, job_type: str, handler: str, payload: dict[str, Any], *, org_id: str, priority: int = 5
    ) -> dict[str, Any]:
        job = self.store.insert(
            "job",
            {"job_type": job_type, "handler": handler, "payload": payload, "status": "pending", "priority": priority},
            org_id=org_id,
        )
        with self._lock:
            self._queue.append(job["id"])
        self._wake.set()
        return job

    def get(self, job_id: str, org_id: str | None = None) -> dict[str, Any]:
        """The job's record (shared when finished: callers must not change it)."""
        key = (job_id, org_id)
        with self._lock:
            if (cached := self._finished.get(key)) is not None:
                self._finished.move_to_end(key)
                return cached
        job = self.store.find("job", job_id, org_id=org_id)
        if job is None:
            raise not_found("Job", job_id)
        if job["status"] in TERMINAL:
            with self._lock:
                self._finished[key] = job
                while len(self._finished) > FINISHED_KEPT:
                    self._finished.popitem(last=False)
        return job

    def cancel(self, job_id: str, org_id: str | None = None) -> dict[str, Any]:
        """Cancel a pending or running job; a finished job is returned unchanged."""
        with self._lock:
            job = self.get(job_id, org_id)
            if job["status"] in TERMINAL:
                return job
            job = self._finish(job_id, {"status": "canceled", "error": "Canceled by request"})
            if job_id in self._queue:
                self._queue.remove(job_id)
            for worker in self._workers:
                if worker.job_id == job_id:
                    _terminate(worker)
        self._wake.set()
        return job

    def delete(self, job_id: str) -> None:
        self.cancel(job_id)
        self._forget(job_id)
        self.store.delete("job", job_id)

    # internals -----------------------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=worker_main, args=(child, str(self.data_dir), WARM_IMPORTS), name="sandbox-worker", daemon=True
        )
        process.start()
        child.close()
        return _Worker(process=process, conn=parent)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._replace_dead_workers()
                self._dispatch()
                conns = [w.conn for w in self._workers]
            for conn in wait(conns, timeout=0.05) if conns else []:
                self._receive(conn)
            if not conns:
                self._wake.wait(0.05)
                self._wake.clear()

    def _dispatch(self) -> None:
        for worker in self._workers:
            if not self._queue:
                return
            if not worker.ready or worker.job_id is not None:
                continue
            job_id = self._queue.pop(0)
            job = self.store.find("job", job_id)
            if job is None or job["status"] != "pending":
                continue
            self._update(job_id, {"status": "running", "started_at": now_iso()})
            worker.job_id = job_id
            try:
                worker.conn.send((job_id, job["handler"], job["payload"]))
            except (BrokenPipeError, OSError):
                _terminate(worker)

    def _receive(self, conn: Connection) -> None:
        with self._lock:
            worker = next((w for w in self._workers if w.conn is conn), None)
            if worker is None:
                return
            try:
                kind, job_id, data = conn.recv()
            except (EOFError, OSError):
                _terminate(worker)
                return
            if kind == "ready":
                worker.ready = True
                return
            job = self.store.find("job", job_id)
            if job is None or job["status"] in TERMINAL:
                if kind != "progress":
                    worker.job_id = None
                return
            if kind == "progress":
                self._update(job_id, {"progress": data})
                return
            worker.job_id = None
            if kind == "done":
                summary = data.pop("summary", None) if isinstance(data, dict) else None
                self._finish(job_id, {"status": "completed", "output": data, "summary": summary})
            else:
                self._finish(job_id, {"status": "failed", "error": data["error"], "error_code": data["error_code"]})

    def _replace_dead_workers(self) -> None:
        for index, worker in enumerate(self._workers):
            if worker.process.is_alive():
                continue
            if worker.job_id is not None:
                job = self.store.find("job", worker.job_id)
                if job is not None and job["status"] not in TERMINAL:
                    self._finish(
                        worker.job_id,
                        {"status": "failed", "error": "The worker process running this job exited unexpectedly.",
                         "error_code": "INTERNAL_ERROR"},
                    )
            worker.conn.close()
            self._workers[index] = self._spawn()

    def _finish(self, job_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._update(job_id, {**changes, "finished_at": now_iso()})

    def _update(self, job_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        self._forget(job_id)
        return self.store.update("job", job_id, changes)

    def _forget(self, job_id: str) -> None:
        with self._lock:
            for key in [k for k in self._finished if k[0] == job_id]:
                del self._finished[key]


def _terminate(worker: _Worker) -> None:
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join(timeout=5)
