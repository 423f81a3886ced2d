"""Local object storage with signed URLs, standing in for Ionworks' cloud storage.

A key is ``/``-separated segments, none empty, ``.`` or ``..``: it names exactly one object under the storage
root. A signed URL carries ``expires`` and a ``token`` that signs the method, the key and that expiry, so an
upload link cannot read, a download link cannot write, and neither names any other object or outlives its time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import shutil
import time
from pathlib import Path

from .errors import ApiError, bad_request

#: How long a download link handed out by a redirect stays valid, unless configured otherwise.
DOWNLOAD_URL_LIFETIME_S = 900.0


def normalise_key(key: str) -> str:
    """``key`` if it names one object inside the storage root, else 400 naming the key.

    Example:
        >>> normalise_key("m1/time_series.parquet")
        'm1/time_series.parquet'
    """
    segments = key.split("/")
    if any(s in ("", ".", "..") for s in segments) or "\\" in key or "\x00" in key:
        raise bad_request(
            f"Invalid storage key {key!r}: keys are '/'-separated names without empty, '.' or '..' segments",
            {"field": "key"},
        )
    return key


class Storage:
    """Files under ``root``, reachable at ``{public_url}/storage/{key}?expires=...&token=...``.

    Example:
        >>> storage = Storage(Path("data/objects"), "http://127.0.0.1:8765", b"secret")
        >>> url = storage.signed_url("m1/time_series.parquet")            # a download link
        >>> url = storage.signed_url("m1/time_series.parquet", "PUT", expires_at=time.time() + 3600)
    """

    def __init__(
        self, root: Path, public_url: str, secret: bytes, download_lifetime_s: float = DOWNLOAD_URL_LIFETIME_S
    ) -> None:
        self.root = root
        self.public_url = public_url.rstrip("/")
        self.download_lifetime_s = download_lifetime_s
        self._secret = secret
        root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def in_data_dir(
        cls, data_dir: Path, public_url: str, download_lifetime_s: float = DOWNLOAD_URL_LIFETIME_S
    ) -> Storage:
        """Storage under ``data_dir/objects`` with a signing secret kept in ``data_dir/secret``."""
        secret_file = data_dir / "secret"
        if not secret_file.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(secrets.token_hex(32))
        return cls(data_dir / "objects", public_url, secret_file.read_text().encode(), download_lifetime_s)

    def token(self, key: str, method: str, expires: int) -> str:
        """The signature over ``method``, ``key`` and ``expires`` (epoch seconds)."""
        message = f"{method.upper()}\n{normalise_key(key)}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def signed_url(self, key: str, method: str = "GET", expires_at: float | None = None) -> str:
        """A link allowing ``method`` on ``key`` until ``expires_at`` (default: the download lifetime from now)."""
        expires = _expiry(expires_at if expires_at is not None else time.time() + self.download_lifetime_s)
        return f"{self.public_url}/storage/{key}?expires={expires}&token={self.token(key, method, expires)}"

    def signed_token(self, key: str, method: str, expires_at: float) -> str:
        """The token :meth:`signed_url` puts in the link for the same arguments."""
        return self.token(key, method, _expiry(expires_at))

    def path(self, key: str) -> Path:
        """The file behind ``key``; a key that is not one object inside the root is a 400."""
        target = (self.root / normalise_key(key)).resolve()
        if self.root.resolve() not in target.parents:
            raise bad_request(f"Invalid storage key {key!r}", {"field": "key"})
        return target

    def check(self, key: str, method: str, token: str | None, expires: str | None) -> Path:
        """The file behind ``key`` if the link signs ``method`` on it and has not expired, else 403."""
        target = self.path(key)
        if not token or not expires or not expires.isdigit():
            raise ApiError(403, "FORBIDDEN", "Invalid or missing storage token")
        if not hmac.compare_digest(token, self.token(key, method, int(expires))):
            raise ApiError(403, "FORBIDDEN", f"The storage token does not allow {method.upper()} on {key!r}")
        if int(expires) < time.time():
            raise ApiError(403, "FORBIDDEN", "The storage link has expired; ask the API for a new one")
        return target

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under ``prefix/``."""
        shutil.rmtree(self.path(prefix), ignore_errors=True)


def _expiry(expires_at: float) -> int:
    return math.ceil(expires_at)
