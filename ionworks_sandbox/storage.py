"""Local object storage with signed URLs, standing in for Ionworks' cloud storage."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from .errors import ApiError


class Storage:
    """Files under ``root``, reachable at ``{public_url}/storage/{key}?token=...``.

    Example:
        >>> storage = Storage(Path("data/objects"), "http://127.0.0.1:8765", b"secret")
        >>> url = storage.signed_url("m1/time_series.parquet")
    """

    def __init__(self, root: Path, public_url: str, secret: bytes) -> None:
        self.root = root
        self.public_url = public_url.rstrip("/")
        self._secret = secret
        root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def in_data_dir(cls, data_dir: Path, public_url: str) -> Storage:
        """Storage under ``data_dir/objects`` with a signing secret kept in ``data_dir/secret``."""
        secret_file = data_dir / "secret"
        if not secret_file.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(secrets.token_hex(32))
        return cls(data_dir / "objects", public_url, secret_file.read_text().encode())

    def token(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    def signed_url(self, key: str) -> str:
        return f"{self.public_url}/storage/{key}?token={self.token(key)}"

    def path(self, key: str) -> Path:
        """The file behind ``key``; keys may not leave the storage root."""
        target = (self.root / key).resolve()
        if self.root.resolve() not in target.parents:
            raise ApiError(400, "BAD_REQUEST", f"Invalid storage key {key!r}")
        return target

    def check(self, key: str, token: str | None) -> Path:
        """The file behind ``key`` if ``token`` signs it, else 403."""
        if not token or not hmac.compare_digest(token, self.token(key)):
            raise ApiError(403, "FORBIDDEN", "Invalid or missing storage token")
        return self.path(key)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under ``prefix/``."""
        folder = self.path(prefix)
        if folder.is_dir():
            for child in sorted(folder.rglob("*"), reverse=True):
                child.rmdir() if child.is_dir() else child.unlink()
            folder.rmdir()
