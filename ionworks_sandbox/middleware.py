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
        if length is not None and int(length) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        gzipped = headers.get(b"content-encoding", b"").lower() == b"gzip"
        if not gzipped:
            await self.app(scope, self._limited(receive, send), send)
            return
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

    def _limited(self, receive: Any, send: Any) -> Any:
        seen = 0
        max_bytes = self.max_bytes

        async def wrapped() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise BodyTooLarge(max_bytes)
            return message

        return wrapped


class BodyTooLarge(Exception):
    """A streamed body passed the configured limit."""

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
