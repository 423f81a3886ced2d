"""ASGI middleware: request-size limit (413) and gzip request bodies (the client gzips bodies >= 512 KiB)."""

from __future__ import annotations

import json
import zlib
from typing import Any

Scope = dict[str, Any]


class RequestBodyMiddleware:
    """Reject bodies over ``max_bytes`` with 413 and transparently gunzip ``Content-Encoding: gzip`` bodies."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            await _respond(send, 400, {"error_code": "BAD_REQUEST", "message": "Invalid Content-Length", "detail": None})
            return
        if length is not None and int(length) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        if headers.get(b"content-encoding", b"").lower() == b"gzip":
            await self._gunzipped(scope, receive, send)
        else:
            await self._streamed(scope, receive, send)

    async def _gunzipped(self, scope: Scope, receive: Any, send: Any) -> None:
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if len(body) > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
            if not message.get("more_body"):
                break
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            plain = inflater.decompress(bytes(body), self.max_bytes + 1)
        except zlib.error:
            await _respond(send, 400, {"error_code": "BAD_REQUEST", "message": "Body is not valid gzip", "detail": None})
            return
        if len(plain) > self.max_bytes or inflater.unconsumed_tail:
            await _too_large(send, self.max_bytes)
            return
        scope = dict(scope)
        scope["headers"] = [
            (k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")
        ] + [(b"content-length", str(len(plain)).encode())]
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": plain, "more_body": False}

        await self.app(scope, replay, send)

    async def _streamed(self, scope: Scope, receive: Any, send: Any) -> None:
        """Pass the body through, counting it; past the limit the app's own answer is dropped for a 413.

        A body without ``Content-Length`` (chunked) is only known to be too large while it is read, and whoever
        reads it (FastAPI's JSON parsing answers 400 for any failure) must not decide the status.
        """
        seen = 0
        exceeded = started = False

        async def limited() -> dict[str, Any]:
            nonlocal seen, exceeded
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                exceeded = True
                raise BodyTooLarge(self.max_bytes)
            return message

        async def guarded(message: dict[str, Any]) -> None:
            nonlocal started
            if exceeded and not started:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except BodyTooLarge:
            pass
        if exceeded and not started:
            await _too_large(send, self.max_bytes)


class BodyTooLarge(Exception):
    """A streamed body passed the configured limit (raised to whoever reads it; answered 413 here)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"Request body exceeds the limit of {max_bytes} bytes")


async def _too_large(send: Any, max_bytes: int) -> None:
    await _respond(
        send,
        413,
        {"error_code": "PAYLOAD_TOO_LARGE", "message": f"Request body exceeds the limit of {max_bytes} bytes", "detail": None},
    )


async def _respond(send: Any, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
