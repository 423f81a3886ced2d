"""Cycler watcher: scan a drop directory and emit ``ionworks.cycler.file_arrived`` for each new file.

Run it on an interval; the ``ingest-cycler-data`` deployment is triggered by the events. What has been
seen is kept in a JSON state file (default ``<directory>/.cycler-watcher.json``) as size and modification
time per file, so a file rewritten later is announced again. Hidden files are ignored, and so are files
modified less than ``settle_seconds`` ago (a cycler may still be writing them).

Event: resource ``ionworks.cycler-file.<hash of path>`` (``prefect.resource.name`` the file name,
``ionworks.path`` the absolute path); payload ``{"path", "size", "cell"}``.

Example:
    >>> asyncio.run(cycler_watcher("/lab/drop/cell-7", cell="1c4f...", pattern="*.mpt"))
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Optional, Union

from prefect import flow, get_run_logger
from prefect.events import emit_event

from ionworks_prefect import CellTarget

FILE_ARRIVED = "ionworks.cycler.file_arrived"
STATE_FILE_NAME = ".cycler-watcher.json"


def file_resource(path: Path) -> dict[str, str]:
    """The event resource of a cycler file."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return {"prefect.resource.id": f"ionworks.cycler-file.{digest}", "prefect.resource.name": path.name,
            "ionworks.path": str(path)}


def new_files(directory: Path, pattern: str, seen: dict[str, list[int]], settle_seconds: float) -> list[Path]:
    """Non-hidden files matching ``pattern`` that are settled and not in ``seen`` with the same size and mtime."""
    settled_before = time.time() - settle_seconds
    found = []
    for path in sorted(directory.glob(pattern)):
        if not path.is_file() or path.name.startswith("."):
            continue
        stat = path.stat()
        if stat.st_mtime <= settled_before and seen.get(path.name) != [stat.st_size, stat.st_mtime_ns]:
            found.append(path)
    return found


def _load(state_file: Path) -> dict[str, list[int]]:
    return json.loads(state_file.read_text()) if state_file.exists() else {}


def _save(state_file: Path, seen: dict[str, list[int]]) -> None:
    partial = state_file.with_name(state_file.name + ".tmp")
    partial.write_text(json.dumps(seen, indent=1, sort_keys=True))
    os.replace(partial, state_file)


@flow(name="cycler-watcher", description="Emit ionworks.cycler.file_arrived for new files in a drop directory.")
async def cycler_watcher(
    directory: str,
    cell: Union[str, CellTarget, None] = None,
    pattern: str = "*",
    state_file: Optional[str] = None,
    settle_seconds: float = 5.0,
) -> list[str]:
    """Announce the new files in ``directory``; ``cell`` (instance id or spec/instance) travels in the payload.

    Each new or rewritten file (by size and modification time) emits one ``ionworks.cycler.file_arrived`` event,
    then the state file is updated. Hidden files and files modified less than ``settle_seconds`` ago are left for
    a later run. Nothing is sent to Ionworks.

    Args:
        directory: The drop directory to scan (not its subdirectories, unless ``pattern`` reaches them).
        cell: The cell the files belong to: an instance id or a :class:`CellTarget` (given to the event payload
            as a dict); None leaves it to the consumer.
        pattern: Glob pattern of the files to announce, within ``directory``.
        state_file: Where what has been seen is kept; ``<directory>/.cycler-watcher.json`` by default.
        settle_seconds: How long a file must be unmodified before it is announced.

    Returns:
        The absolute paths announced in this run.

    Raises:
        FileNotFoundError: ``directory`` (or the state file's directory) does not exist, so the state cannot be
            written.
        json.JSONDecodeError: The state file is not JSON.

    Examples:
        ```python
        from prefect import flow
        from ionworks_prefect.flows import cycler_watcher

        @flow
        async def watch_lab_drops():
            for instance in ("cell-7", "cell-8"):
                await cycler_watcher(f"/lab/drop/{instance}", pattern="*.mpt",
                                     cell={"specification": "NMC811 21700", "instance": instance})
        ```
    """
    root = Path(directory).expanduser().resolve()
    state = Path(state_file).expanduser() if state_file else root / STATE_FILE_NAME
    seen = _load(state)
    arrived = new_files(root, pattern, seen, settle_seconds)
    payload_cell = cell.model_dump() if isinstance(cell, CellTarget) else cell
    for path in arrived:
        stat = path.stat()
        emit_event(FILE_ARRIVED, resource=file_resource(path),
                   payload={"path": str(path), "size": stat.st_size, "cell": payload_cell})
        seen[path.name] = [stat.st_size, stat.st_mtime_ns]
    _save(state, seen)
    get_run_logger().info("%d new file(s) in %s", len(arrived), root)
    return [str(p) for p in arrived]
