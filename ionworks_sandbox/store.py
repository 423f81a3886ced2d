"""SQLite record store: one table of JSON documents, indexed by kind, organization, project and parent.

Every resource (projects, cell specifications, measurements, pipelines, jobs, simulations ...) is a record
``{"id", "created_at", "updated_at", ...fields}`` of one ``kind``. Records survive a server restart.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import not_found

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    id TEXT PRIMARY KEY,
    org_id TEXT,
    project_id TEXT,
    parent_id TEXT,
    name TEXT,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_kind_org ON records (kind, org_id);
CREATE INDEX IF NOT EXISTS records_kind_parent ON records (kind, parent_id);
"""


def now_iso() -> str:
    """The current UTC time as an ISO-8601 string ending in ``Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_safe(value: Any) -> Any:
    """Replace NaN and infinities with ``None``, recursively (Starlette refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class Store:
    """Thread-safe access to the records table.

    Example:
        >>> store = Store(Path("/tmp/sandbox.db")); spec = store.insert("cell_specification", {"name": "A"})
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(
        self,
        kind: str,
        fields: dict[str, Any],
        *,
        org_id: str | None = None,
        project_id: str | None = None,
        parent_id: str | None = None,
        id: str | None = None,
    ) -> dict[str, Any]:
        """Create a record and return it with ``id``, ``created_at`` and ``updated_at`` filled in."""
        stamp = now_iso()
        record = {"id": id or str(uuid.uuid4()), "created_at": stamp, "updated_at": stamp, **fields}
        with self._lock:
            self._db.execute(
                "INSERT INTO records (kind, id, org_id, project_id, parent_id, name, created_at, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, record["id"], org_id, project_id, parent_id, record.get("name"), stamp, _dump(record)),
            )
        return record

    def find(self, kind: str, id: str, *, org_id: str | None = None) -> dict[str, Any] | None:
        """The record of ``kind`` with ``id`` (visible to ``org_id`` when given), or ``None``."""
        sql = "SELECT body FROM records WHERE kind = ? AND id = ?"
        args: list[Any] = [kind, id]
        if org_id is not None:
            sql += " AND org_id = ?"
            args.append(org_id)
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return json.loads(row[0]) if row else None

    def get(self, kind: str, id: str, *, org_id: str | None = None, label: str | None = None) -> dict[str, Any]:
        """Like :meth:`find`, but a missing record raises a 404 ``ApiError``."""
        record = self.find(kind, id, org_id=org_id)
        if record is None:
            raise not_found(label or kind.replace("_", " ").capitalize(), id)
        return record

    def update(self, kind: str, id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into the record, bump ``updated_at`` and return the new record."""
        with self._lock:
            record = self.get(kind, id)
            record.update(changes)
            record["updated_at"] = now_iso()
            self._db.execute(
                "UPDATE records SET body = ?, name = ? WHERE kind = ? AND id = ?",
                (_dump(record), record.get("name"), kind, id),
            )
        return record

    def delete(self, kind: str, id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM records WHERE kind = ? AND id = ?", (kind, id))

    def list(
        self,
        kind: str,
        *,
        org_id: str | None = None,
        project_id: str | None = None,
        parent_id: str | None = None,
        name: str | None = None,
    ) -> list[dict[str, Any]]:
        """All records of ``kind`` matching the given indexed columns, oldest first."""
        sql = "SELECT body FROM records WHERE kind = ?"
        args: list[Any] = [kind]
        for column, value in (("org_id", org_id), ("project_id", project_id), ("parent_id", parent_id), ("name", name)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        sql += " ORDER BY created_at, rowid"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [json.loads(row[0]) for row in rows]


def _dump(record: dict[str, Any]) -> str:
    return json.dumps(json_safe(record), default=str)
