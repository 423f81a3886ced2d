"""A loopback reverse proxy that injects faults in front of the sandbox: 503, 429 + Retry-After, a refusal (409),
or a dropped connection after the request was forwarded (the server acted, the client never hears back); and a
server that ignores a query filter (the parameter is dropped before forwarding).

Faults are injected one by one (:meth:`FaultProxy.inject`) or at random (:meth:`FaultProxy.randomly`: each
request, whatever its method and path, gets a fault with a given probability).

Example:
    with FaultProxy(sandbox.url) as proxy:
        proxy.inject("POST", r"^/pipelines$", "drop_after_forward", times=1)
        proxy.randomly(0.1, seed=7)   # and 10 % of all other requests fail in one of the FAULTS ways
        ...  # point IonworksCredentials(api_url=proxy.url) at it
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

import httpx

FAULTS = ("503", "429", "409", "drop_after_forward", "drop_before_forward")
_ERROR_CODES = {"503": "UNAVAILABLE", "429": "RATE_LIMITED", "409": "CONFLICT"}
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "host"}


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    kind: str
    times: int
    retry_after: float = 1.0


@dataclass
class Hit:
    method: str
    path: str
    outcome: str
    at: float = field(default_factory=time.monotonic)


class FaultProxy:
    """Forwards every request to ``upstream``; requests matching an injected fault get that fault instead."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: list[Fault] = []
        self.ignored: list[tuple[str, re.Pattern[str], str]] = []
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self.port = 0
        self.rate = 0.0
        self._injected: dict[str, int] = {}
        self._random = random.Random(0)
        self._random_kinds: tuple[str, ...] = FAULTS

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, method: str, path_regex: str, kind: str, *, times: int = 1, retry_after: float = 1.0) -> None:
        """Answer the next ``times`` matching requests with ``kind`` (one of ``FAULTS``)."""
        assert kind in FAULTS, kind
        with self._lock:
            self.faults.append(Fault(method.upper(), re.compile(path_regex), kind, times, retry_after))

    def randomly(self, rate: float, *, kinds: tuple[str, ...] = FAULTS, seed: int = 0,
                 retry_after: float = 1.0) -> None:
        """From now on, fail each request with probability ``rate``, in one of ``kinds`` drawn at random."""
        assert all(kind in FAULTS for kind in kinds), kinds
        with self._lock:
            self.rate, self._random, self._random_kinds = rate, random.Random(seed), kinds
            self._random_retry_after = retry_after

    def injected(self) -> dict[str, int]:
        """How many faults of each kind were injected (one by one or at random)."""
        return dict(self._injected)

    def ignore_filter(self, method: str, path_regex: str, param: str) -> None:
        """From now on, forward matching requests without the query parameter ``param``."""
        with self._lock:
            self.ignored.append((method.upper(), re.compile(path_regex), param))

    def _forwarded_target(self, method: str, path: str, target: str) -> str:
        dropped = {p for m, pattern, p in self.ignored if m == method and pattern.search(path)}
        if not dropped or "?" not in target:
            return target
        query = [(k, v) for k, v in parse_qsl(target.split("?", 1)[1], keep_blank_values=True) if k not in dropped]
        return f"{path}?{urlencode(query)}" if query else path

    def hits_for(self, method: str, path_regex: str) -> list[Hit]:
        pattern = re.compile(path_regex)
        return [h for h in self.hits if h.method == method.upper() and pattern.search(h.path)]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.path.search(path):
                    fault.times -= 1
                    self._injected[fault.kind] = self._injected.get(fault.kind, 0) + 1
                    return fault
            if self.rate and self._random.random() < self.rate:
                fault = Fault(method, re.compile(".*"), self._random.choice(self._random_kinds), 0,
                              self._random_retry_after)
                self._injected[fault.kind] = self._injected.get(fault.kind, 0) + 1
                return fault
        return None

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with httpx.AsyncClient(timeout=120, follow_redirects=False) as upstream:
            server = await asyncio.start_server(lambda r, w: self._handle(r, w, upstream), "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            async with server:
                await self._stop.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      upstream: httpx.AsyncClient) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = [tuple(h.split(":", 1)) for h in header_lines if ":" in h]
            length = next((int(v) for k, v in headers if k.strip().lower() == "content-length"), 0)
            body = await reader.readexactly(length) if length else b""
            path = target.split("?", 1)[0]
            fault = self._take_fault(method, path)
            if fault is not None and fault.kind == "drop_before_forward":
                self.hits.append(Hit(method, path, fault.kind))
                return
            if fault is not None and fault.kind in _ERROR_CODES:
                status = int(fault.kind)
                extra = {"Retry-After": f"{fault.retry_after:g}"} if status == 429 else {}
                payload = {"error_code": _ERROR_CODES[fault.kind], "message": "injected fault", "detail": None}
                self.hits.append(Hit(method, path, fault.kind))
                await self._respond(writer, status, {"Content-Type": "application/json", **extra},
                                    json.dumps(payload).encode())
                return
            forward = {k.strip(): v.strip() for k, v in headers if k.strip().lower() not in _HOP_HEADERS}
            target = self._forwarded_target(method, path, target)
            response = await upstream.request(method, f"{self.upstream}{target}", headers=forward, content=body)
            if fault is not None:  # drop_after_forward: the server acted, the client gets nothing
                self.hits.append(Hit(method, path, fault.kind))
                return
            self.hits.append(Hit(method, path, str(response.status_code)))
            kept = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_HEADERS}
            await self._respond(writer, response.status_code, kept, response.content)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes) -> None:
        reason = httpx.codes.get_reason_phrase(status) or "Status"
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items()),
                 f"Content-Length: {len(body)}", "Connection: close", "", ""]
        writer.write("\r\n".join(lines).encode("latin-1") + body)
        await writer.drain()
