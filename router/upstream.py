"""A lean pooled HTTP/1.1 client to the cells: keep-alive connections per cell, httptools parsing.

httpx costs several hundred microseconds of Python per request; this does the one thing the router
needs (send a buffered request, read a buffered answer) for a fraction of that.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import httptools

# Only these are retried on a fresh connection when a reused one turns out dead before answering:
# the cell may have applied a POST whose answer was lost, so a POST is never sent twice.
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})


class UpstreamError(Exception):
    pass


class ConnectFailed(UpstreamError):
    """Nothing was sent: the cell is not reachable."""


class ResponseFailed(UpstreamError):
    """The request may have reached the cell, but no complete answer came back."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class UpstreamTimeout(ResponseFailed):
    pass


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Connection(asyncio.Protocol):
    __slots__ = ("transport", "parser", "waiter", "headers", "body", "body_size", "body_bytes_max",
                 "closed", "last_used", "received", "head", "status", "timer")

    def __init__(self, body_bytes_max: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.body_bytes_max = body_bytes_max
        self.closed = False
        self.last_used = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.head = False  # set per exchange
        self._reset()

    def _reset(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_size = 0
        self.received = False
        self.status = 0

    # -- asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ResponseFailed(f"bad answer from the cell: {exc}"))
            self.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(ResponseFailed("the cell closed the connection"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.head and self.status >= 200:
            # httptools cannot be told that a HEAD answer has no body: answer now, never reuse.
            self._done(reusable=False)

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.body_bytes_max:
            self._fail(ResponseFailed("the cell's answer is too large"))
            self.close()
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows on this connection.
            self._reset()
            return
        self._done(reusable=self.parser.should_keep_alive())

    # -- internals
    def _done(self, reusable: bool) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if not reusable:
            self.close()
        waiter.set_result(Response(self.status, self.headers, b"".join(self.body)))

    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _timeout(self) -> None:
        self._fail(UpstreamTimeout("the cell did not answer in time"))
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes, head: bool, timeout_s: float) -> Response:
        self._reset()
        self.head = head
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        if self.transport is None or self.transport.is_closing():
            self.closed = True
            raise ResponseFailed("connection already closed", sent=False)
        self.transport.write(request)
        self.timer = loop.call_later(timeout_s, self._timeout)
        try:
            return await self.waiter
        except asyncio.CancelledError:
            # Our client went away mid-exchange: the connection's state is unknown, drop it.
            self.close()
            raise
        finally:
            self.timer.cancel()
            self.waiter = None


class UpstreamPool:
    """Keep-alive connections to one cell, at most `connections_max` at a time."""

    def __init__(self, base_url: str, *, connections_max: int, connect_timeout_s: float, timeout_s: float,
                 idle_s_max: float, body_bytes_max: int) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.scheme != "http":
            raise ValueError(f"only http:// cells are supported, not {base_url}")
        self.host_header = parts.netloc.encode()
        self.prefix = parts.path.rstrip("/").encode()
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.idle_s_max = idle_s_max
        self.body_bytes_max = body_bytes_max
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(connections_max)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self.body_bytes_max), self.host, self.port),
                self.connect_timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return conn

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and now - conn.last_used < self.idle_s_max:
                return conn
            conn.close()
        return None

    def _encode(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        parts = [method, b" ", self.prefix, target, b" HTTP/1.1\r\nhost: ", self.host_header, b"\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if body or method not in (b"GET", b"HEAD", b"DELETE", b"OPTIONS"):
            parts += (b"content-length: ", str(len(body)).encode(), b"\r\n")
        parts += (b"\r\n", body)
        return b"".join(parts)

    async def request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> Response:
        request = self._encode(method, target, headers, body)
        head = method == b"HEAD"
        async with self.slots:
            conn = self._take_idle()
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            try:
                response = await conn.exchange(request, head, self.timeout_s)
            except ResponseFailed as exc:
                conn.close()
                # Retried: a request never written, or an idempotent one on a kept-alive connection that
                # died before a single byte of answer (the cell closed it while idle).
                stale = exc.sent and method in IDEMPOTENT_METHODS and not conn.received
                if not reused or isinstance(exc, UpstreamTimeout) or (exc.sent and not stale):
                    raise
                # A kept-alive connection the cell had already closed: try once on a fresh one.
                conn = await self._connect()
                try:
                    response = await conn.exchange(request, head, self.timeout_s)
                except ResponseFailed:
                    conn.close()
                    raise
            if not conn.closed:
                conn.last_used = time.monotonic()
                self.idle.append(conn)
            return response

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
