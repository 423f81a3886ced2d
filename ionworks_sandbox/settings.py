"""Sandbox settings: where data lives, which API keys are accepted, how many compute workers run, and the limits
a careful server keeps (body size, how long an unconfirmed upload waits, how long a download link works)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

_NAMESPACE = uuid.UUID("8f1d2c4e-5b6a-4c3d-9e8f-7a6b5c4d3e2f")


@dataclass(frozen=True)
class Organization:
    """An organization and the API keys that act for it."""

    id: str
    name: str
    default_project_id: str


def organization_for(entry: str) -> tuple[str, Organization]:
    """Parse an ``--api-key`` entry, ``KEY`` or ``ORG:KEY``, into ``(key, organization)``.

    Keys given without an organization each get an organization of their own. Ids are derived
    deterministically, so a restarted sandbox gives every key the same organization and project.

    Example:
        >>> key, org = organization_for("acme:secret-key")
    """
    name, sep, key = entry.partition(":")
    if not sep:
        key, name = entry, "org-" + hashlib.sha256(entry.encode()).hexdigest()[:8]
    if not key:
        raise ValueError("An API key must not be empty")
    org_id = str(uuid.uuid5(_NAMESPACE, f"org:{name}"))
    project_id = str(uuid.uuid5(_NAMESPACE, f"project:{org_id}:default"))
    return key, Organization(id=org_id, name=name, default_project_id=project_id)


@dataclass(frozen=True)
class SandboxSettings:
    """Everything a sandbox needs to start.

    Example:
        >>> SandboxSettings(data_dir=Path(".sandbox-data"), api_keys=("dev-key",), public_url="http://127.0.0.1:8765")
    """

    data_dir: Path
    api_keys: tuple[str, ...]
    public_url: str
    workers: int = 2
    max_body_bytes: int = 512 * 1024 * 1024
    upload_ttl_s: float = 24 * 3600.0
    download_url_ttl_s: float = 900.0
    request_log: Path | None = None
    organizations: dict[str, Organization] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.api_keys:
            raise ValueError("The sandbox needs at least one API key (--api-key or IONWORKS_SANDBOX_API_KEYS)")
        for entry in self.api_keys:
            key, org = organization_for(entry)
            self.organizations[key] = org
