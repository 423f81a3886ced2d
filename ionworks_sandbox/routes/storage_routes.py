"""The upload and download targets behind signed URLs (unauthenticated; the token signs the key).

Uploads are accepted only while the measurement they belong to awaits confirmation, so confirmed data
cannot be replaced behind the server's back.
"""

from __future__ import annotations

import os
import tempfile

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from ..errors import ApiError, not_found
from .deps import Objects, Records
from .measurements import UPLOAD

router = APIRouter()


@router.put("/storage/{key:path}")
async def put_object(key: str, request: Request, storage: Objects, store: Records, token: str | None = None) -> Response:
    target = storage.check(key, token)
    if store.find(UPLOAD, key.partition("/")[0]) is None:
        raise ApiError(409, "CONFLICT", f"Storage object {key!r} is not awaiting an upload (already confirmed?)")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    with os.fdopen(fd, "wb") as out:
        async for chunk in request.stream():
            out.write(chunk)
    os.replace(tmp, target)
    return Response(status_code=200)


@router.get("/storage/{key:path}")
def get_object(key: str, storage: Objects, token: str | None = None) -> FileResponse:
    target = storage.check(key, token)
    if not target.is_file():
        raise not_found("Storage object", key)
    return FileResponse(target, media_type="application/octet-stream")
