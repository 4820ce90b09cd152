# Strategy: HTTP/1.1 parsed by httptools (llhttp) under our own asyncio Protocol. We
# measured it against aiohttp's server on this workload (a signed JSON POST over
# keep-alive, 50 connections): about four times the requests per second for the HTTP
# layer alone, and the Data API's whole point is to add little to a database round trip.
# Owning the protocol also gives the two behaviours the API needs directly: a request
# runs as a task owned by its connection, so a client that disconnects cancels its
# in-flight statement (which the service then stops and rolls back); and limits apply
# before anything is buffered -- a Content-Length over the request limit is refused
# without reading the body, headers are capped, a slow sender is cut off by a deadline.
#
# Requests on one connection are answered in order (pipelining is allowed, reading is
# paused while a few requests wait). Deadlines (read timeout, keep-alive idle) are checked
# by one sweep per second over all connections instead of a timer per request.
from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import os
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import httptools

from ..errors import DataApiError
from . import sigv4
from .auth import KeyRing
from .config import DataApiConfig
from .protocol import OPERATIONS, api_error, error_body
from .service import DataApiService, Timing
from .sources import TOO_LARGE

log = logging.getLogger("fleetpool.dataapi")

_PIPELINE_DEPTH = 8  # queued requests per connection before we stop reading
_SAMPLES = 100_000  # latency samples kept for percentiles
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


@dataclass
class Stats:
    """Counters and recent latencies (seconds), read by tests, benchmarks and /status."""

    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    disconnects: int = 0
    connections: int = 0
    total: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_SAMPLES)
    )
    overhead: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_SAMPLES)
    )
    database: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_SAMPLES)
    )

    def reset_samples(self) -> None:
        self.total.clear()
        self.overhead.clear()
        self.database.clear()

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "errors": dict(self.errors),
            "disconnects": self.disconnects,
            "connections": self.connections,
            "total_p50": percentile(self.total, 0.5),
            "total_p99": percentile(self.total, 0.99),
            "overhead_p50": percentile(self.overhead, 0.5),
            "overhead_p99": percentile(self.overhead, 0.99),
            "database_p50": percentile(self.database, 0.5),
        }


