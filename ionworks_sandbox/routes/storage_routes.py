"""The upload and download targets behind signed URLs (unauthenticated; the link's token is the permission).

A PUT is accepted only with a PUT link, only for one of the files a pending upload accepts, and only while that
upload still awaits its confirm: confirmed data cannot be replaced behind the server's back, and a body that
breaks off or passes the size limit leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from ..errors import ApiError, not_found
from ..uploads import LOCK, TARGETS
from .deps import Objects, Uploads

router = APIRouter()


def _not_awaiting(key: str) -> ApiError:
    return ApiError(409, "CONFLICT", f"Storage object {key!r} is not awaiting an upload (confirmed or expired?)")


@router.put("/storage/{key:path}")
async def put_object(
    key: str, request: Request, storage: Objects, uploads: Uploads, token: str | None = None, expires: str | None = None
) -> Response:
    target = storage.check(key, "PUT", token, expires)
    upload_id, _, filename = key.partition("/")
    if filename not in TARGETS:
        raise ApiError(403, "FORBIDDEN", f"Storage object {key!r} is not an upload target")
    if uploads.find(upload_id) is None:
        raise _not_awaiting(key)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        with LOCK:
            if uploads.find(upload_id) is None:
                raise _not_awaiting(key)
            os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return Response(status_code=200)


@router.get("/storage/{key:path}")
def get_object(key: str, storage: Objects, token: str | None = None, expires: str | None = None) -> FileResponse:
    target = storage.check(key, "GET", token, expires)
    if not target.is_file():
        raise not_found("Storage object", key)
    return FileResponse(target, media_type="application/octet-stream")
