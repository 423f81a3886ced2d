"""What a measurement's metadata must satisfy before anything is stored for it: the documented limits.

Tags: at most 50 per measurement, each at most 50 characters (trimmed, de-duplicated case-insensitively). A
``protocol_id`` names one of the caller's saved protocols in the measurement's own project. Only ``time_series``
measurements can be uploaded to the sandbox.
"""

from __future__ import annotations

from typing import Any

from ..auth import Principal
from ..errors import ApiError, bad_request, not_found
from ..store import Store
from .deps import require

MAX_TAGS, MAX_TAG_LENGTH = 50, 50


def normalise_tags(tags: Any) -> list[str]:
    """Trimmed, de-duplicated case-insensitively (first spelling wins) and sorted; 400 naming a bad tag."""
    if tags is None:
        return []
    if isinstance(tags, str) or not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise bad_request("Field 'tags' must be a list of strings", {"field": "tags"})
    kept: dict[str, str] = {}
    for tag in (t.strip() for t in tags):
        if len(tag) > MAX_TAG_LENGTH:
            raise bad_request(f"Tag '{tag}' is longer than {MAX_TAG_LENGTH} characters", {"field": "tags"})
        if tag:
            kept.setdefault(tag.lower(), tag)
    if len(kept) > MAX_TAGS:
        raise bad_request(f"A measurement may carry at most {MAX_TAGS} tags, got {len(kept)}", {"field": "tags"})
    return sorted(kept.values(), key=str.lower)


def time_series_only(body: dict[str, Any]) -> None:
    kind = body.get("measurement_type") or "time_series"
    if kind != "time_series":
        raise ApiError(
            422,
            "UNSUPPORTED",
            f"measurement_type '{kind}' cannot be uploaded to the sandbox; supported: ['time_series']",
            {"field": "measurement_type", "value": kind, "supported": ["time_series"]},
        )


def checked_metadata(body: dict[str, Any]) -> dict[str, Any]:
    """The ``measurement`` object, checked (name given, tags within the documented limits)."""
    measurement = body.get("measurement")
    if not isinstance(measurement, dict):
        raise bad_request("Field 'measurement' must be an object with a 'name'", {"field": "measurement"})
    require(measurement, "name")
    return {**measurement, "tags": normalise_tags(measurement.get("tags"))}


def check_protocol(store: Store, caller: Principal, protocol_id: Any, project_id: str) -> None:
    """A ``protocol_id`` must name one of the caller's saved protocols in the measurement's project."""
    if protocol_id is None:
        return
    template = store.find("experiment_template", str(protocol_id), org_id=caller.org_id)
    if template is None:
        raise not_found("Protocol", str(protocol_id))
    if template.get("project_id") != project_id:
        raise bad_request(
            f"protocol_id '{protocol_id}' is in another project than the measurement's '{project_id}'",
            {"field": "protocol_id"},
        )