def percentile(samples: collections.abc.Iterable[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(slots=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool
    received: float  # perf_counter when the whole request was in


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, server: DataApiServer) -> None:
        self.server = server
        self.cfg = server.cfg
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: collections.deque[Request] = collections.deque()
        self.task: asyncio.Task[None] | None = None
        self.deadline = 0.0  # monotonic; 0 = none (a request is being served)
        self.closed = False
        self._url = b""
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._refused = False
        self._reading = False  # between the first byte of a request and its end
        self._paused = False
        self._drained: asyncio.Event | None = None

    # ------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        server = self.server
        if len(server.connections) >= self.cfg.max_client_connections:
            self._refuse(api_error("ServiceUnavailableError", "too many client connections"))
            return
        server.connections.add(self)
        server.stats.connections += 1
        self.deadline = time.monotonic() + self.cfg.keepalive_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self.task is not None and not self.task.done():
            # The client left mid-request: cancel it; the service stops the statement
            # and rolls back a transaction it was running in.
            self.server.stats.disconnects += 1
            self.task.cancel()
        if self._drained is not None:
            self._drained.set()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(api_error("BadRequestException", "protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:
            if not self._refused:
                self._refuse(api_error("BadRequestException", f"malformed HTTP request: {exc}"))

    def pause_writing(self) -> None:
        self._drained = asyncio.Event()

    def resume_writing(self) -> None:
        if self._drained is not None:
            self._drained.set()
            self._drained = None

    # ------------------------------------------------------------- httptools callbacks

    def on_message_begin(self) -> None:
        self._reading = True
        self._url = b""
        self._headers = {}
        self._header_bytes = 0
        self._body = []
        self._body_size = 0
        if not self.task:
            self.deadline = time.monotonic() + self.cfg.request_read_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.cfg.max_header_bytes:
            self._refuse(
                api_error(
                    "BadRequestException",
                    f"request headers exceed {self.cfg.max_header_bytes} bytes",
                ),
                status=431,
            )
            raise httptools.HttpParserError("headers too large")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self._headers.get(key)
        self._headers[key] = text if old is None else f"{old},{text}"

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.cfg.max_request_bytes:
            self._too_large()
        if self._headers.get("expect", "").lower() == "100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.cfg.max_request_bytes:
            self._too_large()
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._reading = False
        request = Request(
            self.parser.get_method().decode("latin-1"),
            self._url.decode("latin-1"),
            self._headers,
            b"".join(self._body),
            self.parser.should_keep_alive(),
            time.perf_counter(),
        )
        self.queue.append(request)
        if len(self.queue) >= _PIPELINE_DEPTH and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        if self.task is None:
            self.deadline = 0.0
            self.task = asyncio.ensure_future(self._serve())

    # ------------------------------------------------------------- serving

    async def _serve(self) -> None:
        server = self.server
        try:
            while self.queue and not self.closed:
                request = self.queue.popleft()
                if self._paused and len(self.queue) < _PIPELINE_DEPTH // 2:
                    self._paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
                status, body, error, timing = await server.handle(request)
                if self.closed:
                    return
                keep_alive = request.keep_alive
                self._write(status, body, error, keep_alive)
                end = time.perf_counter()
                total = end - request.received
                stats = server.stats
                stats.total.append(total)
                stats.database.append(timing.db)
                stats.overhead.append(total - timing.db - timing.wait)
                if not keep_alive:
                    self._close()
                    return
                if self._drained is not None:
                    await self._drained.wait()
        finally:
            self.task = None
            if not self.closed:
                self.deadline = time.monotonic() + self.cfg.keepalive_timeout

    def _write(self, status: int, body: bytes, error: str, keep_alive: bool) -> None:
        assert self.transport is not None
        head = [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error")),
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
            b"x-amzn-RequestId: %s\r\n" % self.server.request_id().encode(),
        ]
        if error:
            head.append(b"x-amzn-ErrorType: %s\r\n" % error.encode())
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        head.append(body)
        self.transport.write(b"".join(head))

    def _refuse(self, exc: DataApiError, status: int | None = None) -> None:
        """Answer an unparseable or over-limit request and close the connection."""
        if self._refused or self.transport is None:
            return
        self._refused = True
        self.server.stats.errors[exc.code] += 1
        body = json.dumps(error_body(exc)).encode()
        if self.task is None and not self.closed:
            self._write(status or exc.status, body, exc.code, keep_alive=False)
        self._close()

    def _too_large(self) -> None:
        limit = self.cfg.max_request_bytes
        self._refuse(
            api_error("RequestEntityTooLargeException", f"request body exceeds {limit} bytes"),
        )
        raise httptools.HttpParserError("request too large")

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def expire(self, now: float) -> None:
        if self.deadline and now > self.deadline:
            if self._reading:
                self._refuse(
                    api_error("BadRequestException", "request not received in time"), status=408
                )
            else:
                self._close()  # idle keep-alive connection


class DataApiServer:
    """The Data API endpoint: an HTTP listener in front of a DataApiService."""

    def __init__(self, cfg: DataApiConfig, service: DataApiService | None = None) -> None:
        self.cfg = cfg
        self.service = service or DataApiService(cfg)
        self.keys = KeyRing(cfg.access_keys, cfg.token_secret)
        self.stats = Stats()
        self.connections: set[HttpConnection] = set()
        self._listener: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()

    @property
    def port(self) -> int:
        assert self._listener is not None
        return int(self._listener.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.cfg.tls_cert else "http"
        host = self.cfg.listen[0]
        return f"{scheme}://{host}:{self.port}"

    def request_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids):010d}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.cfg.tls_cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
        return ctx

    async def start(self) -> None:
        await self.service.start()
        loop = asyncio.get_running_loop()
        host, port = self.cfg.listen
        try:
            self._listener = await loop.create_server(
                lambda: HttpConnection(self), host, port, ssl=self.ssl_context(), backlog=1024
            )
        except BaseException:
            await self.service.stop()
            raise
        self._sweeper = asyncio.create_task(self._sweep(), name="data-api-sweeper")
        log.info("data API listening on %s", self.url)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.expire(now)

    async def stop(self, timeout: float = 5.0) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        busy = [c.task for c in self.connections if c.task is not None]
        for conn in list(self.connections):
            if conn.task is None:
                conn._close()
        if busy:
            await asyncio.wait(busy, timeout=timeout)
        for conn in list(self.connections):
            conn._close()
        await self.service.stop()

    async def handle(self, request: Request) -> tuple[int, bytes, str, Timing]:
        """(status, body, error name or "", timing) for one request."""
        timing = Timing()
        path = request.target.partition("?")[0]
        operation = OPERATIONS.get(path)
        try:
            if operation is None:
                if request.method == "GET" and path == "/ping":
                    return 200, b'{"status":"ok"}', "", timing
                raise api_error(
                    "BadRequestException",
                    f"unknown operation {request.method} {path}; this endpoint serves POST "
                    + ", ".join(OPERATIONS),
                )
            if request.method != "POST":
                raise api_error("BadRequestException", f"{path} accepts POST only")
            owner = sigv4.verify(
                "POST",
                request.target,
                request.headers,
                request.body,
                self.keys.secret_for,
                time.time(),
                skew=self.cfg.clock_skew,
            )
            try:
                body = json.loads(request.body) if request.body else {}
            except ValueError as exc:
                raise api_error("BadRequestException", f"request body is not JSON: {exc}") from None
            if not isinstance(body, dict):
                raise api_error("BadRequestException", "request body must be a JSON object")
            response = await self.service.call(operation, body, owner, timing)
            data = json.dumps(response, separators=(",", ":")).encode()
            if len(data) > self.cfg.max_response_bytes:
                raise api_error("BadRequestException", TOO_LARGE)
            self.stats.requests[operation] += 1
            return 200, data, "", timing
        except DataApiError as exc:
            self.stats.requests[operation or "unknown"] += 1
            self.stats.errors[exc.code] += 1
            return exc.status, json.dumps(error_body(exc)).encode(), exc.code, timing
        except Exception:
            log.exception("data API: internal error in %s", operation)
            internal = api_error("InternalServerErrorException", "internal error; see the log")
            self.stats.errors[internal.code] += 1
            return internal.status, json.dumps(error_body(internal)).encode(), internal.code, timing

    def snapshot(self) -> dict[str, Any]:
        return {**self.stats.snapshot(), **self.service.stats()}
