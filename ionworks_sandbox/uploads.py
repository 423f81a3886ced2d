"""Pending measurement uploads: opened by ``initiate-upload``, ended by ``confirm-upload`` or by expiry.

An upload waits at most ``ttl_s`` for its confirm. Past that its record and stored files are removed, by a
background sweep and by any request that finds it overdue, and its upload links stop working at the same moment.
Every change of a pending upload (a file stored into it, its confirmation, its expiry) happens under :data:`LOCK`,
so an upload is confirmed once, and confirmed data is never replaced or swept.

Example:
    >>> uploads = PendingUploads(store, storage, ttl_s=86400); uploads.start()
    >>> upload = uploads.open({"name": "rpt"}, org_id=org, project_id=project, parent_id=instance)
    >>> uploads.find(upload["id"], org_id=org)   # None once confirmed, discarded or expired
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

from .measurement_processing import STEPS, TIME_SERIES, object_key
from .storage import Storage
from .store import Store

UPLOAD = "measurement_upload"
#: The files an upload accepts; anything else under its folder is refused.
TARGETS = (TIME_SERIES, STEPS)
LOCK = threading.RLock()


class PendingUploads:
    """The pending uploads of a store, their signed upload links and their expiry."""

    def __init__(self, store: Store, storage: Storage, ttl_s: float) -> None:
        self.store = store
        self.storage = storage
        self.ttl_s = ttl_s
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def open(self, fields: dict[str, Any], *, org_id: str, project_id: str, parent_id: str) -> dict[str, Any]:
        """Record a new pending upload."""
        return self.store.insert(UPLOAD, fields, org_id=org_id, project_id=project_id, parent_id=parent_id)

    def targets(self, upload: dict[str, Any]) -> list[dict[str, Any]]:
        """The upload entries the client PUTs to: one signed, expiring PUT link per accepted file."""
        until = self.expires_at(upload)
        entries = []
        for filename in TARGETS:
            key = object_key(upload["id"], filename)
            entries.append(
                {
                    "filename": filename,
                    "signed_url": self.storage.signed_url(key, "PUT", until),
                    "token": self.storage.signed_token(key, "PUT", until),
                    "path": key,
                }
            )
        return entries

    def expires_at(self, upload: dict[str, Any]) -> float:
        created = datetime.strptime(upload["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        return created.timestamp() + self.ttl_s

    def find(self, upload_id: str, *, org_id: str | None = None) -> dict[str, Any] | None:
        """The pending upload, or ``None`` if there is none (an overdue one is discarded on the spot)."""
        with LOCK:
            upload = self.store.find(UPLOAD, upload_id, org_id=org_id)
            if upload is not None and self.expires_at(upload) <= time.time():
                self.discard(upload_id)
                return None
            return upload

    def discard(self, upload_id: str) -> None:
        """Remove a pending upload and whatever was stored for it."""
        with LOCK:
            self.store.delete(UPLOAD, upload_id)
            self.storage.delete_prefix(upload_id)

    def sweep(self) -> int:
        """Discard every overdue upload; returns how many."""
        overdue = [u["id"] for u in self.store.list(UPLOAD) if self.expires_at(u) <= time.time()]
        for upload_id in overdue:
            self.find(upload_id)
        return len(overdue)

    def start(self) -> None:
        """Sweep now, then every half lifetime (at most a minute apart) on a background thread."""
        self.sweep()
        interval = min(max(self.ttl_s / 2, 0.2), 60.0)

        def run() -> None:
            while not self._stop.wait(interval):
                self.sweep()

        self._sweeper = threading.Thread(target=run, name="upload-sweeper", daemon=True)
        self._sweeper.start()

    def close(self) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join()
